"""``/dashboard/``: the partner pages, server-rendered with Jinja2.

Sign-in with e-mail + password (argon2id, rate limited) → a signed session cookie (HttpOnly,
SameSite=Lax, Secure on https). Every state-changing form (sign-in, sign-out) carries a CSRF token.
Pages send a CSP with ``script-src 'self'``: no inline script; chart data travels in a JSON data island
read by ``static/dashboard.js``; Chart.js is served from ``static/vendor/`` (never a CDN).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from pixel_server.core.errors import Rejected
from pixel_server.core.http import read_capped
from pixel_server.core.settings import Site
from pixel_server.core.state import State
from pixel_server.core.store import StoreError
from pixel_server.dashboards import panels
from pixel_server.dashboards.i18n import LABELS, LANGS
from pixel_server.reports.api import to_csv
from pixel_server.reports.auth import (
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    Authenticator,
    Principal,
    SignInLimiter,
)
from pixel_server.reports.floor import OTHER

HERE = Path(__file__).resolve().parent
CHART_JS = "vendor/chart-4.6.1.umd.min.js"
CSRF_COOKIE = "jobpixel_csrf"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
templates = Jinja2Templates(directory=str(HERE / "templates"))
# the CSS and JS are cached for a year: their URLs carry a digest of their bytes
ASSET_VERSION = hashlib.sha256(
    b"".join((HERE / "static" / f).read_bytes() for f in ("dashboard.css", "dashboard.js"))
).hexdigest()[:12]


def _fmt(value: Any, lang: str, metric: str = "") -> str:
    if value is None:
        return "–"
    if metric in (
        "read_rate",
        "apply_rate",
        "conversion_rate",
        "scroll_depth",
        "rate",
        "conversion_rate_step",
        "dropoff_percentage",
    ):
        s = f"{value:.1f}"
        return (s.replace(".", ",") if lang == "nb" else s) + " %"
    if metric == "time_on_ad":
        s = f"{value:.1f}"
        return (s.replace(".", ",") if lang == "nb" else s) + " s"
    if isinstance(value, float):
        s = f"{value:.2f}"
        return s.replace(".", ",") if lang == "nb" else s
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u202f")
    return str(value)


templates.env.filters["fmt"] = _fmt


def _lang(request: Request) -> str:
    lang = request.query_params.get("lang", "nb")
    return lang if lang in LANGS else "nb"


def _state(request: Request) -> State:
    state: State = request.app.state.jp
    return state


def _auth(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.reports_auth
    return auth


def _session(request: Request) -> tuple[Principal, str] | None:
    return _auth(request).session(request.cookies.get(SESSION_COOKIE))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
    lang = ctx.get("lang") or _lang(request)
    params = dict(request.query_params)
    params["lang"] = "en" if lang == "nb" else "nb"
    switch_url = request.url.path + "?" + urllib.parse.urlencode(params)
    base = {
        "t": LABELS[lang],
        "lang": lang,
        "chart_js": CHART_JS,
        "other": OTHER,
        "v": ASSET_VERSION,
        "switch_url": switch_url,
        "user": None,
        "csrf": "",
    }
    return templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status, headers=HEADERS)


def _login_redirect(request: Request) -> Response:
    return RedirectResponse("/dashboard/login?lang=" + _lang(request), 303, headers=HEADERS)


async def _form(request: Request) -> dict[str, str]:
    try:
        raw = await read_capped(request, 4096)
    except Rejected:
        return {}
    return {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}


# -- sign-in / sign-out -----------------------------------------------------------------------------
async def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    csrf = request.cookies.get(CSRF_COOKIE)
    if not csrf or len(csrf) != 32:
        csrf = secrets.token_urlsafe(24)
    resp = render(request, "login.html", {"csrf": csrf, "error": error}, status)
    resp.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/dashboard/",
    )
    return resp


async def login_get(request: Request) -> Response:
    if _session(request) is not None:
        return RedirectResponse("/dashboard/", 303, headers=HEADERS)
    return await login_page(request)


async def login_post(request: Request) -> Response:
    form = await _form(request)
    t = LABELS[_lang(request)]
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, form.get("csrf", "")):
        return await login_page(request, t["bad_form"], 403)
    limiter: SignInLimiter = request.app.state.reports_limiter
    email = form.get("email", "").strip().lower()[:320]
    client = request.client.host if request.client else "?"
    keys = (f"ip:{client}", f"email:{email}")
    if limiter.blocked(*keys):
        return await login_page(request, t["too_many"], 429)
    principal = await asyncio.to_thread(_auth(request).password, email, form.get("password", "")[:1024])
    if principal is None:
        limiter.failed(*keys)
        return await login_page(request, t["bad_login"], 401)
    value, _ = _auth(request).session_cookie(principal)
    resp = RedirectResponse("/dashboard/?lang=" + _lang(request), 303, headers=HEADERS)
    resp.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/dashboard/",
    )
    resp.delete_cookie(CSRF_COOKIE, path="/dashboard/")
    return resp


async def logout(request: Request) -> Response:
    session = _session(request)
    form = await _form(request)
    if session is None:
        return _login_redirect(request)
    if not hmac.compare_digest(session[1], form.get("csrf", "")):
        return Response("CSRF token missing or wrong", 403, headers=HEADERS)
    resp = _login_redirect(request)
    resp.delete_cookie(SESSION_COOKIE, path="/dashboard/")
    return resp


# -- pages --------------------------------------------------------------------------------------------
def _site(request: Request, principal: Principal) -> Site | None:
    site = _state(request).settings.sites.get(request.path_params["site"])
    return site if site is not None and principal.can_see(site) else None


def _not_found(request: Request, csrf: str) -> Response:
    return render(request, "error.html", {"message": "404", "csrf": csrf}, 404)


async def sites_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _login_redirect(request)
    principal, csrf = session
    sites = principal.sites(_state(request).settings)
    return render(request, "sites.html", {"sites": sites, "csrf": csrf, "user": principal.email})


async def site_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _login_redirect(request)
    principal, csrf = session
    site = _site(request, principal)
    if site is None:
        return _not_found(request, csrf)
    pr = panels.page_range(request.query_params, site.timezone)
    sort = request.query_params.get("sort", "visitors")
    desc = request.query_params.get("dir", "desc") != "asc"
    store = _state(request).store
    if store is None:
        return render(request, "error.html", {"message": "503", "csrf": csrf}, 503)

    try:
        data = await asyncio.to_thread(panels.site_panels, store, site, pr, sort, desc)
    except StoreError:
        return render(request, "error.html", {"message": "503", "csrf": csrf}, 503)
    data["charts"] = [_series_chart(data["series"], _lang(request))]
    ctx = {
        "site": site,
        "pr": pr,
        "csrf": csrf,
        "user": principal.email,
        "sort": sort,
        "desc": desc,
        "ad": None,
        **data,
    }
    return render(request, "site.html", ctx)


async def ad_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _login_redirect(request)
    principal, csrf = session
    site = _site(request, principal)
    ad = request.path_params["ad"]
    if site is None or len(ad) > 64:
        return _not_found(request, csrf)
    pr = panels.page_range(request.query_params, site.timezone)
    store = _state(request).store
    if store is None:
        return render(request, "error.html", {"message": "503", "csrf": csrf}, 503)

    try:
        data = await asyncio.to_thread(panels.ad_panels, store, site, pr, ad)
    except StoreError:
        return render(request, "error.html", {"message": "503", "csrf": csrf}, 503)
    lang = _lang(request)
    funnel_rows = data["funnel"].results
    data["charts"] = [
        _series_chart(data["series"], lang),
        {
            "id": "chart-funnel",
            "kind": "bar",
            "labels": [LABELS[lang][r["dimensions"][0]] for r in funnel_rows],
            "series": [{"label": LABELS[lang]["visitors"], "data": [r["metrics"][0] for r in funnel_rows]}],
        },
    ]
    return render(
        request, "ad.html", {"site": site, "pr": pr, "csrf": csrf, "user": principal.email, "ad": ad, **data}
    )


def _series_chart(series: dict[str, Any], lang: str) -> dict[str, Any]:
    t = LABELS[lang]
    return {
        "id": "chart-series",
        "kind": "line",
        "labels": series["current"]["labels"],
        "series": [
            {"label": f"{t['visitors']} · {t['current']}", "data": series["current"]["visitors"]},
            {
                "label": f"{t['visitors']} · {t['previous']}",
                "data": series["previous"]["visitors"],
                "dashed": True,
            },
        ],
    }


async def export_csv(request: Request) -> Response:
    """Every table on the pages as CSV, through the same query layer (and floor) as the API."""
    session = _session(request)
    if session is None:
        return _login_redirect(request)
    principal, csrf = session
    site = _site(request, principal)
    name = request.path_params["table"]
    ad = request.query_params.get("ad")
    if site is None or name not in panels.EXPORTS or (ad is not None and len(ad) > 64):
        return _not_found(request, csrf)
    pr = panels.page_range(request.query_params, site.timezone)
    store = _state(request).store
    if store is None:
        return Response("store unavailable", 503, headers=HEADERS)
    try:
        report = await asyncio.to_thread(panels.export, store, site, pr, name, ad)
    except StoreError:
        return Response("store unavailable", 503, headers=HEADERS)
    filename = f"{site.id}-{name}" + (f"-{ad}" if ad else "") + f"-{pr.first}-{pr.last}.csv"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in filename)
    return Response(
        to_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={**HEADERS, "Content-Disposition": f'attachment; filename="{safe}"'},
    )


class _Static(StaticFiles):
    """Versioned file names: cache for a year."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        resp = super().file_response(*args, **kwargs)
        resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp


def routes() -> list[BaseRoute]:
    return [
        Route("/dashboard", lambda r: RedirectResponse("/dashboard/", 308), methods=["GET"]),
        Route("/dashboard/", sites_page, methods=["GET"]),
        Route("/dashboard/login", login_get, methods=["GET"]),
        Route("/dashboard/login", login_post, methods=["POST"]),
        Route("/dashboard/logout", logout, methods=["POST"]),
        Mount("/dashboard/static", _Static(directory=HERE / "static"), name="dashboard_static"),
        Route("/dashboard/{site}/", site_page, methods=["GET"]),
        Route("/dashboard/{site}/ads/{ad}", ad_page, methods=["GET"]),
        Route("/dashboard/{site}/export/{table}.csv", export_csv, methods=["GET"]),
    ]
