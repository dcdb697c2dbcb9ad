"""The durable spool and the writer that drains it, against real files and real chDB."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from pixel_server.core.journal import Journal, JournalError
from pixel_server.core.metrics import Metrics
from pixel_server.storage.chdb_store import ChdbStore
from pixel_server.storage.loader import Loader
from tests.harness import run_async


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"i": start + k} for k in range(n)]


def read_all(spool: Journal, table: str = "events") -> list[int]:
    out = []
    for seg in spool.sealed():
        tables, _ = seg.read()
        out += [orjson.loads(line)["i"] for line in tables.get(table, b"").splitlines()]
    return out


def test_group_commit_makes_many_requests_durable_with_few_fsyncs(tmp_path: Path) -> None:
    groups: list[int] = []
    spool = Journal(tmp_path, on_commit=lambda s, n: groups.append(n))

    async def main() -> None:
        await asyncio.gather(*(spool.append("events", rows(1, i)) for i in range(200)))

    run_async(main())
    assert sum(groups) == 200
    assert len(groups) < 200 / 4, groups  # concurrent requests share fsyncs
    spool.rotate()
    assert sorted(read_all(spool)) == list(range(200))
    assert spool.rows_pending == 200


def test_tables_go_to_their_own_files_in_one_commit(tmp_path: Path) -> None:
    spool = Journal(tmp_path)

    async def main() -> None:
        await asyncio.gather(spool.append("events", rows(2)), spool.append("consent_log", rows(1, 7)))

    run_async(main())
    spool.rotate()
    [seg] = spool.sealed()
    assert set(seg.files) == {"events", "consent_log"}
    assert read_all(spool) == [0, 1] and read_all(spool, "consent_log") == [7]


def test_leftover_segments_are_sealed_and_counted_on_start(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    run_async(first.append("events", rows(3)))
    # no rotate, no close: as after SIGKILL
    second = Journal(tmp_path)
    assert second.rows_pending == 3
    assert read_all(second) == [0, 1, 2]


def test_torn_last_line_is_skipped_and_the_rest_loads(tmp_path: Path) -> None:
    spool = Journal(tmp_path)
    run_async(spool.append("events", rows(2)))
    spool.rotate()
    [seg] = spool.sealed()
    with seg.files["events"].open("ab") as fh:
        fh.write(b'{"i":99')  # a crash in the middle of a write
    tables, torn = seg.read()
    assert tables["events"] == b'{"i":0}\n{"i":1}\n' and torn == 1
    assert Journal(tmp_path).rows_pending == 2


def test_failed_write_is_reported_and_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Journal(tmp_path)
    run_async(spool.append("events", rows(1)))
    real_write = os.write
    calls = {"n": 0}

    def half_then_fail(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))  # a partial write ...
        raise OSError(28, "No space left on device")  # ... then the disk is full

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(JournalError, match="No space left"):
        run_async(spool.append("events", rows(1, 1)))
    monkeypatch.setattr(os, "write", real_write)
    run_async(spool.append("events", rows(1, 2)))
    spool.rotate()
    assert read_all(spool) == [0, 2]  # the failed group left no torn line behind


class SlowStore(ChdbStore):
    def insert_jsonl(self, table: str, data: bytes) -> None:
        time.sleep(0.2)
        super().insert_jsonl(table, data)


def test_concurrent_flushes_load_each_segment_once(tmp_path: Path) -> None:
    """Regression: stop() used to flush while a cancelled flush's thread still ran."""
    store = SlowStore(tmp_path / "chdb")
    try:
        store.migrate()
        spool = Journal(tmp_path / "spool")
        writer = Loader(spool, store, Metrics(), interval_s=60, max_rows=10**6)
        row = {
            "choice_id": "7f1c2b8e-1111-4a4a-9b9b-123456789abc",
            "consent_id": "7f1c2b8e-1111-4a4a-9b9b-123456789abd",
            "site_id": "s",
            "ts": "2026-11-24 10:00:00.000",
            "action": "accept_all",
            "granted": ["necessary"],
            "denied": [],
            "revision": 1,
            "lang": "nb",
            "gpc": 0,
            "layer": 1,
            "ua_family": "Chrome",
            "retention_days": 30,
        }

        async def main() -> list[int]:
            await spool.append("consent_log", [row])
            task = asyncio.create_task(writer.flush())
            await asyncio.sleep(0.05)
            task.cancel()  # what stop() does to the periodic flush
            results = await asyncio.gather(task, writer.flush(), return_exceptions=True)
            return [r for r in results if isinstance(r, int)]

        loaded = run_async(main())
        # The cancelled flush's thread loads the segment and the second flush waits for it and finds
        # nothing; before the fix the second one loaded it again or failed on the vanished file.
        assert loaded == [0]
        assert store.query("SELECT count() AS n FROM ${db}.consent_log")[0]["n"] == 1
        assert spool.sealed() == [] and spool.rows_pending == 0
    finally:
        store.close()


def test_store_outage_keeps_rows_spooled_until_it_answers(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb")
    try:
        store.migrate()
        spool = Journal(tmp_path / "spool")
        writer = Loader(spool, store, Metrics(), interval_s=60, max_rows=10**6)
        down = threading.Event()
        down.set()
        real_insert = store.insert_jsonl

        def flaky(table: str, data: bytes) -> None:
            if down.is_set():
                from pixel_server.storage import StoreError

                raise StoreError("connection refused")
            real_insert(table, data)

        store.insert_jsonl = flaky  # type: ignore[method-assign]
        row = {
            "event_id": "7f1c2b8e-1111-4a4a-9b9b-123456789abc",
            "site_id": "s",
            "ts": "2026-11-24 10:00:00.000",
            "visitor_id": "7f1c2b8e-1111-4a4a-9b9b-123456789abd",
            "retention_days": 30,
        }

        async def main() -> None:
            await spool.append("events", [row])
            with pytest.raises(Exception, match="connection refused"):
                await writer.flush()
            assert spool.rows_pending == 1 and writer.last_error
            down.clear()
            assert await writer.flush() == 1

        run_async(main())
        assert store.query("SELECT count() AS n FROM ${db}.events")[0]["n"] == 1
        assert spool.rows_pending == 0 and writer.last_error is None
    finally:
        store.close()


def test_acknowledged_only_after_fdatasync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 204 promise itself: ``append`` returns only once fdatasync of its file returned."""
    real = os.fdatasync
    gate = threading.Event()
    synced: list[int] = []

    def slow_sync(fd: int) -> None:
        gate.wait(5)
        real(fd)
        synced.append(fd)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    spool = Journal(tmp_path)

    async def main() -> tuple[bool, bool]:
        task = asyncio.create_task(spool.append("events", rows(1)))
        await asyncio.sleep(0.3)
        before = task.done()
        gate.set()
        await asyncio.wait_for(task, 5)
        return before, task.done()

    before, after = run_async(main())
    assert (before, after) == (False, True)
    assert synced, "fdatasync was never called"
    spool.close()


def test_depth_counters_survive_a_load_before_the_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the loader removed a segment before its group's fdatasync returned, and the
    late acknowledgement added the rows back: /readyz showed a spool that was empty."""
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (time.sleep(0.1), real(fd))[1])
    spool = Journal(tmp_path)

    async def main() -> None:
        task = asyncio.create_task(spool.append("events", rows(3)))
        await asyncio.sleep(0.02)  # written, not yet synced
        spool.rotate()
        [seg] = spool.sealed()
        tables, _ = seg.read()
        spool.remove(seg, 3)  # what the writer does after a successful insert
        await task

    run_async(main())
    assert (spool.rows_pending, spool.bytes_pending) == (0, 0)
    spool.close()


def test_one_refused_row_does_not_cost_the_others(tmp_path: Path) -> None:
    """A row ClickHouse refuses is found by halving and quarantined; every other row loads."""
    store = ChdbStore(tmp_path / "chdb")
    try:
        store.migrate()
        spool = Journal(tmp_path / "spool")
        metrics = Metrics()
        writer = Loader(spool, store, metrics, interval_s=60, max_rows=10**6)
        good = [
            {
                "event_id": f"7f1c2b8e-1111-4a4a-9b9b-{i:012d}",
                "site_id": "s",
                "ts": time.time() + i,
                "visitor_id": "7f1c2b8e-1111-4a4a-9b9b-123456789abd",
                "retention_days": 30,
            }
            for i in range(9)
        ]
        bad = {**good[0], "event_id": "7f1c2b8e-1111-4a4a-9b9b-999999999999", "scroll_pct": "not a number"}

        async def main() -> int:
            await spool.append("events", good[:5])
            await spool.append("events", [bad])
            await spool.append("events", good[5:])
            return await writer.flush()

        assert run_async(main()) == 10
        stored = {r["event_id"] for r in store.query("SELECT event_id FROM ${db}.events")}
        assert stored == {r["event_id"] for r in good}
        quarantined = (tmp_path / "spool" / "quarantine").glob("*.events.jsonl")
        [qfile] = list(quarantined)
        assert orjson.loads(qfile.read_bytes())["event_id"] == bad["event_id"]
        assert spool.sealed() == [] and spool.rows_pending == 0
        assert "jobpixel_spool_quarantined_rows_total 1.0" in metrics.render().decode()
    finally:
        store.close()
