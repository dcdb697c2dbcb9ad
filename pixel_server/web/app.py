"""``create_app(settings)``: the ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pixel_server.consent import api as consent
from pixel_server.core.grant import VisitorTokens
from pixel_server.core.http import json_response
from pixel_server.core.journal import Journal
from pixel_server.core.metrics import CONTENT_TYPE_LATEST, Metrics
from pixel_server.core.settings import Settings
from pixel_server.core.state import State
from pixel_server.ingest.pipeline import collect
from pixel_server.storage import StoreError, StoreLockedError, open_store
from pixel_server.storage.loader import Loader
from pixel_server.web import assets
from pixel_server.web.frontdoor import JobpixelApp

log = logging.getLogger("jobpixel")

DEMO_DIR = Path(__file__).resolve().parent / "demo"
STORE_RETRY_S = 5.0


def create_app(settings: Settings, *, demo: bool = False) -> JobpixelApp:
    metrics = Metrics()
    state = State(
        settings=settings,
        tokens=VisitorTokens(settings.signing_keys, settings.token_days),
        metrics=metrics,
        journal=Journal(settings.journal_dir, on_commit=metrics.observe_commit),
    )
    all_origins = frozenset(o for s in settings.sites.values() for o in s.origins)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        retry: asyncio.Task[None] | None = None
        try:
            await _connect(state)
        except StoreLockedError:
            raise
        except StoreError as exc:
            state.store_error = str(exc)
            log.warning("store unavailable at start (%s); events are spooled until it answers", exc)
            retry = asyncio.create_task(_connect_later(state))
        try:
            yield
        finally:
            if retry is not None:
                retry.cancel()
            try:
                if state.loader is not None:
                    await state.loader.stop()  # a last drain; what fails stays spooled for the next start
            except Exception as exc:
                log.warning("shutdown: spool not fully drained (%s); it is loaded at the next start", exc)
            finally:
                state.journal.close()
                if state.store is not None:
                    await asyncio.to_thread(state.store.close)
                    state.store = None

    async def preflight(request: Request) -> Response:
        origin = request.headers.get("origin", "")
        headers = {"Vary": "Origin"}
        if origin in all_origins:
            headers |= {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "86400",
            }
        return Response(status_code=204, headers=headers)

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        body = {
            "store": "ok",
            "backend": settings.storage_backend,
            "spool_rows": state.journal.rows_pending,
            "spool_bytes": state.journal.bytes_pending,
            "last_flush_error": state.loader.last_error if state.loader else None,
        }
        try:
            if state.store is None:
                raise StoreError(state.store_error or "store not connected")
            await asyncio.wait_for(asyncio.to_thread(state.store.ping), timeout=2.0)
        except (StoreError, TimeoutError) as exc:
            body["store"] = f"unavailable: {exc}"
            return json_response({"status": "not ready", **body}, 503, {"Cache-Control": "no-store"})
        return json_response({"status": "ready", **body}, 200, {"Cache-Control": "no-store"})

    async def metrics_route(request: Request) -> Response:
        metrics.spool_rows.set(state.journal.rows_pending)
        metrics.spool_bytes.set(state.journal.bytes_pending)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        Route("/p.js", assets.pixel_js, methods=["GET", "HEAD"]),
        Route("/b.js", assets.banner_js, methods=["GET", "HEAD"]),
        Route("/s/{site}.json", assets.site_config, methods=["GET", "HEAD"]),
        Route("/collect", collect, methods=["POST"]),
        Route("/collect", preflight, methods=["OPTIONS"]),
        Route("/consent", consent.post_consent, methods=["POST"]),
        Route("/consent", preflight, methods=["OPTIONS"]),
        Route("/consent/{consent_id}", consent.get_history, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    # -- reports (issue #9): the report API and the partner dashboard --------------------------------
    from pixel_server.dashboards import pages as dashboard_pages
    from pixel_server.reports import api as reports_api
    from pixel_server.reports.auth import Authenticator, SignInLimiter

    routes += reports_api.routes() + dashboard_pages.routes()
    # -- end reports ---------------------------------------------------------------------------------
    if demo:
        routes.append(Route("/", lambda r: RedirectResponse("/demo/"), methods=["GET"]))
        routes.append(Mount("/demo", StaticFiles(directory=DEMO_DIR, html=True), name="demo"))

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.jp = state
    app.state.assets = assets.Assets()
    app.state.reports_auth = Authenticator(settings)  # reports
    app.state.reports_limiter = SignInLimiter()  # reports
    return JobpixelApp(app, state)


async def _connect(state: State) -> None:
    def open_and_migrate() -> None:
        store = open_store(state.settings)
        try:
            applied = store.migrate()
        except Exception:
            store.close()
            raise
        if applied:
            log.info("schema migrated: %s", ", ".join(applied))
        state.store = store

    await asyncio.to_thread(open_and_migrate)
    state.store_error = None
    assert state.store is not None
    state.loader = Loader(
        state.journal,
        state.store,
        state.metrics,
        state.settings.flush_interval_s,
        state.settings.flush_max_rows,
    )
    state.loader.start()


async def _connect_later(state: State) -> None:
    while state.store is None:
        await asyncio.sleep(STORE_RETRY_S)
        try:
            await _connect(state)
            log.info("store reachable again; draining the spool")
        except StoreError as exc:
            state.store_error = str(exc)
