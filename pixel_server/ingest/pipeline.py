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

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Send

from pixel_server.core.errors import DropReason, Rejected
from pixel_server.core.grant import Grant
from pixel_server.core.http import check_content_type, cors_for, read_body
from pixel_server.core.journal import JournalError, JournalFull
from pixel_server.core.ratelimit import retry_after
from pixel_server.core.settings import Site
from pixel_server.core.state import State
from pixel_server.ingest.enrich import (
    UserAgentInfo,
    page_columns,
    parse_user_agent,
    referrer_columns,
    stored_props,
)
from pixel_server.ingest.request import Hit, parse_body


@dataclass
class Batch:
    headers: dict[str, str]
    hits: list[Hit]
    is_array: bool
    sites: dict[str, Site] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)
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
    """door: a browser sends ``Origin`` with every POST; without one, or with one the site does not
    list, nothing is stored (non-browser clients are not our users)."""
    header = batch.headers.get("origin")
    if header is None:
        raise Rejected(
            DropReason.BAD_ORIGIN,
            403,
            "origin",
            "no Origin header: events are taken only from the pages of the site's configured origins",
        )
    for hit in batch.hits:
        if header not in batch.sites[hit.site].origins:
            raise Rejected(
                DropReason.BAD_ORIGIN,
                403,
                "origin",
                f"origin {header!r} is not allowed for site {hit.site!r}",
            )


def drop_no_consent(state: State, batch: Batch) -> None:
    """Events need a verified grant with statistics for this site, at its current revision, unexpired
    and not revoked since it was issued. What may be stored comes from the grant, never the body."""
    cache: dict[str, Grant] = {}
    revocations = state.revocations
    for i, hit in enumerate(batch.hits):
        token = hit.token or ""
        grant = cache.get(token)
        if grant is None:
            grant = state.grants.verify(token)
            why = _no_consent(state, batch, hit, grant)
            if why is not None:
                raise Rejected(DropReason.NO_CONSENT, 403, _field(batch, i, "token"), why)
            assert grant is not None
            if revocations.is_revoked(grant):
                raise Rejected(
                    DropReason.NO_CONSENT, 403, _field(batch, i, "token"), "the grant was withdrawn"
                )
            if not revocations.can_judge(grant):
                raise Rejected(
                    DropReason.UNAVAILABLE,
                    503,
                    _field(batch, i, "token"),
                    "the consent log is not loaded yet (the store is away); try again",
                )
            cache[token] = grant
        elif grant.site != hit.site:
            raise Rejected(DropReason.NO_CONSENT, 403, _field(batch, i, "token"), "a grant for another site")
        batch.grants.append(grant)


def _no_consent(state: State, batch: Batch, hit: Hit, grant: Grant | None) -> str | None:
    if grant is None:
        return "no valid grant: POST /consent issues one when statistics is granted"
    if grant.site != hit.site:
        return "a grant for another site"
    if grant.revision < batch.sites[hit.site].revision:
        return "a grant for an older banner revision: the visitor must choose again"
    if not grant.statistics:
        return "the grant does not include statistics"
    return None


def drop_over_grant_limit(state: State, batch: Batch) -> None:
    """door: at most ``limits.grant_rate_per_s`` events per second per consent id (bursts of
    ``grant_burst``), in memory only; a batch counts each of its events."""
    buckets = state.grant_buckets
    if not buckets.enabled:
        return
    per_consent: dict[str, int] = {}
    for grant in batch.grants:
        per_consent[grant.consent_id] = per_consent.get(grant.consent_id, 0) + 1
    for consent_id, n in per_consent.items():
        wait = buckets.take(consent_id, n)
        if wait:
            state.metrics.limited("grant")
            raise Rejected(
                DropReason.RATE_LIMITED,
                429,
                "token",
                "too many events for this consent; send them again later",
                retry_after=retry_after(wait),
            )


def drop_bot(state: State, batch: Batch) -> None:
    batch.ua = parse_user_agent(batch.headers.get("user-agent", ""))
    if batch.ua.is_bot:
        raise Rejected(DropReason.BOT, 200, None, "bot")


def put_rows(state: State, batch: Batch) -> None:
    ua = batch.ua
    assert ua is not None
    now = round(time.time(), 3)  # DateTime64(3) takes epoch seconds as a JSON number
    gpc = batch.headers.get("sec-gpc") == "1"  # Global Privacy Control: marketing stays off
    sites = batch.sites
    for hit, grant in zip(batch.hits, batch.grants, strict=True):
        marketing = grant.marketing and not gpc
        site = sites[hit.site]
        # No fragment, the site's allow-listed parameters; click ids only behind a marketing grant.
        url, host, path, source, medium, campaign, term, content, click_type, click_ids = page_columns(
            hit.url, site.keep_query, marketing
        )
        referrer, referrer_host = referrer_columns(hit.referrer, host)
        client_ts = hit.client_ts
        row = {
            "event_id": hit.event_id,
            "site_id": hit.site,
            "ad_id": hit.ad,
            "name": hit.name,
            "ts": now,
            "client_ts": None if client_ts is None else client_ts / 1000,
            "visitor_id": grant.visitor,
            "consent_id": grant.consent_id,
            "choice_id": grant.choice_id,
            "grant_issued_at": grant.issued_at,
            "pageview_id": hit.pageview_id,
            "url": url,
            "hostname": host,
            "path": path,
            "referrer": referrer,
            "referrer_domain": referrer_host,
            "utm_source": source,
            "utm_medium": medium,
            "utm_campaign": campaign,
            "utm_term": term,
            "utm_content": content,
            "click_id_type": click_type,  # the kind of ad click, not the id
            "click_ids": click_ids,  # {} without marketing
            "browser": ua.browser,
            "browser_version": ua.browser_version,
            "os": ua.os,
            "os_version": ua.os_version,
            "device": ua.device,
            "engaged_ms": hit.engaged_ms,
            "scroll_pct": hit.scroll,
            "activity": hit.activity,
            "marketing": 1 if marketing else 0,
            "props": stored_props(hit.props, site.keep_query, marketing) if hit.props else {},
            "retention_days": site.retention_days,
        }
        if marketing:  # forwarding (issue #8): for the outbox only; not columns of `events` (skipped)
            row["user_agent"] = batch.headers.get("user-agent", "")
            if hit.channel_ids:
                row["channel_ids"] = hit.channel_ids
        batch.rows.append(row)


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

STEPS = (
    drop_unknown_site,
    drop_bad_origin,
    drop_no_consent,
    drop_over_grant_limit,
    drop_bot,
    put_rows,
    put_ad,
)


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
        if exc.retry_after is not None:
            cors = {**cors, "Retry-After": exc.retry_after}
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


async def send_reply(send: Send, reply: Reply, more: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer over ASGI without Starlette; ``more``: raw headers the front door's hooks added."""
    status, body, extra = reply
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
    if more:
        raw += more
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
