"""The durable spool: a 2xx means the event is on disk.

Requests hand their rows to :meth:`Journal.append` and wait. One commit task
takes everything pending, writes it to the open segment with a single
``write`` + ``fdatasync``, and then wakes all of them: group commit, one fsync
for many requests (the PostgreSQL/InnoDB technique). While one commit runs,
the next group gathers in the sockets.

The commit runs on the event loop's own thread. In a worker thread the same
0.25 ms ``fdatasync`` took 14.6 ms on average under load: the thread had to
win the GIL back from a busy loop (5 ms switch interval) after each syscall,
which capped throughput near 2k requests/s at 64 connections. The syscalls
release the GIL, so the writer thread's ClickHouse inserts go on meanwhile.

A segment is numbered; it holds one file per table, ``NNNNNNNNNNNN.<table>.jsonl``,
of JSONEachRow lines, exactly the bytes ClickHouse is sent: the loader
(:mod:`pixel_server.storage.loader`) never parses a row in Python, which would hold the
GIL the requests need. It seals the open segment, inserts sealed ones and
deletes a segment only after every table's insert succeeded. On start every
segment left behind is sealed and loaded. A torn last line (a crash mid-write)
was never acknowledged and is cut off; a failed write is truncated away at once,
so no torn line can sit in the middle of a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

SEGMENT_SUFFIX = ".jsonl"
_NAME_RE = re.compile(r"^(\d{12})\.([a-z_]+)\.jsonl$")


class JournalError(OSError):
    """The spool could not make rows durable (disk full, I/O error)."""


@dataclass
class Segment:
    seq: int
    files: dict[str, Path]  # table -> file

    def read(self) -> tuple[dict[str, bytes], int]:
        """Complete JSONEachRow lines per table, and how many torn final lines were cut off."""
        out: dict[str, bytes] = {}
        torn = 0
        for table, path in self.files.items():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                torn += 1  # a crash in the middle of the last write: never acknowledged
            if end:
                out[table] = data[:end]
        return out, torn

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files.values() if p.exists())


def count_rows(tables: Mapping[str, bytes]) -> int:
    return sum(data.count(b"\n") for data in tables.values())


@dataclass
class _Pending:
    data: dict[str, list[bytes]] = field(default_factory=dict)
    futures: list[asyncio.Future[None]] = field(default_factory=list)
    rows: int = 0


@dataclass
class _Written:
    """A group written to the page cache, waiting for its fdatasync."""

    loop: asyncio.AbstractEventLoop
    fds: list[int]
    futures: list[asyncio.Future[None]]
    rows: int
    nbytes: int
    started: float


class Journal:
    def __init__(
        self,
        directory: Path,
        on_commit: Callable[[float, int], None] | None = None,
        fsync: bool = True,
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._on_commit = on_commit
        self._lock = threading.Lock()  # the open segment: writes (loop thread) against rotate (loader)
        existing = self._segments()
        self._seq = (max(existing) + 1) if existing else 1  # everything older is sealed
        self._fds: dict[str, tuple[int, int]] = {}  # table -> (fd, size) of the open segment
        self._pending = _Pending()
        self._commit_task: asyncio.Task[None] | None = None
        # The sync thread: groups written but not yet durable, and fds retired by rotate().
        self._cond = threading.Condition(threading.Lock())
        self._unsynced: list[_Written] = []
        self._retired: list[int] = []
        self._closing = False
        self._syncer: threading.Thread | None = None
        sealed = self.sealed()
        self._count_lock = threading.Lock()  # the loop thread adds, the writer thread subtracts
        self.rows_pending = sum(count_rows(seg.read()[0]) for seg in sealed)
        self.bytes_pending = sum(seg.size for seg in sealed)

    # -- request side -------------------------------------------------------

    async def append(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Return once ``rows`` are on disk; raise :class:`JournalError` if they cannot be."""
        if len(rows) == 1:  # most requests: one sendBeacon event
            lines = orjson.dumps(rows[0], option=orjson.OPT_APPEND_NEWLINE)
        else:
            lines = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.data.setdefault(table, []).append(lines)
        self._pending.futures.append(fut)
        self._pending.rows += len(rows)
        if self._commit_task is None or self._commit_task.done():
            self._commit_task = asyncio.create_task(self._commit())
        await fut

    async def _commit(self) -> None:
        """Write what is pending to the page cache and hand it to the sync thread.

        The write is a memory copy and runs here, on the loop thread; the
        fdatasync (~0.25 ms idle, ~1 ms under load) runs on the sync thread so
        the loop keeps serving while the disk flushes. Inline, the fsync blocked
        the loop for 29 % of the time at 6k requests/s (py-spy, bench/README.md).
        """
        await asyncio.sleep(0)  # let this loop iteration's other requests join the group
        group, self._pending = self._pending, _Pending()
        if not group.futures:
            return
        data = {table: b"".join(chunks) for table, chunks in group.data.items()}
        written = _Written(
            asyncio.get_running_loop(),
            [],
            group.futures,
            group.rows,
            sum(map(len, data.values())),
            time.perf_counter(),
        )
        try:
            with self._lock:
                written.fds = self._write(data)
                # Counted when written, not when synced: the loader may load and remove a
                # sealed segment before its last group's fdatasync returns.
                self.account(written.rows, written.nbytes)
                if not self._fsync:
                    self._done(written, None)
                    return
                with self._cond:  # enqueue under the spool lock: rotate() cannot retire these fds first
                    self._unsynced.append(written)
                    self._cond.notify()
        except OSError as exc:
            self._done(written, JournalError(f"spool write failed: {exc}"))
            return
        self._ensure_syncer()

    def _write(self, data: Mapping[str, bytes]) -> list[int]:
        """Write every table's lines (caller holds the lock); on failure leave no partial line."""
        written: list[tuple[str, int, int]] = []
        try:
            for table, chunk in data.items():
                fd, size = self._open(table)
                written.append((table, fd, size))
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
        except OSError:
            for table, fd, size in written:
                os.ftruncate(fd, size)  # cut the group off: the next one starts on a clean line
                self._fds[table] = (fd, size)
            raise
        for table, fd, size in written:
            self._fds[table] = (fd, size + len(data[table]))
        return [fd for _, fd, _ in written]

    def _open(self, table: str) -> tuple[int, int]:
        if table not in self._fds:
            fd = os.open(self._path(self._seq, table), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            self._fds[table] = (fd, os.fstat(fd).st_size)
            _fsync_dir(self.dir)  # the new file's name must survive a crash too
        return self._fds[table]

    def _ensure_syncer(self) -> None:
        if self._syncer is None or not self._syncer.is_alive():
            self._syncer = threading.Thread(target=self._sync_loop, name="jobpixel-spool-sync", daemon=True)
            self._syncer.start()

    def _sync_loop(self) -> None:
        while True:
            with self._cond:
                while not self._unsynced and not self._retired and not self._closing:
                    self._cond.wait()
                if self._closing and not self._unsynced and not self._retired:
                    return
                batch, self._unsynced = self._unsynced, []
                retired, self._retired = self._retired, []
            error: BaseException | None = None
            try:
                for fd in {fd for w in batch for fd in w.fds} | set(retired):
                    try:
                        os.fdatasync(fd)
                    except OSError as exc:
                        error = exc
                for fd in retired:  # every group that wrote to it was in this batch or an earlier one
                    with contextlib.suppress(OSError):
                        os.close(fd)
            except BaseException as exc:  # whatever happens, nobody may wait forever
                error = exc
            finally:
                for w in batch:
                    err = JournalError(f"spool fsync failed: {error}") if error else None
                    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                        w.loop.call_soon_threadsafe(self._done, w, err)

    def _done(self, written: _Written, error: JournalError | None) -> None:
        if error is None and self._on_commit is not None:
            self._on_commit(time.perf_counter() - written.started, len(written.futures))
        for fut in written.futures:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

    # -- loader side --------------------------------------------------------

    def rotate(self) -> None:
        """Seal the open segment (if it holds anything) so the loader may take it.

        Its fds go to the sync thread, which syncs and closes them after every
        group written to them. The loader may read a sealed file before that
        sync: what it loads was written; only the acknowledgement waits.
        """
        with self._lock:
            if self._fds:
                fds = [fd for fd, _ in self._fds.values()]
                self._fds = {}
                self._seq += 1
                if self._fsync:
                    with self._cond:
                        self._retired.extend(fds)
                        self._cond.notify()
                    self._ensure_syncer()
                else:
                    for fd in fds:
                        os.close(fd)

    def sealed(self) -> list[Segment]:
        with self._lock:
            current = self._seq
        return [Segment(seq, files) for seq, files in sorted(self._segments().items()) if seq < current]

    def remove(self, segment: Segment, rows: int) -> None:
        size = segment.size
        for path in segment.files.values():
            path.unlink(missing_ok=True)
        _fsync_dir(self.dir)
        self.account(-rows, -size)

    def account(self, rows: int, nbytes: int) -> None:
        """Adjust the depth counters (from either thread)."""
        with self._count_lock:
            self.rows_pending = max(0, self.rows_pending + rows)
            self.bytes_pending = max(0, self.bytes_pending + nbytes)

    def close(self) -> None:
        """Sync and close everything; groups still waiting are made durable first."""
        with self._lock:
            fds = [fd for fd, _ in self._fds.values()]
            self._fds = {}
        with self._cond:
            self._retired.extend(fds)
            self._closing = True
            self._cond.notify()
        if self._syncer is not None and self._syncer.is_alive():
            self._syncer.join()
        else:  # no sync thread ever ran (fsync off, or nothing written)
            with self._cond:
                leftover, self._retired = self._retired, []
            for fd in leftover:
                os.close(fd)
        with self._cond:
            self._closing = False

    def _path(self, seq: int, table: str) -> Path:
        return self.dir / f"{seq:012d}.{table}{SEGMENT_SUFFIX}"

    def _segments(self) -> dict[int, dict[str, Path]]:
        out: dict[int, dict[str, Path]] = {}
        for p in self.dir.iterdir():
            m = _NAME_RE.match(p.name)
            if m:
                out.setdefault(int(m.group(1)), {})[m.group(2)] = p
        return out


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
