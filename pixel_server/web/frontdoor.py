"""The one ASGI entry uvicorn runs, and the pre-router every request passes first.

Every HTTP request goes through the same three steps (ARCHITECTURE.md, "The front door"):

1. **The pre-router**: an ordered list of hooks, ``hook(scope) -> Reply | None``. Each sees the
   raw ASGI scope (no Starlette ``Request`` is built: the ``/collect`` hot path stays cheap), and
   either answers at once (``(status, JSON body, headers)``, e.g. a 429) or returns ``None`` to
   pass. Response headers a hook wants on whatever answers later (``X-Request-ID``) go in
   ``scope[RESPONSE_HEADERS]``. Hooks are synchronous and must not read the body.
2. ``POST /collect``: straight to :func:`pixel_server.ingest.pipeline.process`.
3. Everything else (and lifespan): the Starlette app, its routes and middleware.

Cross-cutting concerns (request id, rate limits, auth later) are hooks, so they see both paths;
a Starlette middleware would never see ``POST /collect``, which is why
:meth:`JobpixelApp.add_middleware` refuses.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from pixel_server.core.http import Network, client_ip, cors_for
from pixel_server.core.metrics import Metrics
from pixel_server.core.ratelimit import Buckets, retry_after
from pixel_server.core.state import State
from pixel_server.ingest.pipeline import Reply, _headers, process, send_reply

Hook = Callable[[Scope], Reply | None]
RESPONSE_HEADERS = "jobpixel.response_headers"  # scope key: list[(bytes, bytes)] added to the answer
REQUEST_ID = "jobpixel.request_id"  # scope key: this request's id (also in request.scope)
_REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
# Made ids: 8 random hex digits per process + a counter (no syscall per request, unique per process).
_RID_PREFIX = secrets.token_hex(4).encode()
_rid_counter = itertools.count(1)


def request_id(scope: Scope) -> None:
    """Keep the caller's ``X-Request-ID`` when it is a plain token, else make one; echo it back."""
    rid = None
    for k, v in scope["headers"]:
        if k == b"x-request-id":
            rid = v if _REQUEST_ID_RE.match(v) else None
            break
    if rid is None:
        rid = b"%s%08x" % (_RID_PREFIX, next(_rid_counter) & 0xFFFFFFFF)
    scope[REQUEST_ID] = rid.decode("ascii")
    scope.setdefault(RESPONSE_HEADERS, []).append((b"x-request-id", rid))


def ip_limit(buckets: Buckets, trusted: Sequence[Network], origins: frozenset[str], metrics: Metrics) -> Hook:
    """A hook: visitor requests (``POST /collect``, ``POST /consent``, ``GET /consent/{id}``) per
    client IP, a token bucket each (``[limits] ip_*``); over it, 429 with ``Retry-After``, counted
    in ``jobpixel_rate_limited_total{reason="ip"}``. The address is a key in memory, nothing more."""
    body = orjson.dumps(
        {"error": "rate_limited", "field": None, "detail": "too many requests from this address"}
    )

    def hook(scope: Scope) -> Reply | None:
        path = scope["path"]
        if not (path == "/collect" or path == "/consent" or path.startswith("/consent/")):
            return None
        if scope["method"] == "OPTIONS":
            return None
        wait = buckets.take(client_ip(scope, trusted))
        if not wait:
            return None
        metrics.limited("ip")
        origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
        return 429, body, {"Retry-After": retry_after(wait), **cors_for(origin, origins)}

    return hook


class PreRouter:
    """The ordered hooks every HTTP request passes before the fast path or the Starlette routes."""

    def __init__(self, hooks: list[Hook] | None = None) -> None:
        self.hooks: list[Hook] = list(hooks or ())

    def add(self, hook: Hook, *, first: bool = False) -> None:
        """Register ``hook``: last by default; ``first=True`` puts it in front of the others."""
        if first:
            self.hooks.insert(0, hook)
        else:
            self.hooks.append(hook)

    def __call__(self, scope: Scope) -> Reply | None:
        for hook in self.hooks:
            reply = hook(scope)
            if reply is not None:
                return reply
        return None


class JobpixelApp:
    """The ASGI app uvicorn runs: the pre-router, then ``POST /collect`` straight to
    :func:`process`, everything else (and lifespan) to the Starlette app.

    The hot path skips Starlette's ``__call__``, its middleware stack, router,
    Request and Response objects, which together cost more per request than the
    validation does (py-spy, bench/README.md). An exception here still becomes a
    500 that uvicorn logs. Attribute access (``app.state``, …) goes to Starlette.
    """

    def __init__(self, app: Starlette, state: State, front: PreRouter | None = None) -> None:
        self.app = app
        self.jp = state
        self.front = front if front is not None else PreRouter([request_id])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        early = self.front(scope)
        extra: list[tuple[bytes, bytes]] | None = scope.get(RESPONSE_HEADERS)
        if early is not None:
            await send_reply(send, early, extra)
            return
        if scope["path"] == "/collect" and scope["method"] == "POST":
            await send_reply(send, await process(self.jp, _headers(scope["headers"]), receive), extra)
            return
        await self.app(scope, receive, _adding(send, extra) if extra else send)

    def add_middleware(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "a Starlette middleware would not see POST /collect (the fast path runs in front of it): "
            "register a pre-router hook instead, app.front.add(hook) (pixel_server/web/frontdoor.py)"
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


def _adding(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` with the pre-router's response headers added to the response start, each only where
    the route did not set it (the dashboard sends its own, stricter, CSP)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            present = {k.lower() for k, _ in headers}
            message = {**message, "headers": headers + [(k, v) for k, v in extra if k not in present]}
        await send(message)

    return wrapped
