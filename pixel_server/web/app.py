"""``create_app(settings)``: the ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pixel_server.consent import api as consent
from pixel_server.consent import revocation
from pixel_server.consent.log import Choices, journal_rows
from pixel_server.consent.revocation import Revocations
from pixel_server.core.grant import Grants
from pixel_server.core.http import json_response, preflight
from pixel_server.core.journal import Journal
from pixel_server.core.metrics import CONTENT_TYPE_LATEST, Metrics
from pixel_server.core.ratelimit import Buckets
from pixel_server.core.settings import Settings
from pixel_server.core.state import State
from pixel_server.core.store import RowsRefused, StoreLockedError, StoreUnavailable
from pixel_server.forwarding import wiring as forwarding
from pixel_server.ingest.pipeline import collect
from pixel_server.rights import retention
from pixel_server.storage import Store, StoreError, open_store
from pixel_server.storage.loader import CONSUMER, Loader, quarantine_stats
from pixel_server.web import assets
from pixel_server.web.frontdoor import JobpixelApp, PreRouter, ip_limit, request_id
from pixel_server.web.headers import security_headers_hook

log = logging.getLogger("jobpixel")

DEMO_DIR = Path(__file__).resolve().parent / "demo"
PING_CACHE_S = 1.5
PING_TIMEOUT_S = 2.0
# The journal's consumers, each with its own durable cursor; a new name starts at the oldest segment kept.
CONSUMERS: tuple[str, ...] = (CONSUMER,)


def create_app(settings: Settings, *, demo: bool = False, tune_gc: bool = False) -> JobpixelApp:
    """The ASGI app. ``tune_gc`` (``serve`` sets it; tests do not): once started, freeze what start-up
    made and collect less often (:func:`_tune_gc`)."""
    metrics = Metrics()
    journal = Journal(
        settings.journal_dir,
        forwarding.journal_consumers(settings, CONSUMERS),  # forwarding: + "outbox" when on
        on_commit=metrics.observe_commit,
        segment_bytes=settings.journal_segment_bytes,
        segment_seconds=settings.journal_segment_seconds,
        max_bytes=settings.journal_max_bytes,
        reserve_bytes=settings.journal_reserve_bytes,
    )
    state = State(
        settings=settings,
        grants=Grants(settings.signing_keys),
        revocations=Revocations(hash_key=settings.hash_key),
        choices=Choices(),
        metrics=metrics,
        journal=journal,
        grant_buckets=Buckets(  # door: events and choices per consent id
            settings.limits.grant_rate_per_s, settings.limits.grant_burst, settings.limits.max_keys
        ),
    )
    loader = Loader(
        journal,
        lambda: open_and_migrate(settings),
        metrics,
        settings.flush_interval_s,
        settings.flush_max_rows,
        on_connect=lambda store: setattr(state, "store", store),
    )
    state.loader = loader
    forwarder = forwarding.forwarder(state)  # forwarding (issue #8): None unless a site forwards
    state.forwarder = forwarder  # rights: erasure drops the subject's queued deliveries from it
    # grant: choices and revocations acknowledged but not yet in ClickHouse (e.g. just before a crash)
    leftovers = journal_rows(journal, CONSUMER)
    state.revocations.load_rows(leftovers)
    state.choices.load_rows(leftovers)
    all_origins = frozenset(o for s in settings.sites.values() for o in s.origins)
    ping = _CachedPing(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await loader.start()  # connects now if it can; otherwise keeps trying on its own
        except BaseException:
            journal.close()
            raise
        await _load_revocations(state)  # grant: before the first request, when the store answers
        keeper = asyncio.create_task(_keep_revocations(state))
        if forwarder is not None:
            await forwarder.start()
        sweeper = asyncio.create_task(retention.keep(state))  # rights: journal/quarantine retention
        if tune_gc:
            _tune_gc()
        try:
            yield
        finally:
            keeper.cancel()
            if forwarder is not None:  # before the loader's last drain, which takes its delivery-log rows
                await forwarder.stop()
            sweeper.cancel()
            try:
                await loader.stop()  # a last drain; what fails stays journaled for the next start
            except Exception as exc:
                log.warning("shutdown: journal not fully loaded (%s); it is loaded at the next start", exc)
            finally:
                journal.close()

    async def cors_preflight(request: Request) -> Response:
        return preflight(request, all_origins, "GET, POST", "Content-Type, Authorization", 86400)

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        error = await ping.error()
        status = ("not ready", 503) if error is not None else ("ready", 200)
        if not is_operator(request):  # door: the details are the operator's; anyone sees up/down
            if "authorization" in request.headers:  # a wrong token is said so, not silently ignored
                return unauthorized()
            return json_response({"status": status[0]}, status[1], {"Cache-Control": "no-store"})
        rows, nbytes = loader.cursor.lag()
        body = {
            "status": status[0],
            "store": error or "ok",
            "backend": settings.storage_backend,
            "spool_rows": rows,  # the loader's backlog (rows of an earlier process's segments uncounted)
            "spool_bytes": nbytes,
            "last_flush_error": "store_error" if loader.last_error else None,  # never the raw message
            "journal_bytes": journal.bytes_on_disk,
            "journal_max_bytes": journal.max_bytes,
            "journal_full": journal.full,
            "quarantine_files": quarantine_stats(loader.quarantine_dir)[0],
            "outbox": forwarder.status() if forwarder is not None else None,  # forwarding
        }
        return json_response(body, status[1], {"Cache-Control": "no-store"})

    def is_operator(request: Request) -> bool:
        """door: ``Authorization: Bearer $JOBPIXEL_OPS_TOKEN`` (constant-time compare); unset: nobody."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expected = settings.ops_token
        ok = (
            expected is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(token.strip().encode(), expected.encode())
        )
        return ok

    def unauthorized() -> Response:
        metrics.ops_refused.inc()
        return json_response(
            {
                "error": "unauthorized",
                "field": "authorization",
                "detail": "send 'Authorization: Bearer <JOBPIXEL_OPS_TOKEN>'",
            },
            401,
            {"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"},
        )

    async def metrics_route(request: Request) -> Response:
        if not is_operator(request):
            return unauthorized()
        rows, nbytes = loader.cursor.lag()
        metrics.spool_rows.set(rows)
        metrics.spool_bytes.set(nbytes)
        metrics.journal_bytes.set(journal.bytes_on_disk)
        metrics.journal_full.set(journal.full is not None)
        for consumer in journal.consumers:
            metrics.journal_lag_bytes.labels(consumer).set(journal.cursor(consumer).lag()[1])
        files, qbytes = quarantine_stats(loader.quarantine_dir)
        metrics.quarantine_files.set(files)
        metrics.quarantine_bytes.set(qbytes)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        Route("/p.js", assets.pixel_js, methods=["GET", "HEAD"]),
        Route("/b.js", assets.banner_js, methods=["GET", "HEAD"]),
        Route("/s/{site}.json", assets.site_config, methods=["GET", "HEAD"]),
        Route("/collect", collect, methods=["POST"]),
        Route("/collect", cors_preflight, methods=["OPTIONS"]),
        Route("/consent", consent.post_consent, methods=["POST"]),
        Route("/consent", cors_preflight, methods=["OPTIONS"]),
        Route("/consent/{consent_id}", consent.get_history, methods=["GET"]),
        Route("/consent/{consent_id}", cors_preflight, methods=["OPTIONS"]),
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
    # -- rights (issue #10): /me (access, export, erasure by the visitor) and the admin subject API ---
    from pixel_server.rights import api as rights_api

    routes += rights_api.routes()
    # -- end rights ----------------------------------------------------------------------------------
    if demo:
        routes.append(Route("/", lambda r: RedirectResponse("/demo/"), methods=["GET"]))
        routes.append(Mount("/demo", StaticFiles(directory=DEMO_DIR, html=True), name="demo"))

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.jp = state
    app.state.assets = assets.Assets()
    app.state.reports_auth = Authenticator(settings)  # reports
    app.state.reports_limiter = SignInLimiter()  # reports
    app.state.rights_limiter = rights_api.Limiter()  # rights
    # the pre-router every request passes (web/frontdoor.py): request id, the security headers of our
    # own pages and API (web/headers.py, issue #10), then the IP limit
    front = PreRouter([request_id, security_headers_hook])
    ip_buckets = Buckets(settings.limits.ip_rate_per_s, settings.limits.ip_burst, settings.limits.max_keys)
    if ip_buckets.enabled:
        front.add(ip_limit(ip_buckets, settings.trusted_proxies, all_origins, metrics))
    return JobpixelApp(app, state, front)


GC_THRESHOLD = (20_000, 20, 20)  # CPython's default is (700, 10, 10)


def _tune_gc() -> None:
    """After start-up: move everything start-up made (modules, chDB's bindings, settings, the
    User-Agent rules) out of the cyclic collector's reach (``gc.freeze``), and collect the youngest
    generation every 20,000 allocations instead of 700. Requests make short-lived objects that
    reference counting frees; with the defaults a full collection walked all of start-up's objects
    every few seconds under load and stalled the loop up to 55 ms (p99 36 → 15 ms, events/s +8–12 %
    with it; bench/README.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def open_and_migrate(settings: Settings) -> Store:
    """The loader's way to (re)connect: open the configured backend and bring the schema up to date."""
    store = open_store(settings)
    try:
        applied = store.migrate()
        retention.apply_ttl(store, settings)  # rights: every table's TTL from the configuration
    except Exception:
        store.close()
        raise
    if applied:
        log.info("schema migrated: %s", ", ".join(applied))
    return store


class _CachedPing:
    """``/readyz`` pings the store at most once per ``PING_CACHE_S``; concurrent probes share it."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._at = -PING_CACHE_S
        self._error: str | None = None
        self._inflight: asyncio.Future[str | None] | None = None

    async def error(self) -> str | None:
        if time.monotonic() - self._at < PING_CACHE_S:
            return self._error
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._ping())
        return await asyncio.shield(self._inflight)

    async def _ping(self) -> str | None:
        store = self.state.store
        loader = self.state.loader
        if store is None:  # the loader has tried and failed, or not tried yet
            error: str | None = "unavailable" if loader is not None and loader.last_error else "not_connected"
        else:
            try:
                await asyncio.wait_for(asyncio.to_thread(store.ping), timeout=PING_TIMEOUT_S)
                error = None
            except TimeoutError:
                error = "timeout"
            except StoreError as exc:
                error = store_status(exc)
        self._error, self._at = error, time.monotonic()
        return error


def store_status(exc: BaseException) -> str:
    """door: ``/readyz`` names a store problem from a fixed vocabulary, never with its raw message
    (which can carry hosts, users, paths): ``locked``, ``unavailable``, ``rows_refused``, ``error``."""
    if isinstance(exc, StoreLockedError):
        return "locked"
    if isinstance(exc, StoreUnavailable):
        return "unavailable"
    if isinstance(exc, RowsRefused):
        return "rows_refused"
    return "error"


async def _load_revocations(state: State) -> None:
    """grant: the revocation history once the store answers; then, on the clickhouse backend
    (several nodes share the log), what the others logged since."""
    store = state.store
    if store is None:
        return
    try:
        if not state.revocations.history_loaded:
            days = max(site.consent_days for site in state.settings.sites.values()) + 1
            await asyncio.to_thread(revocation.load_history, state.revocations, store, days)
        elif state.settings.storage_backend == "clickhouse":
            await asyncio.to_thread(revocation.reload_recent, state.revocations, store)
    except StoreError as exc:
        log.warning("revocations: load failed (%s); retrying in %.0f s", exc, revocation.POLL_S)


async def _keep_revocations(state: State) -> None:
    while True:
        await asyncio.sleep(revocation.POLL_S)
        await _load_revocations(state)
