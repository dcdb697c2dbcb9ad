"""Nothing a client sends may cause a 5xx: hypothesis throws JSON-shaped junk at the real server."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import DESKTOP_UA, LiveServer, make_grant

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "site",
    "ad",
    "name",
    "url",
    "referrer",
    "event_id",
    "pageview_id",
    "engaged_ms",
    "scroll",
    "activity",
    "client_ts",
    "token",
    "marketing",
    "props",
]


TOKEN = make_grant(
    categories={"statistics", "marketing"}
).token  # valid: the fuzz reaches every pipeline step


def good_event() -> dict[str, Any]:
    return {
        "site": "test",
        "name": "pageview",
        "url": "http://127.0.0.1/jobb/1",
        "event_id": str(uuid.uuid4()),
        "token": TOKEN,
    }


events = st.builds(
    lambda base, over: {**base, **over},
    st.builds(good_event),
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=5),
)
bodies = events | st.lists(events, max_size=3) | values


def test_collect_never_5xx(pixel_server: LiveServer) -> None:
    client = httpx.Client(
        base_url=pixel_server.url,
        headers={
            "User-Agent": DESKTOP_UA,
            "Content-Type": "text/plain",
            "Origin": pixel_server.partner.origin,
        },
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies)
    def check(body: Any) -> None:
        r = client.post("/collect", content=json.dumps(body))
        assert r.status_code < 500, (r.status_code, r.text, body)
        if r.status_code >= 400:
            assert r.json()["error"] and "field" in r.json()

    check()

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        body=st.dictionaries(
            st.sampled_from(
                [
                    "site",
                    "consent_id",
                    "choice_id",
                    "action",
                    "granted",
                    "denied",
                    "revision",
                    "lang",
                    "gpc",
                    "layer",
                    "token",
                ]
            ),
            values,
        )
        | values
    )
    def check_consent(body: Any) -> None:
        r = client.post("/consent", content=json.dumps(body))
        assert r.status_code < 500, (r.status_code, r.text, body)

    check_consent()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(raw=st.binary(max_size=300))
    def check_bytes(raw: bytes) -> None:
        assert client.post("/collect", content=raw).status_code < 500

    check_bytes()
    client.close()
    # Whatever was accepted must also load: no refused rows, no writer errors.
    pixel_server.flush()
    writer = pixel_server.state.loader
    assert writer is not None and writer.last_error is None
    assert not (pixel_server.data_dir / "journal" / "quarantine").exists()
    stored = pixel_server.query("SELECT count() AS n FROM ${db}.events")[0]["n"]
    assert stored > 0  # the fuzz got past validation into enrichment and storage
