"""Small HTTP helpers shared by the routes: JSON bodies, CORS for allowed origins, capped body reads."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from pixel_server.core.errors import DropReason, Rejected

MAX_BODY = 64 * 1024
ACCEPTED_TYPES = ("text/plain", "application/json")


def check_content_type(value: str | None) -> None:
    media = (value or "text/plain").split(";", 1)[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        raise Rejected(
            DropReason.UNSUPPORTED_MEDIA_TYPE, 415, "content-type", f"send {' or '.join(ACCEPTED_TYPES)}"
        )


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def cors_for(origin: str | None, allowed: Iterable[str] | frozenset[str]) -> dict[str, str]:
    """Echo the Origin back when the site allows it; the one CORS decision every route uses."""
    if origin and origin in allowed:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}


def cors_headers(request: Request, allowed: Iterable[str]) -> dict[str, str]:
    return cors_for(request.headers.get("origin"), allowed)


def preflight(request: Request, allowed: Iterable[str], methods: str, headers: str, max_age: int) -> Response:
    """The answer to a CORS preflight: 204, and the permissions only for an allowed Origin."""
    out = cors_headers(request, allowed)
    if "Access-Control-Allow-Origin" in out:
        out |= {
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": headers,
            "Access-Control-Max-Age": str(max_age),
        }
    return Response(status_code=204, headers=out)


async def read_body(content_length: str | None, receive: Receive, limit: int = MAX_BODY) -> bytes:
    """The body from ASGI ``receive``, or :class:`Rejected` (413) as soon as it passes ``limit``."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise Rejected(DropReason.TOO_LARGE, 413, "body", f"larger than {limit} bytes")
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Rejected(
                DropReason.INVALID, 400, "body", "client disconnected before the body was complete"
            )
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Rejected(DropReason.TOO_LARGE, 413, "body", f"larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_capped(request: Request, limit: int = MAX_BODY) -> bytes:
    return await read_body(request.headers.get("content-length"), request.receive, limit)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(scope: Scope, trusted: Sequence[Network]) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the nearest address in
    ``X-Forwarded-For`` that is not one of ours (the right-most: the left ones are the client's
    word). Used as a rate-limit key in memory only: never stored or logged."""
    peer = scope.get("client")
    ip: str = peer[0] if peer else ""
    if not trusted or not _is_trusted(ip, trusted):
        return ip
    for k, v in scope["headers"]:
        if k == b"x-forwarded-for":
            hops: list[str] = bytes(v).decode("latin-1").split(",")
            for hop in reversed(hops):
                hop = hop.strip()
                if hop and not _is_trusted(hop, trusted):
                    return hop
    return ip


def _is_trusted(ip: str, trusted: Sequence[Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in trusted)
