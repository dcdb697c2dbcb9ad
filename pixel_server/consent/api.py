"""``POST /consent``: log a choice (proof of consent, GDPR art. 7(1)) and answer with its grant.

One row per choice, durably (through the journal, like events), never
rewritten (:mod:`pixel_server.consent.log`); the signed grant
(:mod:`pixel_server.core.grant`) when statistics is granted at the site's
current revision. A choice that takes something back revokes every earlier
grant of its consent id at once (:mod:`pixel_server.consent.revocation`).
Global Privacy Control (``Sec-GPC: 1`` or ``gpc: true``) keeps marketing
denied whatever the client asked for, and is recorded. A marketing-only choice
gets no grant: nothing is measured server-side without statistics.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pixel_server.consent.log import Logged, body_hash, lookup_store, visitor_hash
from pixel_server.consent.revocation import revokes
from pixel_server.core.errors import DropReason, Rejected
from pixel_server.core.http import check_content_type, cors_headers, json_response, read_capped
from pixel_server.core.journal import JournalError, JournalFull
from pixel_server.core.ratelimit import retry_after
from pixel_server.core.settings import LANGS
from pixel_server.core.state import State
from pixel_server.core.store import Store, StoreError
from pixel_server.ingest.enrich import parse_user_agent

ACTIONS = ("accept_all", "reject_all", "custom", "withdraw", "expired")
CATEGORIES = ("necessary", "statistics", "marketing")
MAX_CONSENT_BODY = 4096


def _bad(field: str, detail: str) -> Rejected:
    return Rejected(DropReason.INVALID, 400, field, detail)


def parse_choice(doc: object) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise _bad("body", "must be a JSON object")

    def uid(field: str) -> str:
        try:
            return str(uuid.UUID(str(doc.get(field, ""))))
        except ValueError:
            raise _bad(field, "must be a UUID") from None

    def cats(field: str) -> list[str]:
        value = doc.get(field, [])
        if not isinstance(value, list) or not all(isinstance(c, str) and c in CATEGORIES for c in value):
            raise _bad(field, f"must be a list of {', '.join(CATEGORIES)}")
        return sorted(set(value), key=CATEGORIES.index)

    site = doc.get("site")
    if not isinstance(site, str) or not site:
        raise _bad("site", "required")
    action = doc.get("action")
    if action not in ACTIONS:
        raise _bad("action", f"must be one of {', '.join(ACTIONS)}")
    granted, denied = cats("granted"), cats("denied")
    if set(granted) & set(denied):
        raise _bad("denied", "a category cannot be both granted and denied")
    if "necessary" in denied:
        raise _bad("denied", "necessary cannot be denied")
    revision = doc.get("revision", 1)
    if type(revision) is not int or not 0 < revision < 2**31:
        raise _bad("revision", "must be a positive whole number")
    lang = doc.get("lang", "nb")
    if lang not in LANGS:
        raise _bad("lang", f"must be one of {', '.join(LANGS)}")
    gpc = doc.get("gpc", False)
    if not isinstance(gpc, bool):
        raise _bad("gpc", "must be true or false")
    layer = doc.get("layer", 1)
    if type(layer) is not int or layer not in (0, 1, 2):  # not 1.0, not True: the row must load
        raise _bad("layer", "must be 0 (no layer: expired), 1 or 2")
    if (layer == 0) != (action == "expired"):
        raise _bad("layer", "layer 0 goes with action 'expired' only, and 'expired' with layer 0")
    token = doc.get("token")
    if token is not None and not isinstance(token, str):
        raise _bad("token", "must be a string")
    return {
        "site": site,
        "consent_id": uid("consent_id"),
        "choice_id": uid("choice_id"),
        "action": action,
        "granted": granted,
        "denied": denied,
        "revision": revision,
        "lang": lang,
        "gpc": gpc,
        "layer": layer,
        "token": token,
    }


async def post_consent(request: Request) -> Response:
    state: State = request.app.state.jp
    headers: dict[str, str] = {"Vary": "Origin"}
    try:
        check_content_type(request.headers.get("content-type"))
        body = await read_capped(request, MAX_CONSENT_BODY)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _bad("body", "not valid JSON") from None
        choice = parse_choice(doc)
        site = state.settings.sites.get(choice["site"])
        if site is None:
            raise Rejected(DropReason.UNKNOWN_SITE, 403, "site", f"unknown site {choice['site']!r}")
        headers = cors_headers(request, site.origins)
        origin = request.headers.get("origin")
        if origin is None:  # door: browsers send Origin with every POST; other clients are not our users
            raise Rejected(
                DropReason.BAD_ORIGIN,
                403,
                "origin",
                "no Origin header: choices are taken only from the pages of the site's configured origins",
            )
        if origin not in site.origins:
            raise Rejected(
                DropReason.BAD_ORIGIN, 403, "origin", f"origin {origin!r} is not allowed for this site"
            )
        wait = state.grant_buckets.take(choice["consent_id"])  # door: choices per consent id
        if wait:
            state.metrics.limited("grant")
            raise Rejected(
                DropReason.RATE_LIMITED,
                429,
                "consent_id",
                "too many choices for this consent id; try again later",
                retry_after=retry_after(wait),
            )
        if choice["revision"] > site.revision:
            raise _bad("revision", f"newer than the site's current revision ({site.revision})")
        key = body_hash(choice)
        prior = await _logged(state, site.id, choice["consent_id"], choice["choice_id"])
        if prior is not None and prior.body_hash != key:
            raise Rejected(
                DropReason.CONFLICT,
                409,
                "choice_id",
                "this choice_id is logged with another body; a logged choice is never rewritten "
                "(make a new choice with a new choice_id)",
            )
    except Rejected as exc:
        state.metrics.drop(exc.reason)
        if exc.retry_after is not None:
            headers = {**headers, "Retry-After": exc.retry_after}
        return json_response(exc.body(), exc.status, headers)

    if request.headers.get("sec-gpc") == "1":
        choice["gpc"] = True
    if choice["gpc"] and "marketing" in choice["granted"]:
        choice["granted"].remove("marketing")  # GPC: marketing stays off, whatever was asked
    granted = ["necessary", *[c for c in choice["granted"] if c != "necessary"]]
    denied = [c for c in CATEGORIES if c not in granted]
    cid, revocations = choice["consent_id"], state.revocations
    # The grant the page sent (its current one): whose rows these are, and the visitor id to keep.
    sent = state.grants.verify(choice["token"], allow_expired=True)
    if sent is not None and (sent.site != site.id or sent.consent_id != cid):
        sent = None
    measured = "statistics" in granted and choice["revision"] == site.revision

    if prior is None:
        latest = revocations.latest(cid)
        ts_ms = max(int(time.time() * 1000), round(latest * 1000) + 1 if latest is not None else 0)
        in_force = sent is not None and not revocations.is_revoked(sent) and time.time() < sent.expires_at
        vid: uuid.UUID | None = sent.visitor_id if sent is not None and in_force else None
        if measured and vid is None:
            vid = uuid.UUID(bytes=secrets.token_bytes(16))
        whose = vid or (sent.visitor_id if sent is not None else None)
        ua = parse_user_agent(request.headers.get("user-agent", ""))
        row = {
            "choice_id": choice["choice_id"],
            "consent_id": cid,
            "site_id": site.id,
            "ts": ts_ms / 1000,
            "action": choice["action"],
            "granted": granted,
            "denied": denied,
            "revision": choice["revision"],
            "lang": choice["lang"],
            "gpc": int(choice["gpc"]),
            "layer": choice["layer"],
            "ua_family": "bot" if ua.is_bot else ua.browser,
            "retention_days": site.consent_log_days,
            "visitor_hash": visitor_hash(state.settings.hash_key, whose) if whose is not None else "",
            "body_hash": key,
            "row_id": str(uuid.uuid4()),
        }
        try:
            await state.journal.append("consent_log", [row])
        except JournalError as exc:
            reason = DropReason.JOURNAL_FULL if isinstance(exc, JournalFull) else DropReason.UNAVAILABLE
            state.metrics.drop(reason)
            retry = {"Retry-After": str(getattr(exc, "retry_after", 5))}
            return json_response(
                {"error": reason.value, "field": None, "detail": str(exc)}, 503, headers | retry
            )
        # On disk: it holds from now on, on this node, before any answer goes out.
        state.choices.remember(cid, choice["choice_id"], Logged(key, ts_ms / 1000, vid))
        if revokes(choice["action"], granted):
            revocations.record(cid, ts_ms / 1000)
        state.metrics.consent_choices.labels(site.id, choice["action"]).inc()
        issued_at = ts_ms / 1000
    else:  # a retry of a logged choice: the same row, and a grant as of that choice, not of now
        issued_at = prior.ts
        vid = prior.visitor_id or (sent.visitor_id if sent is not None else None)
        if measured and vid is None:
            vid = uuid.UUID(bytes=secrets.token_bytes(16))

    out: dict[str, Any] = {"consent_id": cid, "granted": granted, "token": None, "token_expires": None}
    if measured:
        grant = state.grants.issue(
            consent_id=cid,
            choice_id=choice["choice_id"],
            site=site.id,
            categories={c for c in granted if c != "necessary"},
            revision=choice["revision"],
            issued_at=issued_at,
            expires_at=issued_at + site.consent_days * 86_400,  # never past the consent's expiry
            visitor_id=vid,
        )
        if not revocations.is_revoked(grant) and time.time() < grant.expires_at:
            out["token"] = grant.token
            out["token_expires"] = int(grant.expires_at * 1000)
    return json_response(out, 200, headers)


async def _logged(state: State, site_id: str, consent_id: str, choice_id: str) -> Logged | None:
    """This choice's first row: this process's index (incl. the journal at start), else the log.

    With the store away, a choice logged before this process started cannot be checked;
    it is taken as new, and readers keep the first row of a choice_id (HISTORY_SQL)."""
    found = state.choices.get(consent_id, choice_id)
    if found is not None or state.store is None:
        return found
    try:
        return await asyncio.to_thread(lookup_store, state.store, site_id, consent_id, choice_id)
    except StoreError:
        return None


# The first row of each choice (a second one can only slip in while the store is away).
HISTORY_SQL = """
SELECT ts, action, granted, denied, revision, lang, gpc, layer
FROM (
    SELECT * FROM ${db}.consent_log FINAL
    WHERE site_id = {site:String} AND consent_id = {cid:UUID}
    ORDER BY ts ASC
    LIMIT 1 BY choice_id
)
ORDER BY ts DESC
LIMIT 200
"""


async def get_history(request: Request) -> Response:
    """A consent's history, for the holder of a grant of that consent id (expired or withdrawn
    still proves it is theirs); the consent id alone opens nothing."""
    state: State = request.app.state.jp
    site = state.settings.sites.get(request.query_params.get("site", ""))
    if site is None:
        return json_response({"error": "unknown_site", "field": "site", "detail": "unknown site"}, 403)
    headers = cors_headers(request, site.origins)
    try:
        cid = str(uuid.UUID(request.path_params["consent_id"]))
    except ValueError:
        return json_response(
            {"error": "invalid", "field": "consent_id", "detail": "must be a UUID"}, 400, headers
        )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    grant = state.grants.verify(token.strip(), allow_expired=True) if scheme.lower() == "bearer" else None
    if grant is None or grant.consent_id != cid or grant.site != site.id:
        return json_response(
            {
                "error": "unauthorized",
                "field": "authorization",
                "detail": "send the grant of this consent id as 'Authorization: Bearer <grant>'",
            },
            401,
            {**headers, "WWW-Authenticate": "Bearer"},
        )
    if state.store is None or state.loader is None:
        return json_response(
            {"error": "unavailable", "field": None, "detail": "store unavailable"}, 503, headers
        )
    try:
        if state.journal.rows_pending:
            await state.loader.next_flush()  # show a choice made a moment ago (shared, not forced)
        rows = await asyncio.to_thread(state.store.query, HISTORY_SQL, {"site": site.id, "cid": cid})
    except StoreError:
        return json_response(
            {"error": "unavailable", "field": None, "detail": "store unavailable"}, 503, headers
        )
    for r in rows:
        r["gpc"] = bool(r["gpc"])
    return json_response({"consent_id": cid, "history": rows}, 200, {**headers, "Cache-Control": "no-store"})


CONSENT_RATES_SQL = """
SELECT toDate(ts) AS day, category,
       countIf(has(granted, category)) AS granted,
       countIf(has(denied, category)) AS denied
FROM (
    SELECT ts, granted, denied FROM ${db}.consent_log FINAL
    WHERE site_id = {site:String} AND ts >= {since:DateTime64(3, 'UTC')} AND ts < {until:DateTime64(3, 'UTC')}
      AND action != 'expired'
    ORDER BY ts ASC
    LIMIT 1 BY choice_id
)
ARRAY JOIN ['statistics', 'marketing'] AS category
GROUP BY day, category
ORDER BY day, category
"""


def consent_rates(store: Store, site_id: str, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
    """Per day and category: choices that granted it and choices that denied it."""
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    return store.query(
        CONSENT_RATES_SQL,
        {"site": site_id, "since": since.strftime(fmt)[:-3], "until": until.strftime(fmt)[:-3]},
    )
