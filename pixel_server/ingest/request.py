"""Parse and validate a ``/collect`` body into :class:`Hit` objects.

Limits (issue #2): body ≤ 64 KiB, batch ≤ 50, url/referrer ≤ 2000 characters,
names ≤ 64, props ≤ 20 keys. Every failure raises :class:`Rejected` naming the
field, e.g. ``events[3].url``. Unknown fields are ignored so a newer pixel can
talk to an older server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import orjson

from pixel_server.core.errors import DropReason, Rejected
from pixel_server.core.http import MAX_BODY

MAX_BATCH = 50
MAX_URL = 2000
MAX_NAME = 64
MAX_PROPS = 20
MAX_PROP_VALUE = 500
MAX_ENGAGED_MS = 24 * 3600 * 1000
MAX_ACTIVITY = 24 * 720  # 5-second windows in a day
CLIENT_TS_MIN = 946_684_800_000  # 2000-01-01, epoch ms
CLIENT_TS_MAX = 4_102_444_800_000  # 2100-01-01

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


@dataclass(slots=True)
class Hit:
    site: str
    ad: str
    name: str
    url: str
    referrer: str
    event_id: str
    pageview_id: str | None
    engaged_ms: int
    scroll: int
    activity: int
    client_ts: int | None
    token: str | None  # the grant; what may be stored comes from it (a body `marketing` is ignored)
    props: dict[str, str]
    job: dict[str, str | int] | None = None  # reports: the page's JobPosting, pageviews only
    channel_ids: dict[str, str] | None = None  # forwarding: ids the channels' own tags set (marketing only)


def parse_body(body: bytes) -> list[Hit]:
    if len(body) > MAX_BODY:
        raise Rejected(DropReason.TOO_LARGE, 413, "body", f"larger than {MAX_BODY} bytes")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Rejected(DropReason.INVALID, 400, "body", "not valid JSON") from None
    if isinstance(doc, dict):
        return [parse_event(doc, "")]
    if not isinstance(doc, list):
        raise Rejected(DropReason.INVALID, 400, "body", "must be an event object or an array of events")
    if not doc:
        raise Rejected(DropReason.INVALID, 400, "body", "empty batch")
    if len(doc) > MAX_BATCH:
        raise Rejected(
            DropReason.INVALID, 400, "body", f"batch of {len(doc)} events; at most {MAX_BATCH}", len(doc)
        )
    hits = []
    for i, ev in enumerate(doc):
        prefix = f"events[{i}]."
        if not isinstance(ev, dict):
            raise Rejected(DropReason.INVALID, 400, f"events[{i}]", "must be an object", len(doc))
        try:
            hits.append(parse_event(ev, prefix))
        except Rejected as exc:
            raise Rejected(exc.reason, exc.status, exc.field, exc.detail, len(doc)) from None
    return hits


def parse_event(ev: dict[str, Any], prefix: str) -> Hit:
    """One event: the common, valid shape through :func:`_quick`; anything else (and every error,
    with its message) through :func:`_checked`, which alone decides what is refused."""
    return _quick(ev, prefix) or _checked(ev, prefix)


_HTTP = ("https://", "http://")


def _quick(ev: dict[str, Any], prefix: str) -> Hit | None:
    """The checks of :func:`_checked` for a well-formed event, without its per-field helpers (a third
    of the request's parse time, bench/README.md). Accepts only what :func:`_checked` accepts, with the
    same result (tests/ingest/test_parse_quick.py); returns None for anything else, to be judged
    there. Props, job and channel ids go through the same helpers as there."""
    get = ev.get
    site = get("site")
    name = get("name")
    url = get("url")
    event_id = get("event_id")
    if not (
        type(site) is str
        and 0 < len(site) <= 64
        and type(name) is str
        and _NAME_RE.match(name)
        and type(url) is str
        and 0 < len(url) <= MAX_URL
        and url.startswith(_HTTP)
        and type(event_id) is str
        and _UUID_RE.match(event_id)
        and _parses(url, True)
    ):
        return None
    referrer = get("referrer")
    if referrer is None:
        referrer = ""
    elif type(referrer) is not str or len(referrer) > MAX_URL or (referrer and not _parses(referrer, False)):
        return None
    ad = get("ad")
    if ad is None:
        ad = ""
    elif type(ad) is not str or len(ad) > MAX_NAME:
        return None
    pageview_id = get("pageview_id")
    if pageview_id == "":
        pageview_id = None
    elif pageview_id is not None:
        if type(pageview_id) is not str or not _UUID_RE.match(pageview_id):
            return None
        pageview_id = pageview_id.lower()
    client_ts = get("client_ts")
    if client_ts is not None and not (type(client_ts) is int and CLIENT_TS_MIN <= client_ts <= CLIENT_TS_MAX):
        return None
    token = get("token")
    if token is not None and type(token) is not str:
        return None
    engaged_ms = get("engaged_ms", 0)
    scroll = get("scroll", 0)
    activity = get("activity", 0)
    if not (
        (type(engaged_ms) is int and 0 <= engaged_ms <= MAX_ENGAGED_MS)
        and (type(scroll) is int and 0 <= scroll <= 100)
        and (type(activity) is int and 0 <= activity <= MAX_ACTIVITY)
    ):
        return None
    props = get("props")
    job = get("job")
    channel_ids = get("channel_ids")
    return Hit(
        site,
        ad,
        name,
        url,
        referrer,
        event_id.lower(),
        pageview_id,
        engaged_ms,
        scroll,
        activity,
        client_ts,
        token,
        _props(props, prefix) if props is not None else {},
        _job(job, prefix) if job is not None and name == "pageview" else None,
        _channel_ids(channel_ids, prefix) if channel_ids is not None else None,
    )


def _checked(ev: dict[str, Any], prefix: str) -> Hit:
    def bad(field: str, detail: str) -> Rejected:
        return Rejected(DropReason.INVALID, 400, prefix + field, detail)

    def text(field: str, limit: int, required: bool = False) -> str:
        value = ev.get(field)
        if value is None or value == "":
            if required:
                raise bad(field, "required")
            return ""
        if not isinstance(value, str):
            raise bad(field, "must be a string")
        if len(value) > limit:
            raise bad(field, f"longer than {limit} characters")
        return value

    def integer(field: str, lo: int, hi: int) -> int:
        value = ev.get(field, 0)
        if value is None:
            return 0
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad(field, "must be a whole number")
        if not lo <= value <= hi:
            raise bad(field, f"must be from {lo} to {hi}")
        return value

    def an_uuid(field: str, required: bool) -> str | None:
        value = ev.get(field)
        if value is None or value == "":
            if required:
                raise bad(field, "required")
            return None
        if not isinstance(value, str) or not _UUID_RE.match(value):
            raise bad(field, "must be a UUID like 7f1c2b8e-1111-4a4a-9b9b-123456789abc")
        return value.lower()

    site = text("site", 64, required=True)
    name = text("name", MAX_NAME, required=True)
    if not _NAME_RE.match(name):
        raise bad("name", "letters, digits and _ . : - only")
    url = text("url", MAX_URL, required=True)
    if not (url.startswith("https://") or url.startswith("http://")) or not _parses(url, need_host=True):
        raise bad("url", "must be an absolute http(s) URL")
    referrer = text("referrer", MAX_URL)
    if referrer and not _parses(referrer, need_host=False):
        raise bad("referrer", "not a valid URL")
    client_ts = ev.get("client_ts")
    if client_ts is not None:
        client_ts = integer("client_ts", CLIENT_TS_MIN, CLIENT_TS_MAX)
    token = ev.get("token")
    if token is not None and not isinstance(token, str):
        raise bad("token", "must be a string")
    return Hit(
        site=site,
        ad=text("ad", MAX_NAME),
        name=name,
        url=url,
        referrer=referrer,
        event_id=an_uuid("event_id", required=True) or "",
        pageview_id=an_uuid("pageview_id", required=False),
        engaged_ms=integer("engaged_ms", 0, MAX_ENGAGED_MS),
        scroll=integer("scroll", 0, 100),
        activity=integer("activity", 0, MAX_ACTIVITY),
        client_ts=client_ts,
        token=token,
        props=_props(ev.get("props"), prefix),
        job=_job(ev.get("job"), prefix) if name == "pageview" else None,
        channel_ids=_channel_ids(ev.get("channel_ids"), prefix),
    )


@lru_cache(maxsize=20_000)
def _parses(url: str, need_host: bool) -> bool:
    """urlsplit raises on some inputs (``http://[x/``, NFKC look-alikes in the host).

    Cached like :func:`pixel_server.ingest.enrich.page_columns`: urlsplit's own cache holds 128
    URLs, and uncached this check cost 8 µs an event (bench/README.md)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return False
    return bool(host) or not need_host


def _props(value: object, prefix: str) -> dict[str, str]:
    if value is None:
        return {}
    field = prefix + "props"
    if not isinstance(value, dict):
        raise Rejected(DropReason.INVALID, 400, field, "must be an object")
    if len(value) > MAX_PROPS:
        raise Rejected(DropReason.INVALID, 400, field, f"{len(value)} keys; at most {MAX_PROPS}")
    out = {}
    for k, v in value.items():
        if not 0 < len(k) <= MAX_NAME:
            raise Rejected(
                DropReason.INVALID, 400, f"{field}.{k[:64]}", f"key must be 1 to {MAX_NAME} characters"
            )
        if v is None:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, int | float):
            v = str(v)
        elif not isinstance(v, str):
            raise Rejected(DropReason.INVALID, 400, f"{field}.{k}", "must be a string, number or boolean")
        if len(v) > MAX_PROP_VALUE:
            raise Rejected(
                DropReason.INVALID, 400, f"{field}.{k}", f"longer than {MAX_PROP_VALUE} characters"
            )
        out[k] = v
    return out


# -- reports: job metadata on pageviews (CONTRACTS.md "Job metadata on the wire") ---------------------
JOB_TEXT_LIMITS = {"title": 200, "category": 100, "location": 100, "employer": 100, "employment_type": 50}
JOB_DATES = ("date_posted", "valid_through")
MAX_WORDS = 1_000_000
_DATE_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\Z")


def _job(value: object, prefix: str) -> dict[str, str | int] | None:
    """Every key optional; unknown keys ignored (a newer pixel may send more)."""
    if value is None:
        return None
    field = prefix + "job"
    if not isinstance(value, dict):
        raise Rejected(DropReason.INVALID, 400, field, "must be an object")
    out: dict[str, str | int] = {}
    for key, limit in JOB_TEXT_LIMITS.items():
        v = value.get(key)
        if v is None:
            continue
        if not isinstance(v, str):
            raise Rejected(DropReason.INVALID, 400, f"{field}.{key}", "must be a string")
        if len(v) > limit:
            raise Rejected(DropReason.INVALID, 400, f"{field}.{key}", f"longer than {limit} characters")
        out[key] = " ".join(v.split())
    for key in JOB_DATES:
        v = value.get(key)
        if v is None or v == "":
            continue
        if not isinstance(v, str) or not _DATE_RE.match(v):
            raise Rejected(DropReason.INVALID, 400, f"{field}.{key}", "must be a date like 2026-12-01")
        out[key] = v
    words = value.get("words")
    if words is not None:
        if isinstance(words, float) and words.is_integer():
            words = int(words)
        if not isinstance(words, int) or isinstance(words, bool) or not 0 <= words <= MAX_WORDS:
            raise Rejected(
                DropReason.INVALID, 400, f"{field}.words", f"must be a whole number from 0 to {MAX_WORDS}"
            )
        out["words"] = words
    return out or None


# -- forwarding (issue #8): the identifiers the channels' own browser tags set on the page's domain ------
CHANNEL_ID_KEYS = ("ga_client_id", "fbp", "fbc", "scid", "li_fat_id")  # forwarding/base.py reads these
MAX_CHANNEL_ID = 200


def _channel_ids(value: object, prefix: str) -> dict[str, str] | None:
    """``{"ga_client_id", "fbp", "fbc", "scid", "li_fat_id"}``, strings; unknown keys ignored. Kept in
    the journal row only under a marketing grant (``put_rows``); never stored in ClickHouse."""
    if value is None:
        return None
    field = prefix + "channel_ids"
    if not isinstance(value, dict):
        raise Rejected(DropReason.INVALID, 400, field, "must be an object")
    out: dict[str, str] = {}
    for key in CHANNEL_ID_KEYS:
        v = value.get(key)
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            raise Rejected(DropReason.INVALID, 400, f"{field}.{key}", "must be a string")
        if len(v) > MAX_CHANNEL_ID:
            raise Rejected(
                DropReason.INVALID, 400, f"{field}.{key}", f"longer than {MAX_CHANNEL_ID} characters"
            )
        out[key] = v
    return out or None
