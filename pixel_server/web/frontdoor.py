"""The one ASGI entry uvicorn runs."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from pixel_server.core.state import State
from pixel_server.ingest.pipeline import _headers, process, send_reply


class JobpixelApp:
    """The ASGI app uvicorn runs: ``POST /collect`` goes straight to :func:`process`,
    everything else (and lifespan) to the Starlette app.

    The hot path skips Starlette's ``__call__``, its middleware stack, router,
    Request and Response objects, which together cost more per request than the
    validation does (py-spy, bench/README.md). An exception here still becomes a
    500 that uvicorn logs. Attribute access (``app.state``, …) goes to Starlette.
    """

    def __init__(self, app: Starlette, state: State) -> None:
        self.app = app
        self.jp = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/collect" and scope["method"] == "POST":
            await send_reply(send, await process(self.jp, _headers(scope["headers"]), receive))
            return
        await self.app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)
