"""``/readyz`` and ``/metrics``: the journal's depth and limits, and a ping that is cached."""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from pixel_server.web.app import PING_CACHE_S
from tests.harness import OPS, LiveServer


def test_readyz_pings_the_store_at_most_once_per_cache_period(pixel_server: LiveServer) -> None:
    store = pixel_server.state.store
    assert store is not None
    calls: list[float] = []
    real = store.ping

    def counting() -> None:
        calls.append(time.monotonic())
        real()

    store.ping = counting  # type: ignore[method-assign]
    time.sleep(1.6)  # past the start-up probe's cache
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: httpx.get(pixel_server.url + "/readyz").status_code, range(40)))
    assert statuses == [200] * 40
    # a flood of probes costs one ping per cache period (however slow a loaded machine serves them)
    assert 1 <= len(calls) < 10
    assert all(later - earlier >= PING_CACHE_S for earlier, later in zip(calls, calls[1:], strict=False))
    before = len(calls)
    time.sleep(PING_CACHE_S + 0.1)
    assert httpx.get(pixel_server.url + "/readyz").status_code == 200
    assert len(calls) == before + 1  # and the cache expires


def test_readyz_and_metrics_show_the_journal(pixel_server: LiveServer) -> None:
    body = httpx.get(pixel_server.url + "/readyz", headers=OPS).json()
    assert body["journal_full"] is None and body["journal_max_bytes"] == 4 * 1024**3
    assert body["quarantine_files"] == 0 and body["spool_rows"] == 0
    metrics = httpx.get(pixel_server.url + "/metrics", headers=OPS).text
    for line in (
        "jobpixel_journal_full 0.0",
        'jobpixel_journal_consumer_lag_bytes{consumer="loader"} 0.0',
        "jobpixel_quarantine_files 0.0",
        "jobpixel_quarantine_bytes 0.0",
    ):
        assert line in metrics
