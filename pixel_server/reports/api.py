"""``/api/v1``: the partner report API (issue #9), JSON or CSV (``Accept: text/csv``).

Auth first (401 without a valid bearer token), then the site (404 unless the caller may see it),
then the query (400 naming the field). Store trouble is a 503, never a 500.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pixel_server.core.errors import Rejected
from pixel_server.core.http import check_content_type, json_response, read_capped
from pixel_server.core.settings import Site
from pixel_server.core.state import State
from pixel_server.core.store import StoreError
from pixel_server.reports import engine, openapi
from pixel_server.reports.auth import Authenticator, Principal
from pixel_server.reports.query import (
    BadQuery,
    only_keys,
    parse_filters,
    parse_query,
    parse_range,
    parse_site,
)

CONSENT_DIMENSIONS = ("time:day", "category")
NO_STORE = {"Cache-Control": "no-store"}


class Denied(Exception):
    def __init__(self, status: int, error: str, field: str | None, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.field, self.detail = status, error, field, detail

    def response(self) -> Response:
        headers = dict(NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="jobpixel"'
        return json_response(
            {"error": self.error, "field": self.field, "detail": self.detail}, self.status, headers
        )


def authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.reports_auth
    return auth


def site_for(state: State, principal: Principal, site_id: str) -> Site:
    """The one place a partner is kept to its own sites; another partner's site looks absent."""
    site = state.settings.sites.get(site_id)
    if site is None or not principal.can_see(site):
        raise Denied(404, "not_found", "site", f"no site {site_id!r}")
    return site


def to_csv(report: engine.Report) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(report.columns)
    for row in report.results:
        w.writerow(["" if v is None else v for v in (*row["dimensions"], *row["metrics"])])
    return buf.getvalue().encode("utf-8")


def wants_csv(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept.split(",")[0]


def reply(request: Request, report: engine.Report, name: str) -> Response:
    if wants_csv(request):
        return Response(
            to_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return json_response(report.body(), 200, NO_STORE)


async def _body(request: Request) -> dict[str, Any]:
    check_content_type(request.headers.get("content-type") or "application/json")
    raw = await read_capped(request)
    try:
        doc = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        raise BadQuery("body", "not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadQuery("body", "must be a JSON object")
    return doc


Handler = Callable[[Request, State, Principal, dict[str, Any]], engine.Report]


def endpoint(handler: Handler, name: str) -> Callable[[Request], Any]:
    async def route(request: Request) -> Response:
        state: State = request.app.state.jp
        try:
            principal = authenticator(request).bearer(request.headers.get("authorization"))
            if principal is None:
                raise Denied(401, "unauthorized", "authorization", "send Authorization: Bearer <API token>")
            body = await _body(request)
            if state.store is None:
                raise Denied(503, "unavailable", None, "the store is not reachable yet")
            report = await asyncio.to_thread(handler, request, state, principal, body)
        except Denied as exc:
            return exc.response()
        except BadQuery as exc:
            return json_response(exc.body(), 400, NO_STORE)
        except Rejected as exc:
            return json_response(exc.body(), exc.status, NO_STORE)
        except StoreError as exc:
            return json_response(
                {"error": "unavailable", "field": None, "detail": str(exc)[:300]}, 503, NO_STORE
            )
        return reply(request, report, name)

    return route


def _store(state: State) -> Any:
    if state.store is None:
        raise Denied(503, "unavailable", None, "the store is not reachable yet")
    return state.store


def do_query(request: Request, state: State, principal: Principal, body: dict[str, Any]) -> engine.Report:
    site = site_for(state, principal, parse_site(body))
    q = parse_query(body, site.timezone)
    return engine.run_query(_store(state), site, q)


FUNNEL_KEYS = ("site", "date_range", "filters")


def do_funnel(request: Request, state: State, principal: Principal, body: dict[str, Any]) -> engine.Report:
    site = site_for(state, principal, parse_site(body))
    only_keys(body, FUNNEL_KEYS)
    rng = parse_range(body.get("date_range", "30d"), site.timezone)
    filters = parse_filters(body.get("filters"))
    shown = {
        "site": site.id,
        "date_range": rng.shown(),
        "timezone": site.timezone,
        "filters": [f.shown() for f in filters],
    }
    return engine.run_funnel(_store(state), site, rng, filters, shown)


CONSENT_KEYS = ("site", "date_range", "dimensions")


def do_consent_rates(
    request: Request, state: State, principal: Principal, body: dict[str, Any]
) -> engine.Report:
    site = site_for(state, principal, parse_site(body))
    only_keys(body, CONSENT_KEYS)
    rng = parse_range(body.get("date_range", "30d"), site.timezone)
    dims_raw = body.get("dimensions", list(CONSENT_DIMENSIONS))
    if not isinstance(dims_raw, list):
        raise BadQuery("dimensions", "must be a list")
    dims: list[str] = []
    for i, d in enumerate(dims_raw):
        if d not in CONSENT_DIMENSIONS or d in dims:
            raise BadQuery(f"dimensions[{i}]", f"must be one of {', '.join(CONSENT_DIMENSIONS)}, once each")
        dims.append(d)
    shown = {"site": site.id, "date_range": rng.shown(), "timezone": site.timezone, "dimensions": dims}
    return engine.run_consent_rates(_store(state), site, rng, tuple(dims), shown)


async def list_sites(request: Request) -> Response:
    state: State = request.app.state.jp
    principal = authenticator(request).bearer(request.headers.get("authorization"))
    if principal is None:
        return Denied(
            401, "unauthorized", "authorization", "send Authorization: Bearer <API token>"
        ).response()
    sites = [
        {"site": s.id, "partner": s.partner, "timezone": s.timezone, "k_floor": s.k_floor}
        for s in principal.sites(state.settings)
    ]
    return json_response({"sites": sites}, 200, NO_STORE)


async def openapi_json(request: Request) -> Response:
    return json_response(openapi.document(), 200, {"Cache-Control": "public, max-age=300"})


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/query", endpoint(do_query, "query"), methods=["POST"]),
        Route("/api/v1/funnel", endpoint(do_funnel, "funnel"), methods=["POST"]),
        Route("/api/v1/consent-rates", endpoint(do_consent_rates, "consent-rates"), methods=["POST"]),
        Route("/api/v1/sites", list_sites, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi_json, methods=["GET"]),
    ]
