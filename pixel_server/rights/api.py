"""``/me`` (the visitor) and ``/api/v1/admin/subjects/{id}`` (the operator): access, portability and
erasure (GDPR art. 15, 17, 20).

The grant is the key to ``/me``: ``Authorization: Bearer <grant>`` of that site, signature valid and
not expired. A withdrawn (revoked) grant still opens ``/me`` for its own visitor — withdrawing must
not lock anyone out of their data. Anything else (no grant, forged, tampered, another site's,
expired) is 401 before any read, and ``DELETE`` erases nothing. CORS answers only the site's origins.
Authorised requests (each one reads or rewrites a visitor's rows) are rate limited per client address
(:class:`Limiter`, small and local); an unauthorised one costs an HMAC and reads nothing.
"""

from __future__ import annotations

import csv
import io
import time
from collections import deque
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pixel_server.core.grant import Grant
from pixel_server.core.http import cors_headers, json_response, preflight
from pixel_server.core.settings import Site
from pixel_server.core.state import State
from pixel_server.core.store import StoreError
from pixel_server.rights import service
from pixel_server.rights.subject import Subject, as_uuid

NO_STORE = {"Cache-Control": "no-store"}


class Limiter:
    """At most ``limit`` requests per key in ``window_s`` (a sliding window in memory, per process)."""

    def __init__(self, limit: int = 20, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        q = self._hits.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if len(q) >= self.limit:
            return False
        q.append(now)
        if len(self._hits) > 50_000:  # bound memory under a spray of addresses
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self.window_s}
        return True


def _error(status: int, error: str, field: str | None, detail: str, headers: dict[str, str]) -> Response:
    return json_response({"error": error, "field": field, "detail": detail}, status, {**NO_STORE, **headers})


def _limited(request: Request, headers: dict[str, str]) -> Response | None:
    limiter: Limiter = request.app.state.rights_limiter
    client = request.client.host if request.client else "?"
    if limiter.allow(client):
        return None
    return _error(
        429,
        "rate_limited",
        None,
        "too many requests; try again in a minute",
        {**headers, "Retry-After": "60"},
    )


def _site(state: State, request: Request) -> Site | None:
    """The ``site`` query parameter's site; ``None`` for an unknown one, or any other parameter."""
    if set(request.query_params.keys()) != {"site"} or len(request.query_params.getlist("site")) != 1:
        return None
    return state.settings.sites.get(request.query_params["site"])


def _grant(state: State, request: Request) -> Grant | None:
    """The bearer grant if we signed it and it has not expired; revoked is fine (module doc)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return state.grants.verify(token.strip())


def _unavailable(headers: dict[str, str]) -> Response:
    return _error(503, "unavailable", None, "the store is not reachable; try again later", headers)


def to_csv(doc: dict[str, Any]) -> bytes:
    """The export as one long CSV: ``table,row,column,value`` (every table has its own columns)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["table", "row", "column", "value"])
    for table, rows in doc["tables"].items():
        for i, row in enumerate(rows):
            for col, value in row.items():
                shown = value if isinstance(value, str) else orjson.dumps(value).decode()
                w.writerow([table, i, col, shown])
    return buf.getvalue().encode("utf-8")


def reply_export(request: Request, doc: dict[str, Any], headers: dict[str, str]) -> Response:
    accept = request.headers.get("accept", "")
    name = f"jobpixel-{doc['site']}-mine-data"
    if "text/csv" in accept and "application/json" not in accept.split(",")[0]:
        return Response(
            to_csv(doc),
            media_type="text/csv; charset=utf-8",
            headers={**NO_STORE, **headers, "Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return json_response(
        doc, 200, {**NO_STORE, **headers, "Content-Disposition": f'inline; filename="{name}.json"'}
    )


async def _export(state: State, subject: Subject) -> dict[str, Any]:
    assert state.store is not None and state.loader is not None
    store, journal, cluster = state.store, state.journal, state.settings.cluster
    return await state.loader.exclusive(lambda: service.export_sync(store, journal, subject, cluster))


# -- the visitor: /me ---------------------------------------------------------------------------------
async def me(request: Request) -> Response:
    state: State = request.app.state.jp
    site = _site(state, request)
    headers = cors_headers(request, site.origins if site is not None else ())
    grant = _grant(state, request)
    if grant is not None and site is None:
        return _error(404, "not_found", "site", "unknown site", headers)
    if grant is None or site is None or grant.site != site.id:
        return _error(
            401,
            "unauthorized",
            "authorization",
            "send this site's grant (the jobpixel_vid cookie) as 'Authorization: Bearer <grant>'",
            {**headers, "WWW-Authenticate": "Bearer"},
        )
    if (limited := _limited(request, headers)) is not None:
        return limited
    if state.store is None or state.loader is None:
        return _unavailable(headers)
    subject = service.subject_for(state.settings, site.id, str(grant.visitor_id), grant.consent_id)
    try:
        if request.method == "DELETE":
            counts = await service.erase_live(state, subject, str(grant.visitor_id), "visitor")
            return json_response(
                {"erased": counts, "revoked": True, "site": site.id}, 200, {**NO_STORE, **headers}
            )
        doc = await _export(state, subject)
    except StoreError:
        return _unavailable(headers)
    return reply_export(request, doc, headers)


async def me_preflight(request: Request) -> Response:
    state: State = request.app.state.jp
    site = _site(state, request)
    return preflight(request, site.origins if site else (), "GET, DELETE", "Authorization, Accept", 600)


# -- the operator: /api/v1/admin/subjects/{id}?site=SITE ---------------------------------------------
async def admin_subject(request: Request) -> Response:
    from pixel_server.reports.auth import Authenticator

    state: State = request.app.state.jp
    auth: Authenticator = request.app.state.reports_auth
    principal = auth.bearer(request.headers.get("authorization"))
    if principal is None:
        return _error(
            401,
            "unauthorized",
            "authorization",
            "send Authorization: Bearer <admin token>",
            {"WWW-Authenticate": 'Bearer realm="jobpixel"'},
        )
    if not principal.is_admin:
        return _error(403, "forbidden", "authorization", "subject requests need an admin token", {})
    if (limited := _limited(request, {})) is not None:
        return limited
    site = _site(state, request)
    if site is None:
        return _error(404, "not_found", "site", "unknown site", {})
    asked = as_uuid(request.path_params["id"])
    if asked is None:
        return _error(400, "invalid", "id", "must be a visitor id or a consent id (UUID)", {})
    if state.store is None or state.loader is None:
        return _unavailable({})
    subject = service.subject_for(state.settings, site.id, asked, asked)
    try:
        if request.method == "DELETE":
            counts = await service.erase_live(state, subject, asked, "operator")
            return json_response({"erased": counts, "revoked": True, "site": site.id}, 200, NO_STORE)
        doc = await _export(state, subject)
    except StoreError:
        return _unavailable({})
    return reply_export(request, doc, {})


def routes() -> list[BaseRoute]:
    return [
        Route("/me", me, methods=["GET", "DELETE"]),
        Route("/me", me_preflight, methods=["OPTIONS"]),
        Route("/api/v1/admin/subjects/{id}", admin_subject, methods=["GET", "DELETE"]),
    ]


# -- OpenAPI: the rights paths, merged into /api/v1/openapi.json (reports/openapi.py) ------------------
_ERR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_EXPORT = {
    "type": "object",
    "required": ["format_version", "site", "generated_at", "subject", "tables"],
    "properties": {
        "format_version": {"type": "integer", "const": service.FORMAT_VERSION},
        "site": {"type": "string"},
        "generated_at": {"type": "string"},
        "subject": {"type": "object"},
        "tables": {
            "type": "object",
            "description": "Rows per table (every table with a visitor or consent column), `ads` (the ads "
            "their events name), `journal.<table>` (accepted, not loaded yet)",
            "additionalProperties": {"type": "array", "items": {"type": "object"}},
        },
    },
}
_ERASED = {
    "type": "object",
    "required": ["erased", "revoked", "site"],
    "properties": {
        "erased": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "revoked": {"type": "boolean"},
        "site": {"type": "string"},
    },
}


def _op(
    summary: str, security: str, ok: dict[str, Any], codes: dict[int, str], **extra: Any
) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{security: []}],
        "parameters": [
            {"name": "site", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 64}},
            *extra.get("parameters", []),
        ],
        "responses": {
            "200": {"description": "OK", "content": ok},
            **{str(c): {"description": d, "content": _ERR} for c, d in codes.items()},
        },
    }


def openapi_paths() -> dict[str, Any]:
    export = {"application/json": {"schema": _EXPORT}, "text/csv": {"schema": {"type": "string"}}}
    erased = {"application/json": {"schema": _ERASED}}
    visitor = {
        401: "No grant of this site (missing, forged, expired); a withdrawn grant is accepted",
        404: "Unknown site",
        429: "Rate limited",
        503: "The store is not reachable",
    }
    operator = {
        400: "The id is not a UUID",
        401: "No valid token",
        403: "Not an admin token",
        404: "Unknown site",
        429: "Rate limited",
        503: "The store is not reachable",
    }
    uuid_re = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    sid = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid", "pattern": uuid_re},
    }
    return {
        "/me": {
            "get": _op("The grant's visitor's data on this site (JSON, or CSV)", "grant", export, visitor),
            "delete": _op(
                "Erase the grant's visitor's data everywhere; revoke the grant", "grant", erased, visitor
            ),
        },
        "/api/v1/admin/subjects/{id}": {
            "get": _op(
                "A subject's data (visitor id or consent id)", "bearer", export, operator, parameters=[sid]
            ),
            "delete": _op("Erase a subject's data everywhere", "bearer", erased, operator, parameters=[sid]),
        },
    }
