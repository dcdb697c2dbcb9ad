"""Security headers on every page and API answer jobpixel serves itself (issue #10).

One ASGI middleware in front of the Starlette routes. It adds each header only when the route did not
set it (the dashboard sends its own, stricter, CSP):

- ``Content-Security-Policy``: no inline script, nothing from another origin, ``frame-ancestors 'none'``
  (no page may frame ours: clickjacking), ``base-uri 'none'``, ``form-action 'self'``;
- ``Referrer-Policy: strict-origin-when-cross-origin``, ``X-Content-Type-Options: nosniff``,
  ``Cross-Origin-Opener-Policy: same-origin``;
- ``Strict-Transport-Security`` when the request came over https (directly, or as a trusted proxy's
  ``X-Forwarded-Proto`` says — ``server.trusted_proxies``); never over plain http, where it means nothing.

Not on what other sites embed or call from their pages — ``/p.js``, ``/b.js``, ``/s/{site}.json``,
``/collect`` (its fast path never reaches Starlette anyway) — where CORS and cross-origin embedding rules
apply (``web/assets.py``). The demo pages stand in for a partner's page, inline script included: they get
everything but the CSP.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000"
BASE: tuple[tuple[bytes, bytes], ...] = (
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
EMBEDDED = ("/p.js", "/b.js", "/collect")


def security_headers(path: str, scheme: str) -> list[tuple[bytes, bytes]]:
    """The headers for a response to ``path`` over ``scheme`` (empty for what other sites embed)."""
    if path in EMBEDDED or path.startswith("/s/"):
        return []
    out = list(BASE)
    if not path.startswith("/demo"):
        out.append((b"content-security-policy", CSP.encode()))
    if scheme == "https":
        out.append((b"strict-transport-security", HSTS.encode()))
    return out


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope["path"], scope.get("scheme", "http"))
        if not extra:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
