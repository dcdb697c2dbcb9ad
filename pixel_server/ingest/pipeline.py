"""The ``/collect`` pipeline, in the Plausible style: named steps over a batch.

Each ``drop_*`` step either lets the batch through or raises
:class:`~pixel_server.ingest.request.Rejected` with a reason from the closed
:class:`~pixel_server.core.errors.DropReason` set; ``put_*`` steps build
what is stored. A batch is all or nothing, and a 204 means it is on disk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Send

from pixel_server.core.errors import DropReason, Rejected
from pixel_server.core.grant import Visitor
from pixel_server.core.http import check_content_type, cors_for, read_body
from pixel_server.core.journal import JournalError, JournalFull
from pixel_server.core.settings import Site
from pixel_server.core.state import State
from pixel_server.ingest.enrich import (
    UserAgentInfo,
    parse_url,
    parse_user_agent,
    referrer_domain,
    without_click_ids,
)
from pixel_server.ingest.request import Hit, parse_body


@dataclass
class Batch:
    headers: dict[str, str]
    hits: list[Hit]
    is_array: bool
    sites: dict[str, Site] = field(default_factory=dict)
    visitors: list[Visitor] = field(default_factory=list)
    ua: UserAgentInfo | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    ad_rows: list[dict[str, Any]] = field(default_factory=list)  # reports: put_ad


def drop_unknown_site(state: State, batch: Batch) -> None:
    for i, hit in enumerate(batch.hits):
        site = state.settings.sites.get(hit.site)
        if site is None:
            raise Rejected(
                DropReason.UNKNOWN_SITE, 403, _field(batch, i, "site"), f"unknown site {hit.site!r}"
            )
        batch.sites[hit.site] = site


def drop_bad_origin(state: State, batch: Batch) -> None:
    header = batch.headers.get("origin")
    for i, hit in enumerate(batch.hits):
        allowed = batch.sites[hit.site].origins
        if header is not None:
            if header not in allowed:
                raise Rejected(
                    DropReason.BAD_ORIGIN, 403, "origin", f"origin {header!r} is not allowed for this site"
                )
        else:
            parts = urlsplit(hit.url)
            if f"{parts.scheme}://{parts.netloc.lower()}" not in allowed:
                raise Rejected(
                    DropReason.BAD_ORIGIN,
                    403,
                    _field(batch, i, "url"),
                    "the page's origin is not allowed for this site",
                )


def drop_no_consent(state: State, batch: Batch) -> None:
    """Events need a valid visitor token, which is only issued with statistics consent."""
    cache: dict[str, Visitor] = {}
    for i, hit in enumerate(batch.hits):
        token = hit.token or ""
        visitor = cache.get(token) or state.tokens.verify(token)
        if visitor is None:
            raise Rejected(
                DropReason.NO_CONSENT,
                403,
                _field(batch, i, "token"),
                "no valid visitor token: it is issued by POST /consent when statistics is granted",
            )
        cache[token] = visitor
        batch.visitors.append(visitor)


def drop_bot(state: State, batch: Batch) -> None:
    batch.ua = parse_user_agent(batch.headers.get("user-agent", ""))
    if batch.ua.is_bot:
        raise Rejected(DropReason.BOT, 200, None, "bot")


def put_rows(state: State, batch: Batch) -> None:
    ua = batch.ua
    assert ua is not None
    now = round(time.time(), 3)  # DateTime64(3) takes epoch seconds as a JSON number
    gpc = batch.headers.get("sec-gpc") == "1"  # Global Privacy Control: marketing stays off
    for hit, visitor in zip(batch.hits, batch.visitors, strict=True):
        if gpc:
            hit.marketing = False
        url = parse_url(hit.url)
        click_type = next(iter(url.click_ids), "")
        batch.rows.append(
            {
                "event_id": hit.event_id,
                "site_id": hit.site,
                "ad_id": hit.ad,
                "name": hit.name,
                "ts": now,
                "client_ts": _ms_to_ch(hit.client_ts),
                "visitor_id": str(visitor.id),
                "pageview_id": hit.pageview_id,
                # Click ids identify an ad click: kept only with marketing consent, here too.
                "url": hit.url if hit.marketing or not url.click_ids else without_click_ids(hit.url),
                "hostname": url.hostname,
                "path": url.path,
                "referrer": hit.referrer,
                "referrer_domain": referrer_domain(hit.referrer, url.hostname),
                "utm_source": url.utm.get("utm_source", ""),
                "utm_medium": url.utm.get("utm_medium", ""),
                "utm_campaign": url.utm.get("utm_campaign", ""),
                "utm_term": url.utm.get("utm_term", ""),
                "utm_content": url.utm.get("utm_content", ""),
                "click_id_type": click_type,
                # Click ids identify an ad click: kept only with marketing consent.
                "click_ids": url.click_ids if hit.marketing else {},
                "browser": ua.browser,
                "browser_version": ua.browser_version,
                "os": ua.os,
                "os_version": ua.os_version,
                "device": ua.device,
                "engaged_ms": hit.engaged_ms,
                "scroll_pct": hit.scroll,
                "activity": hit.activity,
                "marketing": int(hit.marketing),
                "props": hit.props,
                "retention_days": batch.sites[hit.site].retention_days,
            }
        )


def put_ad(state: State, batch: Batch) -> None:
    """reports (issue #9): one ``ads`` sighting per pageview that carries its JobPosting."""
    for hit, row in zip(batch.hits, batch.rows, strict=True):
        if hit.job is None or not hit.ad:
            continue
        job = hit.job
        batch.ad_rows.append(
            {
                "site_id": hit.site,
                "ad_id": hit.ad,
                "first_seen": row["ts"],
                "last_seen": row["ts"],
                "latest": {
                    "ts": row["ts"],
                    **{k: job.get(k, "") for k in AD_TEXT_FIELDS},
                    "words": job.get("words", 0),
                },
            }
        )


AD_TEXT_FIELDS = (
    "title",
    "category",
    "location",
    "employer",
    "employment_type",
    "date_posted",
    "valid_through",
)

STEPS = (drop_unknown_site, drop_bad_origin, drop_no_consent, drop_bot, put_rows, put_ad)


# The request headers the pipeline reads; everything else is never decoded.
HEADERS = (b"origin", b"user-agent", b"content-type", b"content-length", b"sec-gpc")
Reply = tuple[int, bytes, dict[str, str]]


async def process(state: State, headers: dict[str, str], receive: Receive) -> Reply:
    """Run one ``/collect`` request: (status, JSON body or b"", extra headers)."""
    metrics = state.metrics
    batch: Batch | None = None
    try:
        check_content_type(headers.get("content-type"))
        body = await read_body(headers.get("content-length"), receive)
        batch = Batch(headers, parse_body(body), is_array=body.lstrip()[:1] == b"[")
        for step in STEPS:
            step(state, batch)
    except Rejected as exc:
        metrics.drop(exc.reason, len(batch.hits) if batch else exc.events)
        cors = _cors(headers, batch)
        if exc.reason is DropReason.BOT:
            return (
                200,
                orjson.dumps({"accepted": 0, "dropped": {"bot": len(batch.hits) if batch else 1}}),
                cors,
            )
        return exc.status, orjson.dumps(exc.body()), cors
    try:
        await state.journal.append("events", batch.rows)
        if batch.ad_rows:
            await state.journal.append("ads", batch.ad_rows)
    except JournalError as exc:
        reason = DropReason.JOURNAL_FULL if isinstance(exc, JournalFull) else DropReason.UNAVAILABLE
        metrics.drop(reason, len(batch.rows))
        body = orjson.dumps({"error": reason.value, "field": None, "detail": str(exc)})
        return 503, body, {"Retry-After": str(getattr(exc, "retry_after", 5)), **_cors(headers, batch)}
    if len(batch.sites) == 1:
        metrics.accept(batch.hits[0].site, len(batch.hits))
    else:
        for site_id in batch.sites:
            metrics.accept(site_id, sum(1 for h in batch.hits if h.site == site_id))
    if state.loader is not None:
        state.loader.nudge()
    return 204, b"", _cors(headers, batch)


async def send_reply(send: Send, reply: Reply) -> None:
    status, body, extra = reply
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
    if body:
        raw += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in raw if k in HEADERS}


async def collect(request: Request) -> Response:
    """The same pipeline as a Starlette endpoint (the fast path below is what serves traffic)."""
    status, body, extra = await process(
        request.app.state.jp, _headers(request.scope["headers"]), request.receive
    )
    return Response(body or None, status, extra, "application/json" if body else None)


def _cors(headers: dict[str, str], batch: Batch | None) -> dict[str, str]:
    sites = list(batch.sites.values()) if batch is not None else []
    allowed = sites[0].origins if len(sites) == 1 else frozenset().union(*(site.origins for site in sites))
    return cors_for(headers.get("origin"), allowed)


def _field(batch: Batch, i: int, name: str) -> str:
    """Fields are named as the client sent them: ``url`` for one object, ``events[3].url`` in an array."""
    return f"events[{i}].{name}" if batch.is_array else name


def _ms_to_ch(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000
