"""Enrichment: what an event's User-Agent and URLs say, without keeping the raw values.

User-Agent parsing uses ``ua-parser`` with its Rust resolver (``ua-parser[regex]``):
~13 µs for a User-Agent not seen before against ~435 µs for ``user-agents``
(MEASURED.md), the difference between ~13k and ~1.9k requests/s with a
realistic spread of User-Agents. ua-parser has no device class or bot flag, so
both are derived here from plain substring tests on the lower-cased string (a
crawler word marks a bot; ``Mobi`` and tablet markers give the device class, the
rule MDN recommends for mobile detection), which keeps a never-seen User-Agent
near 12 µs in all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import ua_parser.regex
from ua_parser import Parser, load_lazy_builtins

from pixel_server.core.clickids import CLICK_ID_KEYS

_PARSER = Parser(ua_parser.regex.Resolver(load_lazy_builtins()))
_DOMAINS = ua_parser.Domain.USER_AGENT | ua_parser.Domain.OS  # the device domain costs ~8 µs more

# Crawlers, monitors, link previews, scripted clients and headless browsers, as
# substrings of the lower-cased User-Agent: plain `in` tests are ~10x cheaper
# than one case-insensitive regex alternation over the whole string.
_BOT_WORDS = (
    "crawl",
    "spider",
    "slurp",
    "headless",
    "phantomjs",
    "lighthouse",
    "pingdom",
    "uptime",
    "monitor",
    "preview",
    "facebookexternalhit",
    "embedly",
    "python-",
    "python/",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "axios/",
    "node-fetch",
    "scrapy",
    "httpclient",
    "libwww",
    "feedfetcher",
    "mediapartners",
    "adsbot",
    "bingpreview",
    "yandex",
    "baidu",
    "petalsearch",
)
_BOT_SUFFIX_RE = re.compile(r"bot\b")  # "Googlebot/2.1", "bingbot)", not the phone brand "Cubot"
_TABLET_WORDS = ("ipad", "tablet", "kindle", "silk/", "playbook")
_MOBILE_WORDS = ("mobi", "iphone", "ipod", "android", "windows phone", "blackberry", "opera mini")

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
# A click-id parameter anywhere in a string (a URL in a prop, a query string, a fragment).
_CLICK_ID_RE = re.compile(
    r"(?:^|[?&#;/\s])(?:" + "|".join(re.escape(k) for k in CLICK_ID_KEYS) + r")=", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class UserAgentInfo:
    browser: str
    browser_version: str
    os: str
    os_version: str
    device: str  # desktop | mobile | tablet | bot
    is_bot: bool


BOT = UserAgentInfo("", "", "", "", "bot", True)


def is_bot(ua_lower: str) -> bool:
    if not ua_lower:
        return True
    if "bot" in ua_lower and _BOT_SUFFIX_RE.search(ua_lower.replace("cubot", "")):
        return True
    return any(w in ua_lower for w in _BOT_WORDS)


def device_class(ua_lower: str) -> str:
    if any(w in ua_lower for w in _TABLET_WORDS) or ("android" in ua_lower and "mobi" not in ua_lower):
        return "tablet"
    if any(w in ua_lower for w in _MOBILE_WORDS):
        return "mobile"
    return "desktop"


@lru_cache(maxsize=20_000)
def parse_user_agent(ua: str) -> UserAgentInfo:
    lower = ua.lower()
    if is_bot(lower):
        return BOT
    result = _PARSER(ua, _DOMAINS)
    agent, os_ = result.user_agent, result.os
    return UserAgentInfo(
        browser=agent.family if agent else "Other",
        browser_version=(agent.major or "") if agent else "",
        os=os_.family if os_ else "Other",
        os_version=".".join(p for p in (os_.major, os_.minor) if p) if os_ else "",
        device=device_class(lower),
        is_bot=False,
    )


@dataclass(frozen=True, slots=True)
class UrlInfo:
    hostname: str
    path: str
    utm: dict[str, str]
    click_ids: dict[str, str]


def parse_url(url: str) -> UrlInfo:
    """A page URL's host, path, UTM values and click ids; reached through :func:`page_columns`' cache
    (page URLs repeat across visitors), which shares the returned dicts: read only."""
    parts = urlsplit(url)
    utm: dict[str, str] = {}
    click_ids: dict[str, str] = {}
    if not parts.query:
        return UrlInfo((parts.hostname or "").lower(), parts.path or "/", utm, click_ids)
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        lk = key.lower()
        if lk in UTM_KEYS and lk not in utm:
            utm[lk] = value[:200]
        elif lk in CLICK_ID_KEYS:
            click_ids.setdefault(CLICK_ID_KEYS[lk], value[:500])
    return UrlInfo((parts.hostname or "").lower(), parts.path or "/", utm, click_ids)


@lru_cache(maxsize=20_000)
def stored_url(url: str, keep: frozenset[str], marketing: bool) -> str:
    """The page URL as stored: no fragment, only the site's allow-listed query parameters,
    and the click ids only behind a marketing grant (issue #7, section 2)."""
    parts = urlsplit(url)
    kept = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() in keep or (marketing and k.lower() in CLICK_ID_KEYS)
    ]
    path = parts.path if marketing else _CLICK_ID_RE.split(parts.path, 1)[0]  # ";gclid=…" in a path
    return urlunsplit(parts._replace(path=path, query=urlencode(kept), fragment=""))


@lru_cache(maxsize=20_000)
def page_columns(url: str, keep: frozenset[str], marketing: bool) -> tuple[Any, ...]:
    """The columns an event's page URL gives, in ``put_rows``' order, from one cache lookup per event:
    ``url`` (:func:`stored_url`), ``hostname``, ``path``, the five UTM values, ``click_id_type`` and
    ``click_ids`` (``{}`` without marketing). Shared: read only."""
    info = parse_url(url)
    utm = info.utm
    return (
        stored_url(url, keep, marketing),
        info.hostname,
        info.path,
        *(utm.get(k, "") for k in UTM_KEYS),
        next(iter(info.click_ids), ""),  # the kind of ad click, not the id
        info.click_ids if marketing else {},
    )


@lru_cache(maxsize=20_000)
def referrer_columns(referrer: str, own_host: str) -> tuple[str, str]:
    """``referrer`` (:func:`stored_referrer`) and ``referrer_domain``, from one cache lookup."""
    stored = stored_referrer(referrer)
    return stored, referrer_domain(stored, own_host)


def stored_referrer(referrer: str) -> str:
    """``scheme://host/path``: no query, no fragment, no user info (what Plausible keeps). Reached
    through :func:`referrer_columns`' cache."""
    if not referrer:
        return ""
    try:
        parts = urlsplit(referrer)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not host:
        return ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    path: str = _CLICK_ID_RE.split(parts.path, 1)[0]
    return urlunsplit((parts.scheme.lower(), netloc, path, "", ""))


def stored_props(props: dict[str, str], keep: frozenset[str], marketing: bool) -> dict[str, str]:
    """Props as stored: a URL value loses its fragment and what the allow-list does not keep;
    without marketing, a click-id key is dropped, and so is any other value carrying one."""
    out = {}
    for k, v in props.items():
        if not marketing and k.lower() in CLICK_ID_KEYS:
            continue
        if v.startswith(("http://", "https://")):
            try:
                v = stored_url(v, keep, marketing)
            except ValueError:
                continue
        elif not marketing and _CLICK_ID_RE.search(v):
            continue
        out[k] = v
    return out


def referrer_domain(referrer: str, own_host: str) -> str:
    """The referring host without ``www.``; empty for none or the page's own host. Reached through
    :func:`referrer_columns`' cache."""
    if not referrer:
        return ""
    host = (urlsplit(referrer).hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    own = own_host[4:] if own_host.startswith("www.") else own_host
    return "" if host == own else host
