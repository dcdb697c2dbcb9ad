"""The operator's endpoints: ``/metrics`` and the full ``/readyz`` need ``JOBPIXEL_OPS_TOKEN``."""

from __future__ import annotations

import time

import httpx
import pytest

from pixel_server.core.store import StoreUnavailable
from pixel_server.web.app import PING_CACHE_S, store_status
from tests.harness import OPS, OPS_TOKEN, LiveServer


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token-0123456789", f"Basic {OPS_TOKEN}", OPS_TOKEN])
def test_metrics_refuses_without_the_ops_token(pixel_server: LiveServer, auth: str | None) -> None:
    r = httpx.get(pixel_server.url + "/metrics", headers={"Authorization": auth} if auth else {})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["field"] == "authorization" and "jobpixel_" not in r.text


def test_metrics_and_full_readyz_answer_the_operator(pixel_server: LiveServer) -> None:
    r = httpx.get(pixel_server.url + "/metrics", headers=OPS)
    assert r.status_code == 200 and "jobpixel_events_accepted" in r.text
    ready = httpx.get(pixel_server.url + "/readyz", headers=OPS)
    assert ready.status_code == 200 and ready.json()["store"] == "ok" and "journal_bytes" in ready.json()


def test_readyz_without_the_token_says_only_up_or_down(pixel_server: LiveServer) -> None:
    r = httpx.get(pixel_server.url + "/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    wrong = httpx.get(pixel_server.url + "/readyz", headers={"Authorization": "Bearer nope-nope-nope-nope"})
    assert wrong.status_code == 401
    assert httpx.get(pixel_server.url + "/healthz").json() == {"status": "ok"}  # public
    text = httpx.get(pixel_server.url + "/metrics", headers=OPS).text
    assert "jobpixel_ops_unauthorized_total 1.0" in text


def test_readyz_names_store_trouble_from_a_fixed_vocabulary(pixel_server: LiveServer) -> None:
    store = pixel_server.state.store
    assert store is not None

    def broken() -> None:
        raise StoreUnavailable("Code: 516. DB::Exception: default: Authentication failed at ch.internal:9000")

    store.ping = broken  # type: ignore[method-assign]
    time.sleep(PING_CACHE_S + 0.1)  # past the cached ping
    r = httpx.get(pixel_server.url + "/readyz", headers=OPS)
    assert r.status_code == 503 and r.json()["store"] == "unavailable"
    assert "ch.internal" not in r.text and "Authentication" not in r.text
    assert httpx.get(pixel_server.url + "/readyz").json() == {"status": "not ready"}
    assert store_status(RuntimeError("x")) == "error"
