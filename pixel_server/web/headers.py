"""Security headers on every page and API answer jobpixel serves itself (issue #10).

One pre-router hook (``web/frontdoor.py``): it puts the headers in ``scope[RESPONSE_HEADERS]``, and
the front door adds each one only when the route did not set it (the dashboard sends its own,
stricter, CSP):

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

from starlette.types import Scope

from pixel_server.web.frontdoor import RESPONSE_HEADERS

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


def security_headers_hook(scope: Scope) -> None:
    """A pre-router hook: never answers, only asks for the headers of this response."""
    extra = security_headers(scope["path"], scope.get("scheme", "http"))
    if extra:
        scope.setdefault(RESPONSE_HEADERS, []).extend(extra)
