"""The retry classification: what is retried, what is final, and the backoff between attempts."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

from pixel_server.forwarding import registry
from pixel_server.forwarding.base import OutRequest
from pixel_server.forwarding.sender import Outcome, Sender, backoff
from tests.forwarding.support import forwarding_settings
from tests.harness import run_async

REQUEST = OutRequest("POST", "https://graph.facebook.com/v22.0/1/events?access_token=t", {}, b"data=%5B%5D")


def send(tmp_path: Path, handler: httpx.MockTransport, channel: str = "meta", n: int = 1) -> Outcome:
    settings = forwarding_settings(tmp_path, None)

    async def go() -> Outcome:
        sender = Sender(settings.forwarding, handler)
        try:
            return await sender.send(registry.load(channel), REQUEST, n)
        finally:
            await sender.aclose()

    return run_async(go())


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "ok"),
        (201, "ok"),
        (204, "ok"),
        (400, "final"),
        (401, "final"),
        (403, "final"),
        (404, "final"),
        (413, "final"),
        (422, "final"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (504, "retry"),
        (301, "final"),  # redirects are not followed: an endpoint that moved needs a human
    ],
)
def test_status_classification(tmp_path: Path, status: int, kind: str) -> None:
    body = b'{"error":{"message":"Invalid parameter","code":100}}'
    out = send(tmp_path, httpx.MockTransport(lambda r: httpx.Response(status, content=body)))
    assert (out.kind, out.status) == (kind, status)
    if kind == "final":
        assert "Invalid parameter" in out.message  # the channel's own words are kept


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectTimeout("slow"),
        httpx.RemoteProtocolError("eof"),
    ],
)
def test_transport_failures_are_retried(tmp_path: Path, error: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    out = send(tmp_path, httpx.MockTransport(handler))
    assert (out.kind, out.status) == ("retry", 0)


def test_retry_after_is_read(tmp_path: Path) -> None:
    out = send(tmp_path, httpx.MockTransport(lambda r: httpx.Response(429, headers={"Retry-After": "7"})))
    assert (out.kind, out.retry_after) == ("retry", 7.0)


@pytest.mark.parametrize(
    ("channel", "status", "body", "n", "expected"),
    [
        ("snapchat", 200, b'{"status":"VALID"}', 2, [None, None]),
        ("snapchat", 200, b'{"status":"INVALID","reason":"bad pixel"}', 1, ["bad pixel"]),
        (
            "linkedin",
            200,
            b'{"elements":[{"status":201},{"status":400,"message":"bad urn"}]}',
            2,
            [None, "bad urn"],
        ),
        ("ga4", 200, b"", 1, [None]),
        (
            "ga4",
            200,
            b'{"validationMessages":[{"description":"client_id missing"}]}',
            1,
            ["client_id missing"],
        ),
    ],
)
def test_a_2xx_can_still_refuse_events(
    tmp_path: Path, channel: str, status: int, body: bytes, n: int, expected: list[str | None]
) -> None:
    out = send(tmp_path, httpx.MockTransport(lambda r: httpx.Response(status, content=body)), channel, n)
    assert out.kind == "ok"
    got = list(out.per_event)
    assert [g is None for g in got] == [e is None for e in expected]
    for g, e in zip(got, expected, strict=True):
        if e is not None:
            assert g is not None and e in g


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for attempts in range(1, 12):
        full = min(60.0, 0.5 * 2 ** (attempts - 1))
        delays = [backoff(attempts, 0.5, 60.0, rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 4  # jittered, not one fixed value
