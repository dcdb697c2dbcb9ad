"""The loader: journal → ClickHouse (real chDB), chunks, dedup tokens, error classes, quarantine."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pixel_server.core.journal import Journal
from pixel_server.core.metrics import Metrics
from pixel_server.storage import RowsRefused, StoreError, StoreUnavailable, quarantine
from pixel_server.storage.base import insert_error
from pixel_server.storage.chdb_store import ChdbStore
from pixel_server.storage.loader import Loader, chunks
from tests.harness import run_async

# What ClickHouse says when it is up but will not take an insert, and when the rows are bad.
TOO_MANY_PARTS = (
    "Code: 252. DB::Exception: Too many parts (3001 with average size of 1.21 KiB) in table "
    "'jobpixel.events'. Merges are processing significantly slower than inserts. (TOO_MANY_PARTS)"
)
READONLY = "Code: 164. DB::Exception: jobpixel: Cannot execute query in readonly mode. (READONLY)"
DISK_FULL = "Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)"
PARSE_ERROR = (
    "Code: 27. DB::Exception: Cannot parse input: expected '\"' before: 'zz\"}': "
    "(at row 1): While executing JSONEachRowRowInputFormat. (CANNOT_PARSE_INPUT_ASSERTION_FAILED)"
)


class Recording(ChdbStore):
    """Real chDB underneath. ``refuse`` makes the raw driver call fail as a real ClickHouse would,
    so the backend's own classification turns it into an error class; ``inserts`` records calls."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.refuse: str | None = None
        self.inserts: list[tuple[str, int, str | None]] = []
        self.delay = 0.0

    def insert_jsonl(self, table: str, data: bytes, dedup_token: str | None = None) -> None:
        self.inserts.append((table, data.count(b"\n"), dedup_token))
        time.sleep(self.delay)
        super().insert_jsonl(table, data, dedup_token)

    def _send_insert(self, sql: str, data: bytes) -> None:
        if self.refuse is not None:
            raise RuntimeError(f"Streaming insert finish failed: {self.refuse} (version 26.9.2.1)")
        super()._send_insert(sql, data)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Recording]:
    st = Recording(tmp_path / "chdb")
    st.migrate()
    yield st
    st.close()


def event(i: int = 0, **over: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "site_id": "s",
        "ad_id": str(i),
        "ts": round(time.time(), 3),
        "visitor_id": "7f1c2b8e-1111-4a4a-9b9b-123456789abd",
        "retention_days": 30,
        **over,
    }


def raw_count(store: ChdbStore, table: str = "events") -> int:
    """Rows as inserted, without FINAL: what a materialized view would have seen."""
    n: int = store.query(f"SELECT count() AS n FROM ${{db}}.{table}")[0]["n"]
    return n


def make_loader(
    journal: Journal, store: ChdbStore, max_rows: int = 10**6, metrics: Metrics | None = None
) -> Loader:
    return Loader(journal, lambda: store, metrics or Metrics(), interval_s=60, max_rows=max_rows)


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        (TOO_MANY_PARTS, StoreUnavailable),
        (READONLY, StoreUnavailable),
        (DISK_FULL, StoreUnavailable),
        ("Code: 242. DB::Exception: Table is in readonly mode (TABLE_IS_READ_ONLY)", StoreUnavailable),
        ("Code: 241. DB::Exception: Memory limit (total) exceeded (MEMORY_LIMIT_EXCEEDED)", StoreUnavailable),
        ("HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded", StoreUnavailable),
        ("timed out", StoreUnavailable),
        ("Code: 99999. DB::Exception: something new", StoreUnavailable),  # unknown: keep the rows
        (PARSE_ERROR, RowsRefused),
        ("Code: 33. DB::Exception: Unexpected end of stream (CANNOT_READ_ALL_DATA)", RowsRefused),
        ("Code: 376. DB::Exception: Cannot parse uuid x (CANNOT_PARSE_UUID)", RowsRefused),
        ("Code: 53. DB::Exception: Type mismatch (TYPE_MISMATCH)", RowsRefused),
    ],
)
def test_insert_errors_are_classified_by_clickhouse_code(message: str, cls: type[StoreError]) -> None:
    err = insert_error("events", RuntimeError(message))
    assert type(err) is cls


def test_real_chdb_parse_error_is_a_row_error(store: Recording) -> None:
    with pytest.raises(RowsRefused):
        store.insert_jsonl("events", orjson.dumps(event(scroll_pct="not a number")) + b"\n")


def test_store_refusing_inserts_for_60_s_quarantines_nothing_and_loads_everything_after(
    tmp_path: Path, store: Recording
) -> None:
    """Main used to bisect such a segment and quarantine all of it after ~31 s (5 failures).
    TOO_MANY_PARTS / READONLY / disk full while ping answers is the store's state, not the rows'."""
    journal = Journal(tmp_path / "journal")
    metrics = Metrics()
    loader = Loader(journal, lambda: store, metrics, interval_s=0.2, max_rows=1000)
    sent: list[str] = []
    refusals = [TOO_MANY_PARTS, READONLY, DISK_FULL]

    async def main() -> None:
        await loader.start()
        store.refuse = refusals[0]
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 60:
            store.refuse = refusals[int(time.monotonic() - started) // 20]
            batch = [event(i + k) for k in range(5)]
            await journal.append("events", batch)
            sent.extend(e["event_id"] for e in batch)
            store.ping()  # the store answers all along
            i += 5
            await asyncio.sleep(0.5)
        assert raw_count(store) == 0 and loader.last_error
        assert len(journal.cursor("loader").pending()) >= 2  # several segments waited
        attempts = len(store.inserts)
        store.refuse = None
        await loader.next_flush(timeout=15)
        await loader.flush()
        assert attempts > 6  # it kept trying (main gave up after 5)
        stored = {r["event_id"] for r in store.query("SELECT event_id FROM ${db}.events")}
        assert stored == set(sent)
        assert raw_count(store) == len(sent)
        await loader.stop()

    run_async(main())
    quarantine_dir = tmp_path / "journal" / "quarantine"
    assert not quarantine_dir.exists() or not list(quarantine_dir.iterdir())
    assert "jobpixel_spool_quarantined_rows_total 0.0" in metrics.render().decode()
    assert journal.cursor("loader").pending() == [] and journal.bytes_on_disk == 0
    journal.close()


def test_loads_go_in_chunks_of_flush_max_rows(tmp_path: Path, store: Recording) -> None:
    journal = Journal(tmp_path / "journal")
    loader = make_loader(journal, store, max_rows=4)

    async def main() -> int:
        await journal.append("events", [event(i) for i in range(10)])
        return await loader.flush()

    assert run_async(main()) == 10
    assert [n for _, n, _ in store.inserts] == [4, 4, 2]
    tokens = [t for _, _, t in store.inserts]
    assert len(set(tokens)) == 3 and all(t and t.startswith(journal.node_id) for t in tokens)
    assert raw_count(store) == 10
    journal.close()


def test_chunks_split_on_line_ends() -> None:
    data = b"".join(b"%d\n" % i for i in range(7))
    parts = list(chunks(data, 3))
    assert [n for _, _, n in parts] == [3, 3, 1]
    assert b"".join(data[a:b] for a, b, _ in parts) == data
    assert list(chunks(b"", 3)) == []


def test_a_replayed_chunk_counts_once(tmp_path: Path, store: Recording) -> None:
    """A crash after the insert and before the cursor commit loads the segment again: ClickHouse
    itself drops the chunks by their token, so even raw counts (no FINAL) count each row once."""
    journal = Journal(tmp_path / "journal")
    rows = [event(i) for i in range(6)]

    async def first_life() -> None:
        await journal.append("events", rows)
        journal.rotate()

    run_async(first_life())
    [segment] = journal.cursor("loader").pending()
    crashing = make_loader(journal, store, max_rows=4)
    crashing.cursor.commit = lambda seg: (_ for _ in ()).throw(OSError("killed"))  # type: ignore[method-assign]
    with pytest.raises(OSError, match="killed"):
        run_async(crashing.flush())
    assert raw_count(store) == 6
    journal.close()

    again = Journal(tmp_path / "journal")  # the restart: the segment is still pending
    assert [s.seq for s in again.cursor("loader").pending()] == [segment.seq]
    assert run_async(make_loader(again, store, max_rows=4).flush()) == 6
    assert raw_count(store) == 6  # not 12
    stored_ts = {r["ts"] for r in store.query("SELECT toUnixTimestamp64Milli(ts) AS ts FROM ${db}.events")}
    assert stored_ts == {round(r["ts"] * 1000) for r in rows}  # the server time fixed when journaled
    assert again.cursor("loader").pending() == []
    again.close()


def test_the_same_rows_in_another_segment_are_not_dropped(tmp_path: Path, store: Recording) -> None:
    """The token names the chunk, not its bytes: identical content journaled twice loads twice."""
    journal = Journal(tmp_path / "journal")
    loader = make_loader(journal, store)
    row = event()

    async def main() -> None:
        await journal.append("events", [row])
        await loader.flush()
        await journal.append("events", [row])
        await loader.flush()

    run_async(main())
    assert raw_count(store) == 2
    assert store.query("SELECT count() AS n FROM ${db}.events FINAL")[0]["n"] == 1  # event_id: one row
    journal.close()


def test_one_refused_row_does_not_cost_the_others(tmp_path: Path, store: Recording) -> None:
    """A row ClickHouse refuses is found by halving and quarantined; every other row loads."""
    journal = Journal(tmp_path / "journal")
    metrics = Metrics()
    loader = make_loader(journal, store, metrics=metrics)
    good = [event(i) for i in range(9)]
    bad = event(99, scroll_pct="not a number")

    async def main() -> int:
        await journal.append("events", good[:5])
        await journal.append("events", [bad])
        await journal.append("events", good[5:])
        return await loader.flush()

    assert run_async(main()) == 10
    stored = {r["event_id"] for r in store.query("SELECT event_id FROM ${db}.events")}
    assert stored == {r["event_id"] for r in good}
    [qfile] = list((tmp_path / "journal" / "quarantine").glob("*.events.jsonl"))
    assert orjson.loads(qfile.read_bytes())["event_id"] == bad["event_id"]
    assert journal.cursor("loader").pending() == [] and journal.bytes_on_disk == 0
    assert "jobpixel_spool_quarantined_rows_total 1.0" in metrics.render().decode()
    journal.close()


def test_store_unavailable_during_bisection_keeps_the_segment(tmp_path: Path, store: Recording) -> None:
    """A row error, then the store goes away half-way through the halving: nothing is quarantined,
    the segment stays, and the next flush finishes the job without loading anything twice."""
    journal = Journal(tmp_path / "journal")
    loader = make_loader(journal, store)
    good = [event(i) for i in range(7)]
    bad = event(99, scroll_pct="x")
    real = store._send_insert
    calls = {"n": 0}

    def flaky(sql: str, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError(TOO_MANY_PARTS)
        real(sql, data)

    store._send_insert = flaky  # type: ignore[method-assign]

    async def main() -> None:
        await journal.append("events", [*good[:3], bad, *good[3:]])
        with pytest.raises(StoreUnavailable):
            await loader.flush()
        assert len(journal.cursor("loader").pending()) == 1
        assert not list((tmp_path / "journal").glob("quarantine/*"))
        await loader.flush()

    run_async(main())
    assert raw_count(store) == 7
    assert len(list((tmp_path / "journal" / "quarantine").glob("*.jsonl"))) == 1
    journal.close()


def test_quarantine_replay_loads_what_now_loads_and_keeps_the_rest(tmp_path: Path, store: Recording) -> None:
    qdir = tmp_path / "quarantine"
    qdir.mkdir()
    fixed, still_bad = event(1), event(2, scroll_pct="x")
    (qdir / "000000000007.events.jsonl").write_bytes(
        orjson.dumps(fixed) + b"\n" + orjson.dumps(still_bad) + b"\n"
    )
    assert [(e.table, e.rows) for e in quarantine.listing(qdir)] == [("events", 2)]
    result = quarantine.replay(qdir, store)
    assert (result.loaded, result.refused) == (1, 1)
    assert (
        orjson.loads((qdir / "000000000007.events.jsonl").read_bytes())["event_id"] == still_bad["event_id"]
    )
    # replaying again loads nothing twice
    (qdir / "000000000008.events.jsonl").write_bytes(orjson.dumps(fixed) + b"\n")
    assert quarantine.replay(qdir, store).loaded == 1
    assert raw_count(store) == 1
    assert [e.path.name for e in quarantine.listing(qdir)] == ["000000000007.events.jsonl"]


def test_concurrent_flushes_load_each_segment_once(tmp_path: Path, store: Recording) -> None:
    """Regression: stop() used to flush while a cancelled flush's thread still ran."""
    store.delay = 0.2
    journal = Journal(tmp_path / "journal")
    loader = make_loader(journal, store)

    async def main() -> list[int]:
        await journal.append("events", [event()])
        task = asyncio.create_task(loader.flush())
        await asyncio.sleep(0.05)
        task.cancel()  # what stop() does to the periodic flush
        results = await asyncio.gather(task, loader.flush(), return_exceptions=True)
        return [r for r in results if isinstance(r, int)]

    assert run_async(main()) == [0]
    assert raw_count(store) == 1
    assert journal.cursor("loader").pending() == [] and journal.rows_pending == 0
    journal.close()


def test_store_down_keeps_rows_journaled_until_it_answers(tmp_path: Path) -> None:
    """The loader exists without a store and connects when it can."""
    journal = Journal(tmp_path / "journal")
    up = threading.Event()
    opened: list[ChdbStore] = []

    def connect() -> ChdbStore:
        if not up.is_set():
            raise StoreUnavailable("connection refused")
        st = ChdbStore(tmp_path / "chdb")
        st.migrate()
        opened.append(st)
        return st

    connected: list[object] = []
    loader = Loader(journal, connect, Metrics(), interval_s=60, max_rows=10**6, on_connect=connected.append)

    async def main() -> None:
        await loader.start()  # no store: starts anyway
        await journal.append("events", [event()])
        with pytest.raises(StoreUnavailable, match="connection refused"):
            await loader.flush()
        assert journal.rows_pending == 1 and loader.last_error and loader.store is None
        up.set()
        assert await loader.flush() == 1
        assert loader.last_error is None
        assert raw_count(opened[0]) == 1
        await loader.stop()

    run_async(main())
    assert connected == [opened[0], None]  # state.store follows the loader's connection
    assert journal.rows_pending == 0
    journal.close()
