"""The batch writer: spool segments → ClickHouse, every ``flush_interval`` or sooner when full.

A segment is deleted only after every table in it was inserted. When the store
is unreachable the spool simply grows and drains once it answers again
(``/readyz`` shows the depth). Rows the store refuses while it answers
pings are found by halving the batch and moved to ``spool/quarantine/``; every
other row of the segment is loaded, so one bad row cannot cost other events or
block the spool. That is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from pixel_server.core.journal import Journal, Segment, count_rows
from pixel_server.core.store import Store, StoreError

if TYPE_CHECKING:
    from pixel_server.core.metrics import Metrics

log = logging.getLogger("jobpixel.writer")

QUARANTINE_AFTER = 5


class Loader:
    def __init__(
        self, journal: Journal, store: Store, metrics: Metrics, interval_s: float, max_rows: int
    ) -> None:
        self.journal = journal
        self.store = store
        self.metrics = metrics
        self.interval_s = interval_s
        self.max_rows = max_rows
        self.last_error: str | None = None
        self.last_success: float | None = None
        self._failures: dict[int, int] = {}
        # A threading lock, not an asyncio one: cancelling a task that awaits
        # asyncio.to_thread() does not stop the thread, so an asyncio lock would be
        # released while its flush still runs and the next flush would race it.
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushing = False
        self._flushed = asyncio.Event()  # set (and replaced) after each periodic flush

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="jobpixel-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()  # last drain; what fails stays spooled for the next start

    def nudge(self) -> None:
        """Called after appends: flush early when enough rows are waiting."""
        if self.journal.rows_pending >= self.max_rows:
            self._wake.set()

    async def flush(self) -> int:
        """Load everything spooled so far; return the rows loaded."""
        return await asyncio.to_thread(self._flush_sync)

    async def next_flush(self, timeout: float = 2.0) -> None:
        """Wait for a flush that starts after this call (readers that must see what was just
        acknowledged). Callers share flushes, so a flood of readers cannot multiply inserts."""
        if self._task is None:
            await self.flush()
            return
        for _ in range(2 if self._flushing else 1):  # one in progress may have rotated too early
            done = self._flushed
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done.wait()), timeout)

    async def _run(self) -> None:
        delay = self.interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            self._flushing = True
            try:
                await self.flush()
                delay = self.interval_s
            except StoreError:
                delay = min(max(delay * 2, self.interval_s), 30.0)  # back off while the store is away
            except Exception:  # never let the writer die
                log.exception("writer: unexpected error")
                delay = min(max(delay * 2, self.interval_s), 30.0)
            finally:
                self._flushing = False
                done, self._flushed = self._flushed, asyncio.Event()
                done.set()

    def _flush_sync(self) -> int:
        with self._lock:
            self.journal.rotate()
            loaded = 0
            for segment in self.journal.sealed():
                loaded += self._load(segment)
        self.metrics.spool_rows.set(self.journal.rows_pending)
        self.metrics.spool_bytes.set(self.journal.bytes_pending)
        return loaded

    def _load(self, segment: Segment) -> int:
        tables, torn = segment.read()
        rows = count_rows(tables)
        started = time.perf_counter()
        refused: dict[str, list[bytes]] = {}
        for table, data in tables.items():
            try:
                self.store.insert_jsonl(table, data)
            except StoreError as exc:
                self.last_error = str(exc)
                self.metrics.flush_failures.inc()
                bad = self._insert_what_loads(segment.seq, table, data, exc)
                if bad:
                    refused[table] = bad
        if refused:
            self._quarantine(segment.seq, refused)
        self.metrics.flush_seconds.observe(time.perf_counter() - started)
        self.metrics.flush_rows.observe(rows)
        if torn:
            self.metrics.spool_torn_lines.inc(torn)
        self.journal.remove(segment, rows)
        self._failures.pop(segment.seq, None)
        self.last_error = None
        self.last_success = time.time()
        return rows

    def _insert_what_loads(self, seq: int, table: str, data: bytes, exc: StoreError) -> list[bytes]:
        """After a refused insert: load every line ClickHouse takes; return the lines it refuses.

        One bad row must never cost the other visitors' events in the same
        segment: halving finds it in ~2·log2(n) inserts. It raises, and the
        segment stays spooled, when the store is away, or when no line at all
        loads (that looks like a passing fault, not bad rows) until the segment
        has failed that way QUARANTINE_AFTER times. A row loaded twice by a
        retry collapses on event_id / choice_id.
        """
        self.store.ping()  # StoreError: the store is away; keep everything
        loaded, bad = self._bisect(table, data.splitlines(keepends=True))
        if loaded == 0:
            n = self._failures.get(seq, 0) + 1
            self._failures[seq] = n
            if n < QUARANTINE_AFTER:
                raise exc
        return bad

    def _bisect(self, table: str, lines: list[bytes]) -> tuple[int, list[bytes]]:
        try:
            self.store.insert_jsonl(table, b"".join(lines))
            return len(lines), []
        except StoreError:
            if len(lines) == 1:
                return 0, lines
            mid = len(lines) // 2
            a_ok, a_bad = self._bisect(table, lines[:mid])
            b_ok, b_bad = self._bisect(table, lines[mid:])
            return a_ok + b_ok, a_bad + b_bad

    def _quarantine(self, seq: int, refused: dict[str, list[bytes]]) -> None:
        target = self.journal.dir / "quarantine"
        target.mkdir(exist_ok=True)
        for table, lines in refused.items():
            with (target / f"{seq:012d}.{table}.jsonl").open("ab") as fh:
                fh.write(b"".join(lines))
                fh.flush()
                os.fsync(fh.fileno())
            self.metrics.spool_quarantined.inc(len(lines))
            log.error(
                "writer: ClickHouse refused %d %s row(s) of segment %d; kept in %s for inspection",
                len(lines),
                table,
                seq,
                target,
            )
