"""The baseline for bench/collect.py: a plain Starlette app whose one route answers 204 to POST.

Run by the benchmark as ``python -m uvicorn baseline_app:app --app-dir bench`` with the
same uvicorn settings as ``jobpixel serve`` (one worker, uvloop and httptools as
``uvicorn[standard]`` picks them, no access log, no server header, no proxy headers).
It does no work at all, so it is the ceiling this framework and server reach on this
machine: jobpixel's figures are reported as a fraction of it.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def collect(request: Request) -> Response:
    return Response(status_code=204)


app = Starlette(routes=[Route("/collect", collect, methods=["POST"])])
