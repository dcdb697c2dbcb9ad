"""Small HTTP helpers shared by the routes: JSON bodies, CORS for allowed origins, capped body reads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from pixel_server.ingest.reasons import DropReason
from pixel_server.ingest.request import MAX_BODY, Rejected


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def cors_headers(request: Request, allowed: Iterable[str]) -> dict[str, str]:
    """Echo the Origin back when the site allows it (credentials are never needed but harmless)."""
    origin = request.headers.get("origin")
    if origin and origin in allowed:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}


async def read_capped(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, or :class:`Rejected` (413) as soon as it passes ``limit``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise Rejected(DropReason.TOO_LARGE, 413, "body", f"larger than {limit} bytes")
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Rejected(DropReason.TOO_LARGE, 413, "body", f"larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Rejected(
            DropReason.INVALID, 400, "body", "client disconnected before the body was complete"
        ) from None
    return b"".join(chunks)
