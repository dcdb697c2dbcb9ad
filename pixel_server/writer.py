"""The batch writer: spool segments → ClickHouse, every ``flush_interval`` or sooner when full.

A segment is deleted only after every table in it was inserted. When the store
is unreachable the spool simply grows and drains once it answers again
(``/readyz`` shows the depth). A segment the store keeps refusing while it
answers pings is moved to ``spool/quarantine/`` after a few tries, so one bad
batch cannot block the rest; that is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING

from pixel_server.spool import Segment, Spool, count_rows
from pixel_server.storage import Store, StoreError

if TYPE_CHECKING:
    from pixel_server.metrics import Metrics

log = logging.getLogger("jobpixel.writer")

QUARANTINE_AFTER = 5


class Writer:
    def __init__(
        self, spool: Spool, store: Store, metrics: Metrics, interval_s: float, max_rows: int
    ) -> None:
        self.spool = spool
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
        if self.spool.rows_pending >= self.max_rows:
            self._wake.set()

    async def flush(self) -> int:
        """Load everything spooled so far; return the rows loaded."""
        return await asyncio.to_thread(self._flush_sync)

    async def _run(self) -> None:
        delay = self.interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            try:
                await self.flush()
                delay = self.interval_s
            except StoreError:
                delay = min(max(delay * 2, self.interval_s), 30.0)  # back off while the store is away
            except Exception:  # never let the writer die
                log.exception("writer: unexpected error")
                delay = min(max(delay * 2, self.interval_s), 30.0)

    def _flush_sync(self) -> int:
        with self._lock:
            self.spool.rotate()
            loaded = 0
            for segment in self.spool.sealed():
                loaded += self._load(segment)
        self.metrics.spool_rows.set(self.spool.rows_pending)
        self.metrics.spool_bytes.set(self.spool.bytes_pending)
        return loaded

    def _load(self, segment: Segment) -> int:
        tables, bad = segment.read()
        rows = count_rows(tables)
        started = time.perf_counter()
        try:
            for table, data in tables.items():
                self.store.insert_jsonl(table, data)
        except StoreError as exc:
            self.last_error = str(exc)
            self.metrics.flush_failures.inc()
            self._maybe_quarantine(segment, exc)
            raise
        self.metrics.flush_seconds.observe(time.perf_counter() - started)
        self.metrics.flush_rows.observe(rows)
        if bad:
            self.metrics.spool_torn_lines.inc(bad)
        self.spool.remove(segment, rows)
        self._failures.pop(segment.seq, None)
        self.last_error = None
        self.last_success = time.time()
        return rows

    def _maybe_quarantine(self, segment: Segment, exc: StoreError) -> None:
        n = self._failures.get(segment.seq, 0) + 1
        self._failures[segment.seq] = n
        if n < QUARANTINE_AFTER:
            return
        try:
            self.store.ping()
        except StoreError:
            return  # the store is away: keep waiting, the data is fine
        target = self.spool.dir / "quarantine"
        target.mkdir(exist_ok=True)
        tables, _ = segment.read()
        size = segment.size
        for path in segment.files.values():
            path.rename(target / path.name)
        self.spool.account(-count_rows(tables), -size)
        self.metrics.spool_quarantined.inc()
        log.error("writer: segment %d refused %d times (%s); moved to %s", segment.seq, n, exc, target)
        self._failures.pop(segment.seq, None)
