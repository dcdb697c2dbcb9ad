"""The journal: one durable log of accepted rows, read by named consumers.

Requests hand their rows to :meth:`Journal.append` and wait. One commit task
takes everything pending, writes it to the open segment with a single
``write`` + ``fdatasync``, and then wakes all of them: group commit, one fsync
for many requests (the PostgreSQL/InnoDB technique). While one commit runs,
the next group gathers in the sockets.

The write runs on the event loop's own thread and the ``fdatasync`` on a sync
thread. In a worker thread the whole commit took 14.6 ms on average under load
(the thread had to win the GIL back from a busy loop after each syscall);
inline, the fsync blocked the loop for 29 % of the time (bench/README.md).

A segment is numbered; it holds one file per table, ``NNNNNNNNNNNN.<table>.jsonl``,
of JSONEachRow lines, exactly the bytes ClickHouse is sent: no consumer needs to
parse a row in Python, which would hold the GIL the requests need. The open
segment is sealed by size (``segment_bytes``), by age (``segment_seconds``) or
when a consumer asks (:meth:`Journal.rotate`).

Consumers are named at construction (``("loader",)``; the outbox is the next).
Each has a durable cursor, ``cursors/<name>``: the last segment it committed.
A segment is deleted once every consumer is past it; a consumer new to this
journal starts at the oldest segment still there. Segment numbers never go back
(a fresh start continues after every cursor), so ``(node, segment, table, bytes)``
names a chunk for good: the loader's ClickHouse deduplication token.

Start-up lists and stats the files and reads no row. A torn last line (a crash
mid-write) was never acknowledged and is cut off when read; a failed write is
truncated away at once, so no torn line can sit in the middle of a file.

Above ``max_bytes`` on disk, or with less than ``reserve_bytes`` free on its
file system, :meth:`Journal.append` raises :class:`JournalFull` before writing
anything (the route answers 503 with ``Retry-After``); what was acknowledged
stays. A lock on the directory keeps a second process out.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

SEGMENT_SUFFIX = ".jsonl"
_NAME_RE = re.compile(r"^(\d{12})\.([a-z_]+)\.jsonl$")
_CONSUMER_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
DEFAULT_SEGMENT_SECONDS = 5.0
DEFAULT_MAX_BYTES = 4 * 1024**3
DEFAULT_RESERVE_BYTES = 256 * 1024**2
RECHECK_FULL_S = 1.0  # while full, how often an append looks again (disk freed by hand, say)
STATVFS_EVERY_S = 0.1  # free disk is looked at after a commit at most this often
RETRY_AFTER_S = 30


class JournalError(OSError):
    """The journal could not make rows durable (disk full, I/O error)."""


class JournalFull(JournalError):
    """Over ``journal.max_bytes`` or under the free-disk reserve: nothing was written."""

    retry_after = RETRY_AFTER_S


class JournalLocked(JournalError):
    """Another process holds this journal."""


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
class _Sealed:
    files: dict[str, Path]
    nbytes: int
    rows: int  # 0 for a segment left by an earlier process: start-up reads no data


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
    new_file: bool = False  # it opened a segment file: the directory is synced before its fdatasync


class Cursor:
    """One consumer's durable place in the journal."""

    def __init__(self, journal: Journal, name: str) -> None:
        self._journal = journal
        self.name = name

    @property
    def position(self) -> int:
        """The last segment this consumer committed."""
        return self._journal._positions[self.name]

    def pending(self) -> list[Segment]:
        """Sealed segments this consumer has not committed, oldest first."""
        return self._journal._sealed_after(self.position)

    def commit(self, segment: Segment) -> None:
        """Durably move past ``segment``; segments every consumer is past are deleted."""
        self._journal._commit(self.name, segment.seq)

    def lag(self) -> tuple[int, int]:
        """(rows, bytes) written and not yet committed by this consumer, the open segment included.

        Rows of segments an earlier process left are not counted (start-up reads no data);
        bytes are exact."""
        return self._journal._lag(self.position)


class Journal:
    def __init__(
        self,
        directory: Path,
        consumers: Sequence[str] = ("loader",),
        *,
        on_commit: Callable[[float, int], None] | None = None,
        fsync: bool = True,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> None:
        if not consumers or len(set(consumers)) != len(consumers):
            raise ValueError(f"journal consumers must be distinct and at least one: {consumers!r}")
        for name in consumers:
            if not _CONSUMER_RE.match(name):
                raise ValueError(f"journal consumer name {name!r}: lowercase letters, digits, '_'")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "cursors").mkdir(exist_ok=True)
        self._lock_fd = _lock(self.dir)
        self.consumers = tuple(consumers)
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self._fsync = fsync
        self._on_commit = on_commit
        self.node_id = _node_id(self.dir)
        self._lock = threading.Lock()  # open segment, sealed map, positions: loop thread vs consumers
        sealed = {seq: _Sealed(files, _size(files), 0) for seq, files in sorted(_scan(self.dir).items())}
        stored = _read_cursors(self.dir / "cursors")
        # Numbers never go back: a chunk's (node, segment) must never name other rows.
        self._seq = max([*sealed, *stored.values(), 0]) + 1
        self._sealed = sealed
        self._sealed_bytes = sum(seg.nbytes for seg in sealed.values())
        self._positions: dict[str, int] = {}
        for name in self.consumers:
            if name in stored:
                self._positions[name] = stored[name]
            else:  # a new consumer starts at the oldest segment still here
                self._positions[name] = (min(sealed) if sealed else self._seq) - 1
                self._write_cursor(name, self._positions[name])
        self._fds: dict[str, tuple[int, int]] = {}  # table -> (fd, size) of the open segment
        self._new_file = False  # a segment file was created since the last group went to the sync thread
        self._open_rows = 0
        self._open_bytes = 0
        self._pending = _Pending()
        self._commit_task: asyncio.Task[None] | None = None
        # The sync thread: groups written but not yet durable, and fds retired by rotate().
        self._cond = threading.Condition(threading.Lock())
        self._unsynced: list[_Written] = []
        self._retired: list[int] = []
        self._closing = False
        self._syncer: threading.Thread | None = None
        self._full: str | None = None
        self._full_checked = 0.0
        self._drop_consumed()  # segments every consumer is past (a crash between commit and delete)
        self._check_room()

    def cursor(self, consumer: str) -> Cursor:
        if consumer not in self._positions:
            raise KeyError(f"{consumer!r} is not a consumer of this journal ({', '.join(self.consumers)})")
        return Cursor(self, consumer)

    # -- depth ---------------------------------------------------------------

    @property
    def bytes_on_disk(self) -> int:
        """Every segment kept (sealed and open): what ``max_bytes`` limits."""
        return self._sealed_bytes + self._open_bytes  # two ints, each updated under the lock

    @property
    def rows_pending(self) -> int:
        """Rows not yet committed by every consumer (see :meth:`Cursor.lag` for one consumer)."""
        return self._lag(min(self._positions.values()))[0]

    @property
    def bytes_pending(self) -> int:
        return self._lag(min(self._positions.values()))[1]

    @property
    def open_rows(self) -> int:
        return self._open_rows

    @property
    def full(self) -> str | None:
        """Why appends are refused now, or None."""
        return self._full

    def _lag(self, position: int) -> tuple[int, int]:
        with self._lock:
            behind = [s for seq, s in self._sealed.items() if seq > position]
            return (
                sum(s.rows for s in behind) + self._open_rows,
                sum(s.nbytes for s in behind) + self._open_bytes,
            )

    # -- request side -------------------------------------------------------

    async def append(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Return once ``rows`` are on disk; raise :class:`JournalError` if they cannot be,
        :class:`JournalFull` (before writing anything) when the journal or the disk is full."""
        if self._full is not None:
            now = time.monotonic()
            if now - self._full_checked >= RECHECK_FULL_S:
                self._check_room()
            if self._full is not None:
                raise JournalFull(self._full)
        if len(rows) == 1:  # most requests: one sendBeacon event
            lines = orjson.dumps(rows[0], option=orjson.OPT_APPEND_NEWLINE)
        else:
            lines = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.data.setdefault(table, []).append(lines)
        self._pending.futures.append(fut)
        self._pending.rows += len(rows)
        if self._commit_task is None or self._commit_task.done():
            self._commit_task = asyncio.create_task(self._commit_group())
        await fut

    def _check_room(self) -> None:
        """Set :attr:`full` from the bytes kept and the file system's free space (a statvfs)."""
        self._full_checked = time.monotonic()
        used = self.bytes_on_disk
        if used >= self.max_bytes:
            self._full = f"journal holds {used} bytes, journal.max_bytes is {self.max_bytes}"
            return
        try:
            st = os.statvfs(self.dir)
        except OSError:
            self._full = None
            return
        free = st.f_bavail * st.f_frsize
        if free < self.reserve_bytes:
            self._full = (
                f"{free} bytes free on the journal's disk, journal.reserve_bytes is {self.reserve_bytes}"
            )
        else:
            self._full = None

    async def _commit_group(self) -> None:
        """Write what is pending to the page cache and hand it to the sync thread.

        The write is a memory copy and runs here, on the loop thread; the
        fdatasync (~0.25 ms idle, ~1 ms under load) runs on the sync thread so
        the loop keeps serving while the disk flushes.
        """
        await asyncio.sleep(0)  # let this loop iteration's other requests join the group
        group, self._pending = self._pending, _Pending()
        if not group.futures:
            return
        data = {table: b"".join(chunks) for table, chunks in group.data.items()}
        loop = asyncio.get_running_loop()
        written = _Written(
            loop, [], group.futures, group.rows, sum(map(len, data.values())), time.perf_counter()
        )
        try:
            with self._lock:
                first = not self._fds
                written.fds = self._write(data)
                written.new_file, self._new_file = self._new_file, False
                # Counted when written, not when synced: a consumer may load and commit a
                # sealed segment before its last group's fdatasync returns.
                self._open_rows += written.rows
                self._open_bytes += written.nbytes
                if self._fsync:
                    with self._cond:  # enqueue under the lock: rotate() cannot retire these fds first
                        self._unsynced.append(written)
                        self._cond.notify()
                seq = self._seq
                if self._open_bytes >= self.segment_bytes:
                    self._rotate_locked()
        except OSError as exc:
            self._done(written, JournalError(f"journal write failed: {exc}"))
            return
        if first:
            loop.call_later(self.segment_seconds, self._rotate_if_open, seq)
        if self.bytes_on_disk >= self.max_bytes or time.monotonic() - self._full_checked >= STATVFS_EVERY_S:
            self._check_room()
        if not self._fsync:
            self._done(written, None)
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
            # The new file's name must survive a crash too: the sync thread fsyncs the directory
            # before this group's fdatasync (an fsync here blocked the loop for ms under load).
            if self._fsync:
                self._new_file = True
            else:
                _fsync_dir(self.dir)
        return self._fds[table]

    def _ensure_syncer(self) -> None:
        if self._syncer is None or not self._syncer.is_alive():
            self._syncer = threading.Thread(target=self._sync_loop, name="jobpixel-journal-sync", daemon=True)
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
                if any(w.new_file for w in batch):
                    try:
                        _fsync_dir(self.dir)
                    except OSError as exc:
                        error = exc
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
                    err = JournalError(f"journal fsync failed: {error}") if error else None
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

    # -- consumer side ------------------------------------------------------

    def rotate(self) -> None:
        """Seal the open segment (if it holds anything) so consumers may take it.

        Its fds go to the sync thread, which syncs and closes them after every
        group written to them. A consumer may read a sealed file before that
        sync: what it reads was written; only the acknowledgement waits.
        """
        with self._lock:
            self._rotate_locked()

    def _rotate_if_open(self, seq: int) -> None:
        with self._lock:
            if self._seq == seq:
                self._rotate_locked()

    def _rotate_locked(self) -> None:
        if not self._fds:
            return
        files = {table: self._path(self._seq, table) for table in self._fds}
        fds = [fd for fd, _ in self._fds.values()]
        self._sealed[self._seq] = _Sealed(files, self._open_bytes, self._open_rows)
        self._sealed_bytes += self._open_bytes
        self._fds = {}
        self._seq += 1
        self._open_rows = self._open_bytes = 0
        if self._fsync:
            with self._cond:
                self._retired.extend(fds)
                self._cond.notify()
            self._ensure_syncer()
        else:
            for fd in fds:
                os.close(fd)

    def _sealed_after(self, position: int) -> list[Segment]:
        with self._lock:
            return [Segment(seq, dict(s.files)) for seq, s in sorted(self._sealed.items()) if seq > position]

    def _commit(self, consumer: str, seq: int) -> None:
        with self._lock:
            if seq >= self._seq:
                raise ValueError(f"segment {seq} is not sealed")
            if seq <= self._positions[consumer]:
                return
        self._write_cursor(consumer, seq)
        with self._lock:
            self._positions[consumer] = max(self._positions[consumer], seq)
        self._drop_consumed()

    def _drop_consumed(self) -> None:
        with self._lock:
            floor = min(self._positions.values())
            gone = [(seq, self._sealed.pop(seq)) for seq in sorted(self._sealed) if seq <= floor]
            self._sealed_bytes -= sum(seg.nbytes for _, seg in gone)
        if not gone:
            return
        for _, seg in gone:
            for path in seg.files.values():
                path.unlink(missing_ok=True)
        _fsync_dir(self.dir)
        if self._full is not None:
            self._check_room()

    def _write_cursor(self, consumer: str, seq: int) -> None:
        path = self.dir / "cursors" / consumer
        tmp = path.with_name(consumer + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, f"{seq}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def close(self) -> None:
        """Sync and close everything; groups still waiting are made durable first. Releases the lock."""
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
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _path(self, seq: int, table: str) -> Path:
        return self.dir / f"{seq:012d}.{table}{SEGMENT_SUFFIX}"


def _scan(directory: Path) -> dict[int, dict[str, Path]]:
    out: dict[int, dict[str, Path]] = {}
    for p in directory.iterdir():
        m = _NAME_RE.match(p.name)
        if m:
            out.setdefault(int(m.group(1)), {})[m.group(2)] = p
    return out


def _size(files: Mapping[str, Path]) -> int:
    return sum(p.stat().st_size for p in files.values())


def _read_cursors(directory: Path) -> dict[str, int]:
    out = {}
    for p in directory.iterdir():
        if _CONSUMER_RE.match(p.name):
            with contextlib.suppress(ValueError):
                out[p.name] = int(p.read_text().strip())
    return out


def _node_id(directory: Path) -> str:
    """This journal's name in deduplication tokens: made once, kept with the segments."""
    path = directory / "node-id"
    try:
        value = path.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{32}", value):
            return value
    except FileNotFoundError:
        pass
    value = uuid.uuid4().hex
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value + "\n")
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(directory)
    return value


def _lock(directory: Path) -> int | None:
    """A POSIX lock on ``directory/lock``: a second process fails at once (the kernel drops it on exit)."""
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise JournalLocked(
            f"the journal {directory} is in use by another jobpixel process: one process per data_dir "
            "(give each process its own server.data_dir)"
        ) from None
    return fd


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
