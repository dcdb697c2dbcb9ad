"""The loader: the journal consumer that puts rows into ClickHouse.

It exists from start-up, connected or not, and owns the connection: it opens
(and migrates) the store, and reopens it after a failure, on its own
single-thread executor, so a slow insert never takes a thread the requests'
reads need, and two loads never overlap.

Every ``flush_interval`` (sooner when ``flush_max_rows`` rows wait) it seals the
open segment and loads each pending segment, table by table, in chunks of at
most ``flush_max_rows`` lines. Each chunk carries an ``insert_deduplication_token``
made of (node, segment, table, byte range), so a chunk loaded again after a crash
between insert and cursor commit is dropped by ClickHouse itself. Only when every
chunk of a segment is in does the cursor move past it.

Failures are classified by the store (:mod:`pixel_server.core.store`):

- "store unavailable" (unreachable, timeout, read-only, TOO_MANY_PARTS, disk full,
  anything unknown): the segment stays, the loader backs off (up to
  ``MAX_BACKOFF_S``) and tries again, however long it takes.
- "rows refused" (a ClickHouse parse/type error): the chunk is halved until the
  refused lines are found; they go to ``journal/quarantine/<segment>.<table>.jsonl``
  and every other line loads. ``jobpixel quarantine replay`` loads them later.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pixel_server.core.journal import Cursor, Journal, Segment
from pixel_server.core.store import RowsRefused, Store, StoreError, StoreLockedError

if TYPE_CHECKING:
    from pixel_server.core.metrics import Metrics

log = logging.getLogger("jobpixel.loader")

_T = TypeVar("_T")

CONSUMER = "loader"
MAX_BACKOFF_S = 10.0


class Loader:
    def __init__(
        self,
        journal: Journal,
        connect: Callable[[], Store],
        metrics: Metrics,
        interval_s: float,
        max_rows: int,
        on_connect: Callable[[Store | None], None] | None = None,
    ) -> None:
        self.journal = journal
        self.cursor: Cursor = journal.cursor(CONSUMER)
        self.connect = connect
        self.store: Store | None = None
        self.metrics = metrics
        self.interval_s = interval_s
        self.max_rows = max_rows
        self.on_connect = on_connect
        self.last_error: str | None = None
        self.last_success: float | None = None
        self.quarantine_dir = journal.dir / "quarantine"
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jobpixel-loader")
        # The executor already runs one load at a time; the lock also covers stop()'s last drain.
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushing = False
        self._flushed = asyncio.Event()  # set (and replaced) after each periodic flush

    async def start(self) -> None:
        """Try the store once (a second process on a chDB path fails here), then run."""
        try:
            await self._in_executor(self._ensure_store)
        except StoreLockedError:
            raise
        except StoreError as exc:
            log.warning("store unavailable at start (%s); events are journaled until it answers", exc)
        self._task = asyncio.create_task(self._run(), name="jobpixel-loader")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            if self.store is not None:
                await self.flush()  # last drain; what fails stays journaled for the next start
        finally:
            await self._in_executor(self._close_store)
            self._executor.shutdown(wait=True)

    def nudge(self) -> None:
        """Called after appends: flush early when enough rows are waiting."""
        if self.journal.open_rows >= self.max_rows:
            self._wake.set()

    async def flush(self) -> int:
        """Seal the open segment and load everything journaled so far; return the rows loaded.
        Raises :class:`StoreError` when the store cannot take them (they stay journaled)."""
        return await self._in_executor(self._flush_sync)

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

    async def exclusive(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the loader's thread, between loads (rights: a subject's rows are blanked in
        the journal and deleted in ClickHouse while no load can read a segment half-way)."""
        return await self._in_executor(fn)

    async def _in_executor(self, fn: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

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
            except StoreError:  # already logged and counted; the rows stay journaled
                delay = min(max(delay * 2, self.interval_s), MAX_BACKOFF_S)
            except Exception:  # never let the loader die
                log.exception("loader: unexpected error")
                delay = min(max(delay * 2, self.interval_s), MAX_BACKOFF_S)
            finally:
                self._flushing = False
                done, self._flushed = self._flushed, asyncio.Event()
                done.set()

    # -- on the loader thread -------------------------------------------------

    def _ensure_store(self) -> Store:
        if self.store is None:
            try:
                self.store = self.connect()
            except StoreError as exc:
                self.last_error = str(exc)
                raise
            log.info("store connected; loading the journal")
            if self.on_connect is not None:
                self.on_connect(self.store)
        return self.store

    def _close_store(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            if self.on_connect is not None:
                self.on_connect(None)
            with contextlib.suppress(Exception):
                store.close()

    def _flush_sync(self) -> int:
        with self._lock:
            self.journal.rotate()
            loaded = 0
            try:
                store = self._ensure_store()
                for segment in self.cursor.pending():
                    loaded += self._load(store, segment)
                self.last_error = None
            except StoreError as exc:
                self.last_error = str(exc)
                self.metrics.flush_failures.inc()
                log.warning("loader: store unavailable, the journal keeps the rows: %s", exc)
                raise
            finally:
                rows, nbytes = self.cursor.lag()
                self.metrics.spool_rows.set(rows)
                self.metrics.spool_bytes.set(nbytes)
        return loaded

    def _load(self, store: Store, segment: Segment) -> int:
        tables, torn = segment.read()
        started = time.perf_counter()
        rows = 0
        for table, data in tables.items():
            refused: list[bytes] = []
            for start, end, n in chunks(data, self.max_rows):
                rows += n
                try:
                    store.insert_jsonl(table, data[start:end], self._token(segment.seq, table)(start, end))
                except RowsRefused as exc:
                    self.metrics.flush_failures.inc()
                    log.warning("loader: ClickHouse refused rows of segment %d: %s", segment.seq, exc)
                    refused += insert_bisecting(
                        store, table, data, start, end, self._token(segment.seq, table)
                    )
                self.metrics.flush_rows.observe(n)
            if refused:
                self._quarantine(segment.seq, table, refused)
        self.metrics.flush_seconds.observe(time.perf_counter() - started)
        if torn:
            self.metrics.spool_torn_lines.inc(torn)
        self.cursor.commit(segment)
        self.last_error = None
        self.last_success = time.time()
        return rows

    def _token(self, seq: int, table: str) -> Callable[[int, int], str]:
        """A chunk's name for ClickHouse deduplication: (node, segment, table, byte range)."""
        prefix = f"{self.journal.node_id}:{seq}:{table}"
        return lambda start, end: f"{prefix}:{start}-{end}"

    def _quarantine(self, seq: int, table: str, lines: list[bytes]) -> None:
        """Write (not append) the refused lines: a segment loaded twice quarantines them once."""
        self.quarantine_dir.mkdir(exist_ok=True)
        path = self.quarantine_dir / f"{seq:012d}.{table}.jsonl"
        write_durably(path, b"".join(lines))
        self.metrics.spool_quarantined.inc(len(lines))
        log.error(
            "loader: ClickHouse refused %d %s row(s) of segment %d; kept in %s (jobpixel quarantine replay)",
            len(lines),
            table,
            seq,
            path,
        )


def insert_bisecting(
    store: Store, table: str, data: bytes, start: int, end: int, token: Callable[[int, int], str]
) -> list[bytes]:
    """Load every line of ``data[start:end]`` ClickHouse takes; return the lines it refuses.

    One bad row must never cost the other visitors' events: halving finds it in
    ~2·log2(n) inserts. Each piece has its own token, so a piece loaded before a
    crash is dropped by ClickHouse when it is loaded again. :class:`StoreUnavailable`
    on the way propagates: the rows stay where they are.
    """
    try:
        store.insert_jsonl(table, data[start:end], token(start, end))
        return []
    except RowsRefused:
        mid = data.find(b"\n", start + (end - start) // 2, end - 1) + 1
        if mid == 0:  # no line ends past the middle: split before the last line
            mid = data.rfind(b"\n", start, end - 1) + 1
        if mid <= start:  # one line
            return [data[start:end]]
        return insert_bisecting(store, table, data, start, mid, token) + insert_bisecting(
            store, table, data, mid, end, token
        )


def chunks(data: bytes, max_rows: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, lines) of consecutive runs of at most ``max_rows`` whole lines."""
    total = data.count(b"\n")
    if total <= max_rows:  # the common case: no walk through the lines
        if total:
            yield 0, len(data), total
        return
    start = 0
    while start < len(data):
        end = start
        n = 0
        while n < max_rows and end < len(data):
            end = data.index(b"\n", end) + 1
            n += 1
        yield start, end, n
        start = end


def write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def quarantine_stats(directory: Path) -> tuple[int, int]:
    """(files, bytes) waiting in the quarantine."""
    files = nbytes = 0
    with contextlib.suppress(FileNotFoundError):
        for p in directory.glob("*.jsonl"):
            files += 1
            nbytes += p.stat().st_size
    return files, nbytes
