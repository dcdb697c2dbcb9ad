"""Configuration: one TOML file plus environment variables for secrets.

This is the only module that reads the config file or the environment. It
returns a frozen :class:`Settings` that is passed to ``create_app``. Every
error names the key that is wrong (``sites.demo.origins[0]: …``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

from pixel_server.core import channels
from pixel_server.core.clickids import CLICK_ID_KEYS

StorageBackend = Literal["chdb", "clickhouse"]
STORAGE_BACKENDS: tuple[StorageBackend, ...] = ("chdb", "clickhouse")

SIGNING_KEYS_ENV = "JOBPIXEL_SIGNING_KEYS"
CLICKHOUSE_URL_ENV = "CLICKHOUSE_URL"
CONFIG_ENV = "JOBPIXEL_CONFIG"
HASH_KEY_ENV = "JOBPIXEL_HASH_KEY"  # grant: keys the visitor hash in the consent log
OPS_TOKEN_ENV = "JOBPIXEL_OPS_TOKEN"  # door: the operator's bearer token for /metrics and the full /readyz

UTM_QUERY_KEYS = frozenset(("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"))
_QUERY_KEY_RE = re.compile(r"^[a-z0-9_.\-\[\]]{1,64}$")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DB_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LANGS = ("nb", "nn", "en")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the key."""


@dataclass(frozen=True)
class User:
    """A dashboard user: an e-mail and an argon2id hash (``jobpixel hash-password``)."""

    email: str
    password_hash: str


@dataclass(frozen=True)
class Access:
    """Who may read reports: API token hashes (``sha256:<hex>``) and dashboard users."""

    api_token_hashes: frozenset[str] = frozenset()
    users: tuple[User, ...] = ()


@dataclass(frozen=True)
class Partner:
    id: str
    name: str
    access: Access = field(default_factory=Access)


@dataclass(frozen=True)
class Site:
    id: str
    partner: str
    origins: frozenset[str]
    retention_days: int = 395
    consent_days: int = 182
    consent_log_days: int = 1095
    revision: int = 1
    lang: str = "nb"
    policy_url: str | None = None
    ad_pattern: str | None = None  # door: the regex compiled from ad_template (what the pixel runs)
    ats_hosts: tuple[str, ...] = ()
    thanks_pattern: str | None = None  # door: compiled from thanks_template
    float_button: bool = False
    channels: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    texts: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    # grant: query parameters kept in stored URLs without a marketing grant (lower case)
    keep_query: frozenset[str] = UTM_QUERY_KEYS
    # reports (issue #9): report days are counted in this zone; rows under k_floor visitors are hidden
    timezone: str = "Europe/Oslo"
    k_floor: int = 5
    # door: the path templates as configured (ad_pattern / thanks_pattern hold their compiled regexes)
    ad_template: str | None = None
    thanks_template: str | None = None


@dataclass(frozen=True)
class Limits:
    """door: the visitor endpoints' abuse limits (token buckets, in memory only; README "Limits")."""

    ip_rate_per_s: float = 50.0  # requests per second per client IP (0: off) ...
    ip_burst: int = 500  # ... with bursts up to this many
    grant_rate_per_s: float = 2.0  # events and choices per second per consent id (0: off) ...
    grant_burst: int = 120  # ... with bursts up to this many
    max_keys: int = 100_000  # buckets kept per limiter; idle ones are forgotten first


@dataclass(frozen=True)
class Settings:
    sites: Mapping[str, Site]
    partners: Mapping[str, Partner]
    signing_keys: tuple[str, ...]
    data_dir: Path
    storage_backend: StorageBackend = "chdb"
    chdb_path: Path | None = None
    clickhouse_url: str | None = None
    database: str = "jobpixel"
    cluster: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    token_days: int = 396
    flush_interval_s: float = 1.0
    flush_max_rows: int = 10_000  # door: chDB holds ~9 KB per row of one insert at its peak (bench/README.md)
    # [journal]
    journal_max_bytes: int = 4 * 1024**3
    journal_reserve_bytes: int = 256 * 1024**2
    journal_segment_bytes: int = 16 * 1024**2
    journal_segment_seconds: float = 5.0
    log_level: str = "info"
    config_path: Path | None = None
    hash_key: str = ""  # grant: JOBPIXEL_HASH_KEY, required by from_mapping
    # -- forwarding (branch channels) --
    forwarding: Forwarding = field(default_factory=lambda: Forwarding())
    admin: Access = field(default_factory=Access)  # reports: sees every site
    limits: Limits = field(default_factory=Limits)  # door
    ops_token: str | None = field(default=None, repr=False)  # door: JOBPIXEL_OPS_TOKEN

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    @property
    def resolved_chdb_path(self) -> Path:
        return self.chdb_path if self.chdb_path is not None else self.data_dir / "chdb"


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file at ``path`` (or ``$JOBPIXEL_CONFIG``) and the environment."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get(CONFIG_ENV, "jobpixel.toml")
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found (set {CONFIG_ENV} or pass --config)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_mapping(raw, env, base_dir=path.resolve().parent, config_path=path)


def from_mapping(
    raw: Mapping[str, Any],
    env: Mapping[str, str],
    base_dir: Path,
    config_path: Path | None = None,
) -> Settings:
    """Build settings from an already parsed TOML document (tests use this too)."""
    _only_keys(
        raw,
        "",
        {"server", "storage", "identity", "partners", "sites", "journal", "forwarding", "admin", "limits"},
    )
    server = _table(raw, "server")
    storage = _table(raw, "storage")
    identity = _table(raw, "identity")
    _only_keys(server, "server.", {"host", "port", "data_dir", "trusted_proxies", "log_level"})
    _only_keys(
        storage,
        "storage.",
        {"backend", "path", "database", "cluster", "flush_interval_ms", "flush_max_rows"},
    )
    _only_keys(identity, "identity.", {"token_days"})
    journal = _table(raw, "journal")
    _only_keys(journal, "journal.", {"max_bytes", "reserve_bytes", "segment_bytes", "segment_seconds"})
    segment_bytes = _int(journal, "segment_bytes", "journal", default=16 * 1024**2, lo=4096, hi=1024**3)
    max_bytes = _int(journal, "max_bytes", "journal", default=4 * 1024**3, lo=1024**2, hi=2**50)
    if max_bytes < 2 * segment_bytes:
        raise ConfigError("journal.max_bytes: must be at least twice journal.segment_bytes")

    partners = {}
    for pid, ptable in _table(raw, "partners").items():
        key = f"partners.{pid}"
        _check_id(pid, key)
        ptable = _as_table(ptable, key)
        _only_keys(ptable, key + ".", {"name", "api_token_hashes", "users"})
        partners[pid] = Partner(
            id=pid, name=_str(ptable, "name", key, default=pid), access=_access(ptable, key)
        )

    sites = {}
    for sid, stable in _table(raw, "sites").items():
        sites[sid] = _site(sid, _as_table(stable, f"sites.{sid}"), partners)
    if not sites:
        raise ConfigError("sites: at least one site must be configured ([sites.<id>])")

    backend = _str(storage, "backend", "storage", default="chdb")
    if backend not in STORAGE_BACKENDS:
        raise ConfigError(f"storage.backend: must be one of {', '.join(STORAGE_BACKENDS)}, got {backend!r}")
    clickhouse_url = env.get(CLICKHOUSE_URL_ENV) or None
    if backend == "clickhouse" and not clickhouse_url:
        raise ConfigError(f"{CLICKHOUSE_URL_ENV}: required when storage.backend = 'clickhouse'")
    database = _str(storage, "database", "storage", default="jobpixel")
    if not _DB_RE.match(database):
        raise ConfigError(f"storage.database: {database!r} is not a plain identifier")
    cluster = _str(storage, "cluster", "storage", default="") or None
    if cluster is not None and not _DB_RE.match(cluster):
        raise ConfigError(f"storage.cluster: {cluster!r} is not a plain identifier")
    if cluster is not None and backend != "clickhouse":
        raise ConfigError("storage.cluster: only valid with storage.backend = 'clickhouse'")

    keys_raw = env.get(SIGNING_KEYS_ENV, "")
    keys = tuple(k.strip() for k in keys_raw.split(",") if k.strip())
    if not keys:
        raise ConfigError(
            f"{SIGNING_KEYS_ENV}: missing. Set it to one or more comma-separated secret keys "
            "(newest last; the newest signs, all verify), e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    for i, k in enumerate(keys):
        if len(k) < 16:
            raise ConfigError(f"{SIGNING_KEYS_ENV}[{i}]: too short, use at least 16 characters")

    # grant: the key of the visitor hash in the consent log (found again on an access/erasure request)
    hash_key = env.get(HASH_KEY_ENV, "").strip()
    if not hash_key:
        raise ConfigError(
            f"{HASH_KEY_ENV}: missing. Set it to a secret of at least 16 characters; it keys the visitor "
            "hash in the consent log, so keep it as long as the log "
            "(`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    if len(hash_key) < 16:
        raise ConfigError(f"{HASH_KEY_ENV}: too short, use at least 16 characters")

    data_dir = _path(_str(server, "data_dir", "server", default="var"), base_dir)
    chdb_path = storage.get("path")
    proxies = []
    for i, p in enumerate(_list(server, "trusted_proxies", "server")):
        try:
            proxies.append(ipaddress.ip_network(str(p), strict=False))
        except ValueError:
            raise ConfigError(f"server.trusted_proxies[{i}]: {p!r} is not an IP address or network") from None

    log_level = _str(server, "log_level", "server", default="info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"server.log_level: must be one of {', '.join(LOG_LEVELS)}")
    token_days = _int(identity, "token_days", "identity", default=396, lo=1, hi=3650)
    for site in sites.values():
        if token_days < site.consent_days:
            raise ConfigError(
                f"identity.token_days: {token_days} is shorter than sites.{site.id}.consent_days "
                f"({site.consent_days}); the visitor id would lapse while consent still holds"
            )
    return Settings(
        sites=MappingProxyType(sites),
        partners=MappingProxyType(partners),
        signing_keys=keys,
        data_dir=data_dir,
        storage_backend=backend,
        chdb_path=_path(str(chdb_path), base_dir) if chdb_path else None,
        clickhouse_url=clickhouse_url,
        database=database,
        cluster=cluster,
        host=_str(server, "host", "server", default="127.0.0.1"),
        port=_int(server, "port", "server", default=8000, lo=0, hi=65535),
        trusted_proxies=tuple(proxies),
        token_days=token_days,
        flush_interval_s=_int(storage, "flush_interval_ms", "storage", default=1000, lo=10, hi=60_000) / 1000,
        flush_max_rows=_int(storage, "flush_max_rows", "storage", default=10_000, lo=1, hi=10_000_000),
        journal_max_bytes=max_bytes,
        journal_reserve_bytes=_int(
            journal, "reserve_bytes", "journal", default=256 * 1024**2, lo=0, hi=2**50
        ),
        journal_segment_bytes=segment_bytes,
        journal_segment_seconds=_int(journal, "segment_seconds", "journal", default=5, lo=1, hi=3600) * 1.0,
        log_level=log_level,
        config_path=config_path,
        hash_key=hash_key,
        forwarding=_forwarding(_table(raw, "forwarding"), _table(raw, "sites"), sites, env),
        admin=_admin(raw),
        limits=_limits(_table(raw, "limits")),
        ops_token=_ops_token(env),
    )


_SITE_KEYS = {
    "partner",
    "origins",
    "retention_days",
    "consent_days",
    "consent_log_days",
    "revision",
    "lang",
    "policy_url",
    "ad_pattern",
    "ats_hosts",
    "thanks_pattern",
    "float_button",
    "channels",
    "texts",
    "keep_query",
    "timezone",
    "k_floor",
}


def _site(sid: str, t: Mapping[str, Any], partners: Mapping[str, Partner]) -> Site:
    key = f"sites.{sid}"
    _check_id(sid, key)
    _only_keys(t, key + ".", _SITE_KEYS)
    partner = _str(t, "partner", key)
    if partner not in partners:
        raise ConfigError(f"{key}.partner: unknown partner {partner!r} (declare [partners.{partner}])")
    origins = []
    for i, o in enumerate(_list(t, "origins", key)):
        origins.append(_origin(str(o), f"{key}.origins[{i}]"))
    if not origins:
        raise ConfigError(f"{key}.origins: list at least one page origin, e.g. ['https://jobs.example.no']")
    lang = _str(t, "lang", key, default="nb")
    if lang not in LANGS:
        raise ConfigError(f"{key}.lang: must be one of {', '.join(LANGS)}")
    patterns = {}
    for pat_key in ("ad_pattern", "thanks_pattern"):
        pat = t.get(pat_key)
        if pat is not None and pat != "":
            if not isinstance(pat, str):
                raise ConfigError(f"{key}.{pat_key}: must be a path template like '/stilling/{{ad}}'")
            try:
                patterns[pat_key] = compile_path_template(pat, ad=pat_key == "ad_pattern")
            except ValueError as exc:
                raise ConfigError(f"{key}.{pat_key}: {exc}") from None
    if "float_button" in t and not isinstance(t["float_button"], bool):
        raise ConfigError(f"{key}.float_button: must be true or false")
    for i, h in enumerate(_list(t, "ats_hosts", key)):
        if not isinstance(h, str) or not _HOST_RE.match(h):
            raise ConfigError(f"{key}.ats_hosts[{i}]: {h!r} is not a bare host name like 'ats.example.com'")
    policy_url = t.get("policy_url")
    if policy_url is not None and urlsplit(str(policy_url)).scheme not in ("http", "https"):
        raise ConfigError(f"{key}.policy_url: must be an absolute http(s) URL")
    chans = {}
    for cname, ccfg in _as_table(t.get("channels", {}), f"{key}.channels").items():
        ckey = f"{key}.channels.{cname}"
        if cname not in channels.REGISTRY:
            raise ConfigError(f"{ckey}: unknown channel (known: {', '.join(sorted(channels.REGISTRY))})")
        tag_cfg = {k: v for k, v in _as_table(ccfg, ckey).items() if k not in FORWARD_CHANNEL_KEYS}
        try:
            chans[cname] = MappingProxyType(channels.validate_channel_config(cname, tag_cfg))
        except ValueError as exc:
            raise ConfigError(f"{ckey}: {exc}") from None
    texts = {}
    for tl, ttable in _as_table(t.get("texts", {}), f"{key}.texts").items():
        if tl not in LANGS:
            raise ConfigError(f"{key}.texts.{tl}: language must be one of {', '.join(LANGS)}")
        texts[tl] = MappingProxyType(
            {str(k): str(v) for k, v in _as_table(ttable, f"{key}.texts.{tl}").items()}
        )
    return Site(
        id=sid,
        partner=partner,
        origins=frozenset(origins),
        retention_days=_int(t, "retention_days", key, default=395, lo=1, hi=3650),
        consent_days=_int(t, "consent_days", key, default=182, lo=1, hi=395),
        consent_log_days=_int(t, "consent_log_days", key, default=1095, lo=1, hi=3650),
        revision=_int(t, "revision", key, default=1, lo=1, hi=2**31 - 1),
        lang=lang,
        policy_url=str(policy_url) if policy_url is not None else None,
        ad_pattern=patterns.get("ad_pattern"),
        ats_hosts=tuple(str(h).lower() for h in _list(t, "ats_hosts", key)),
        thanks_pattern=patterns.get("thanks_pattern"),
        ad_template=t.get("ad_pattern") or None,
        thanks_template=t.get("thanks_pattern") or None,
        float_button=bool(t.get("float_button", False)),
        channels=MappingProxyType(chans),
        texts=MappingProxyType(texts),
        keep_query=_keep_query(t, key),
        timezone=_timezone(t, key),
        k_floor=_int(t, "k_floor", key, default=5, lo=2, hi=1_000_000),
    )


def _keep_query(t: Mapping[str, Any], key: str) -> frozenset[str]:
    """grant: the allow-list of query parameters kept without marketing; click ids never qualify."""
    if "keep_query" not in t:
        return UTM_QUERY_KEYS
    out = set()
    for i, k in enumerate(_list(t, "keep_query", key)):
        if not isinstance(k, str) or not _QUERY_KEY_RE.match(k.lower()):
            raise ConfigError(f"{key}.keep_query[{i}]: {k!r} is not a query parameter name")
        if k.lower() in CLICK_ID_KEYS:
            raise ConfigError(
                f"{key}.keep_query[{i}]: {k!r} is an ad click id; it is kept only behind a marketing grant"
            )
        out.add(k.lower())
    return frozenset(out)


# -- door: path templates, abuse limits, the operator's token (issue #7 §4-5) --------------------
# A path template is matched against location.pathname + location.search. Literal characters are
# the unreserved URL characters and '%' (percent-encoded bytes, as browsers send non-ASCII), '/'
# separates segments; '{ad}' is one segment (the ad id, group 1); '*' is any characters within one
# segment, or anything at all (query included) when it ends the template. Without a trailing '*'
# the template must match the whole path, and any query string may follow.
_TEMPLATE_LITERAL = re.compile(r"[A-Za-z0-9._~%-]+|/")
AD_SEGMENT = "([^/?#]+)"
STAR_SEGMENT = "[^/?#]*"
STAR_END = ".*"
QUERY_TAIL = "(?:[?#]|$)"
TEMPLATE_MAX = 200


def compile_path_template(template: str, ad: bool = False) -> str:
    """The anchored regular expression (the same in Python and JavaScript) a path template means.

    No nested quantifiers can come out of it: every quantifier is on a character class, and two
    of them never touch, so matching is linear in the input. Raises ``ValueError`` saying what is
    wrong (a former free regex, say)."""
    example = "'/stilling/{ad}'" if ad else "'/takk*'"
    if len(template) > TEMPLATE_MAX:
        raise ValueError(f"longer than {TEMPLATE_MAX} characters")
    if not template.startswith("/"):
        raise ValueError(f"must be a path template starting with '/', like {example}")
    out, i, n_ad = ["^"], 0, 0
    last_quantified = False
    while i < len(template):
        if template.startswith("{ad}", i):
            if last_quantified:
                raise ValueError("'{ad}' cannot follow '*' or '{ad}' directly (ambiguous)")
            out.append(AD_SEGMENT)
            n_ad += 1
            i += 4
            last_quantified = True
            continue
        c = template[i]
        if c == "*":
            if last_quantified:
                raise ValueError("'*' cannot follow '*' or '{ad}' directly (ambiguous)")
            out.append(STAR_END if i == len(template) - 1 else STAR_SEGMENT)
            i += 1
            last_quantified = True
            continue
        m = _TEMPLATE_LITERAL.match(template, i)
        if m is None:
            raise ValueError(
                f"{template[i]!r} at position {i} is not allowed: a path template has letters, digits, "
                f"'-._~%', '/', '{{ad}}' and '*' only (a regular expression is no longer accepted), "
                f"like {example}"
            )
        out.append(m.group().replace(".", "\\."))
        i = m.end()
        last_quantified = False
    if n_ad > 1:
        raise ValueError("'{ad}' may appear once")
    if ad and n_ad == 0:
        raise ValueError(f"needs '{{ad}}' where the ad id is in the path, like {example}")
    if not template.endswith("*"):
        out.append(QUERY_TAIL)
    return "".join(out)


def _limits(t: Mapping[str, Any]) -> Limits:
    _only_keys(t, "limits.", {"ip_rate_per_s", "ip_burst", "grant_rate_per_s", "grant_burst", "max_keys"})
    rates = {}
    for name, default in (
        ("ip_rate_per_s", Limits.ip_rate_per_s),
        ("grant_rate_per_s", Limits.grant_rate_per_s),
    ):
        value = t.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1_000_000:
            raise ConfigError(f"limits.{name}: must be a number from 0 (off) to 1000000")
        rates[name] = float(value)
    return Limits(
        ip_rate_per_s=rates["ip_rate_per_s"],
        ip_burst=_int(t, "ip_burst", "limits", default=Limits.ip_burst, lo=1, hi=10_000_000),
        grant_rate_per_s=rates["grant_rate_per_s"],
        grant_burst=_int(t, "grant_burst", "limits", default=Limits.grant_burst, lo=50, hi=10_000_000),
        max_keys=_int(t, "max_keys", "limits", default=Limits.max_keys, lo=100, hi=100_000_000),
    )


def _ops_token(env: Mapping[str, str]) -> str | None:
    token = env.get(OPS_TOKEN_ENV, "").strip()
    if not token:
        return None
    if len(token) < 16:
        raise ConfigError(f"{OPS_TOKEN_ENV}: too short, use at least 16 characters")
    return token


# -- reports: partner/admin access and the site's report zone (issue #9) ---------------------------
_TOKEN_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def _access(t: Mapping[str, Any], key: str) -> Access:
    hashes = []
    for i, h in enumerate(_list(t, "api_token_hashes", key)):
        if not isinstance(h, str) or not _TOKEN_HASH_RE.match(h):
            raise ConfigError(
                f"{key}.api_token_hashes[{i}]: must look like 'sha256:<64 hex digits>' (jobpixel new-token)"
            )
        hashes.append(h)
    users = []
    for i, u in enumerate(_list(t, "users", key)):
        ukey = f"{key}.users[{i}]"
        u = _as_table(u, ukey)
        _only_keys(u, ukey + ".", {"email", "password_hash"})
        email = _str(u, "email", ukey).strip().lower()
        if not _EMAIL_RE.match(email):
            raise ConfigError(f"{ukey}.email: {email!r} is not an e-mail address")
        pw = _str(u, "password_hash", ukey)
        if not pw.startswith("$argon2id$"):
            raise ConfigError(f"{ukey}.password_hash: must be an argon2id hash (jobpixel hash-password)")
        users.append(User(email=email, password_hash=pw))
    return Access(api_token_hashes=frozenset(hashes), users=tuple(users))


def _admin(raw: Mapping[str, Any]) -> Access:
    t = _table(raw, "admin")
    _only_keys(t, "admin.", {"api_token_hashes", "users"})
    return _access(t, "admin")


def _timezone(t: Mapping[str, Any], key: str) -> str:
    import zoneinfo

    tz = _str(t, "timezone", key, default="Europe/Oslo")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{key}.timezone: {tz!r} is not an IANA time zone like 'Europe/Oslo'") from None
    if not re.match(r"^[A-Za-z][A-Za-z0-9_+/-]{0,63}$", tz):
        raise ConfigError(f"{key}.timezone: {tz!r} is not an IANA time zone like 'Europe/Oslo'")
    return tz


def _origin(value: str, key: str) -> str:
    """As browsers send it in ``Origin``: scheme://host[:port], the default port left out."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"{key}: {value!r} is not an origin like 'https://jobs.example.no'")
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def _only_keys(t: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
    for k in t:
        if k not in allowed:
            raise ConfigError(f"{prefix}{k}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _table(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return _as_table(raw.get(key, {}), key)


def _as_table(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: must be a table")
    return value


def _check_id(value: str, key: str) -> None:
    if not _ID_RE.match(value):
        raise ConfigError(f"{key}: id must be lowercase letters, digits, '_' or '-' (max 64)")


def _str(t: Mapping[str, Any], name: str, key: str, default: str | None = None) -> str:
    if name not in t:
        if default is None:
            raise ConfigError(f"{key}.{name}: missing")
        return default
    value = t[name]
    if not isinstance(value, str):
        raise ConfigError(f"{key}.{name}: must be a string")
    return value


def _int(t: Mapping[str, Any], name: str, key: str, default: int, lo: int, hi: int) -> int:
    value = t.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{key}.{name}: must be a whole number from {lo} to {hi}")
    return value


def _list(t: Mapping[str, Any], name: str, key: str) -> list[Any]:
    value = t.get(name, [])
    if not isinstance(value, list):
        raise ConfigError(f"{key}.{name}: must be a list")
    return value


def _path(value: str, base_dir: Path) -> Path:
    p = Path(value)
    return (p if p.is_absolute() else (base_dir / p)).resolve()


# -- forwarding (branch channels): server-side delivery to the ad channels ---------------------------------
# The channels with a documented server API; Bid Theatre documents none (forwarding/bidtheatre.py)
# and stays browser-side. pixel_server/forwarding/registry.py must list the same names (a test checks it).
FORWARD_CHANNELS = ("ga4", "meta", "linkedin", "snapchat")
BROWSER_ONLY_CHANNELS = ("bidtheatre",)
# Keys of [sites.<id>.channels.<channel>] that configure forwarding, not the browser tag.
FORWARD_CHANNEL_KEYS = frozenset({"secret_env", "conversion_rule"})
_ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
_RULE_RE = re.compile(r"^[0-9]{1,20}$")
_API_VERSION_RE = re.compile(r"^v[0-9]{1,3}\.[0-9]{1,2}$")
_LINKEDIN_VERSION_RE = re.compile(r"^20[0-9]{2}(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class ForwardTarget:
    """One channel of one site with server-side forwarding on (its ``secret_env`` set and present)."""

    site: str
    channel: str
    secret_env: str
    secret: str = field(repr=False)
    conversion_rule: str | None = None
    tag: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # the validated tag config


@dataclass(frozen=True)
class ChannelLimits:
    concurrency: int = 2  # requests in flight to this channel
    rate_per_s: float = 10.0  # requests started per second (token bucket, burst = concurrency)


@dataclass(frozen=True)
class Forwarding:
    # site -> channel -> target; only the channels whose secret is configured and present
    targets: Mapping[str, Mapping[str, ForwardTarget]] = field(default_factory=lambda: MappingProxyType({}))
    debug: bool = False  # GA4: send to /debug/mp/collect and treat validation messages as final errors
    # channel -> "scheme://host[:port]" replacing the documented endpoint's scheme and host
    endpoints: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    limits: Mapping[str, ChannelLimits] = field(default_factory=lambda: MappingProxyType({}))
    timeout_s: float = 5.0
    retry_base_s: float = 1.0
    retry_max_s: float = 900.0
    meta_api_version: str = "v22.0"
    linkedin_version: str = "202510"
    # deliver from a child process (forwarding/child.py), off the server's GIL; false: in the server
    process: bool = True

    @property
    def enabled(self) -> bool:
        return any(self.targets.values())

    def limits_for(self, channel: str) -> ChannelLimits:
        return self.limits.get(channel, ChannelLimits())


def _forwarding(
    fwd: Mapping[str, Any], raw_sites: Mapping[str, Any], sites: Mapping[str, Site], env: Mapping[str, str]
) -> Forwarding:
    _only_keys(
        fwd,
        "forwarding.",
        {
            "debug",
            "endpoints",
            "limits",
            "timeout_ms",
            "retry_base_ms",
            "retry_max_s",
            "meta_api_version",
            "linkedin_version",
            "process",
        },
    )
    if "debug" in fwd and not isinstance(fwd["debug"], bool):
        raise ConfigError("forwarding.debug: must be true or false")
    if "process" in fwd and not isinstance(fwd["process"], bool):
        raise ConfigError("forwarding.process: must be true (deliver from a child process) or false")
    endpoints = {}
    for name, url in _table(fwd, "endpoints").items():
        key = f"forwarding.endpoints.{name}"
        if name not in FORWARD_CHANNELS:
            raise ConfigError(f"{key}: not a forwarding channel (known: {', '.join(FORWARD_CHANNELS)})")
        if not isinstance(url, str):
            raise ConfigError(f"{key}: must be a string like 'http://127.0.0.1:9300'")
        endpoints[name] = _origin(url, key)
    limits = {}
    for name, ltable in _table(fwd, "limits").items():
        key = f"forwarding.limits.{name}"
        if name not in FORWARD_CHANNELS:
            raise ConfigError(f"{key}: not a forwarding channel (known: {', '.join(FORWARD_CHANNELS)})")
        ltable = _as_table(ltable, key)
        _only_keys(ltable, key + ".", {"concurrency", "rate_per_s"})
        rate = ltable.get("rate_per_s", 10.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.01 <= rate <= 10_000:
            raise ConfigError(f"{key}.rate_per_s: must be a number from 0.01 to 10000")
        limits[name] = ChannelLimits(_int(ltable, "concurrency", key, default=2, lo=1, hi=64), float(rate))
    meta_version = _str(fwd, "meta_api_version", "forwarding", default="v22.0")
    if not _API_VERSION_RE.match(meta_version):
        raise ConfigError(
            f"forwarding.meta_api_version: {meta_version!r} is not a Graph API version like 'v22.0'"
        )
    li_version = _str(fwd, "linkedin_version", "forwarding", default="202510")
    if not _LINKEDIN_VERSION_RE.match(li_version):
        raise ConfigError(
            f"forwarding.linkedin_version: {li_version!r} is not a version like '202510' (YYYYMM)"
        )

    targets: dict[str, Mapping[str, ForwardTarget]] = {}
    for sid, stable in raw_sites.items():
        site_targets = {}
        for cname, ccfg in _as_table(_as_table(stable, f"sites.{sid}").get("channels", {}), "").items():
            ckey = f"sites.{sid}.channels.{cname}"
            ccfg = _as_table(ccfg, ckey)
            if "conversion_rule" in ccfg and cname != "linkedin":
                raise ConfigError(f"{ckey}.conversion_rule: only LinkedIn has conversion rules")
            if "secret_env" not in ccfg:
                continue
            if cname in BROWSER_ONLY_CHANNELS:
                raise ConfigError(
                    f"{ckey}.secret_env: {cname} documents no server-side event API; it stays browser-side"
                )
            env_name = _str(ccfg, "secret_env", ckey)
            if not _ENV_NAME_RE.match(env_name):
                raise ConfigError(f"{ckey}.secret_env: {env_name!r} is not an environment variable name")
            secret = env.get(env_name, "").strip()
            if not secret:
                raise ConfigError(
                    f"{env_name}: missing; {ckey}.secret_env names it (the channel's server-side secret). "
                    "Set it, or remove secret_env to keep the channel browser-side"
                )
            rule = None
            if cname == "linkedin":
                rule = _str(ccfg, "conversion_rule", ckey, default="")
                if not _RULE_RE.match(rule):
                    raise ConfigError(
                        f"{ckey}.conversion_rule: required with secret_env: the id of the LinkedIn "
                        "conversion rule the events count toward, e.g. '12345678'"
                    )
            site_targets[cname] = ForwardTarget(
                sid, cname, env_name, secret, rule, sites[sid].channels[cname]
            )
        targets[sid] = MappingProxyType(site_targets)
    return Forwarding(
        targets=MappingProxyType(targets),
        debug=bool(fwd.get("debug", False)),
        endpoints=MappingProxyType(endpoints),
        limits=MappingProxyType(limits),
        timeout_s=_int(fwd, "timeout_ms", "forwarding", default=5000, lo=100, hi=120_000) / 1000,
        retry_base_s=_int(fwd, "retry_base_ms", "forwarding", default=1000, lo=1, hi=600_000) / 1000,
        retry_max_s=_int(fwd, "retry_max_s", "forwarding", default=900, lo=1, hi=86_400),
        meta_api_version=meta_version,
        linkedin_version=li_version,
        process=bool(fwd.get("process", True)),
    )
