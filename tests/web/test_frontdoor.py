"""The front door: one pre-router that both the ``/collect`` fast path and the Starlette routes pass."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from starlette.types import Scope

from pixel_server.ingest.pipeline import Reply
from pixel_server.web.frontdoor import REQUEST_ID, RESPONSE_HEADERS
from tests.harness import DESKTOP_UA, LiveServer


def test_a_registered_hook_sees_collect_and_starlette_routes(pixel_server: LiveServer) -> None:
    seen: list[tuple[str, str, str]] = []

    def spy(scope: Scope) -> Reply | None:
        seen.append((scope["method"], scope["path"], scope[REQUEST_ID]))
        scope[RESPONSE_HEADERS].append((b"x-spy", b"1"))
        return None

    pixel_server.app.front.add(spy)
    token = pixel_server.consent()["token"]
    event = {
        "site": "test",
        "name": "pageview",
        "url": pixel_server.partner.origin + "/jobb/1",
        "event_id": str(uuid.uuid4()),
        "token": token,
    }
    headers = {
        "Content-Type": "text/plain",
        "Origin": pixel_server.partner.origin,
        "User-Agent": DESKTOP_UA,
        "X-Request-ID": "trace-42",
    }
    collected = httpx.post(pixel_server.url + "/collect", content=json.dumps(event), headers=headers)
    health = httpx.get(pixel_server.url + "/healthz")
    assert collected.status_code == 204 and health.status_code == 200
    assert ("POST", "/collect", "trace-42") in seen  # the fast path went through the hook
    assert any(m == "GET" and p == "/healthz" for m, p, _ in seen)  # and so did a Starlette route
    # the hook's response header, and the request id, reach the answer on both paths
    assert collected.headers["x-spy"] == "1" and health.headers["x-spy"] == "1"
    assert collected.headers["x-request-id"] == "trace-42"
    assert len(health.headers["x-request-id"]) == 16  # made here when the caller sent none
    assert len(pixel_server.events()) == 1


def test_a_hook_can_answer_early_on_either_path(pixel_server: LiveServer) -> None:
    def teapot(scope: Scope) -> Reply | None:
        if scope["path"] in ("/collect", "/s/test.json"):
            return 418, b'{"error":"teapot"}', {"X-Why": "hook"}
        return None

    pixel_server.app.front.add(teapot)
    for r in (
        httpx.post(pixel_server.url + "/collect", content=b"{}"),
        httpx.get(pixel_server.url + "/s/test.json"),
    ):
        assert r.status_code == 418 and r.json() == {"error": "teapot"}
        assert r.headers["x-why"] == "hook" and r.headers["x-request-id"]
    assert httpx.get(pixel_server.url + "/healthz").status_code == 200


def test_a_bad_request_id_is_replaced(pixel_server: LiveServer) -> None:
    r = httpx.get(pixel_server.url + "/healthz", headers={"X-Request-ID": "a b\tc" + "x" * 80})
    rid = r.headers["x-request-id"]
    assert rid != "a b" and len(rid) == 16 and rid.isalnum()


def test_starlette_middleware_is_refused_with_the_way_to_do_it(pixel_server: LiveServer) -> None:
    with pytest.raises(TypeError, match="pre-router hook"):
        pixel_server.app.add_middleware(object)
