"""The outbox's own durable state: one append-only JSON-lines file under ``data_dir/outbox/``.

Why a file and not ClickHouse rows: "never twice after success" needs the success recorded durably
before anything else happens, at a cost of one ``fdatasync`` per delivery pass, with no dependency on
the store being up (deliveries continue while ClickHouse is down) and no read-your-write question
(ClickHouse's ReplacingMergeTree dedups only on merge). The file is small (only marketing-consented
events that await a channel) and is compacted on start and when mostly obsolete.

Records, one JSON object per line, each written and fsynced before the step it guards:

- ``{"q": key, "ch", "ev": {…}, "at"}``: a delivery queued (the event's forwarding fields only: never
  the visitor id). Written before the journal segment it came from is committed.
- ``{"a": key, "n", "first", "last", "http", "msg", "next"}``: an attempt that will be retried.
- ``{"d": key, "row": {…}}``: final (``sent``, ``failed_final``, ``too_old``, ``withdrawn``) with its
  delivery-log row; written right after the channel's answer, before the delivery log is written.
- ``{"l": key}``: that delivery-log row reached the delivery log.
- ``{"k": key, "t"}``: (after compaction) a key finished recently; a replayed journal segment or a
  client's replayed event within ``keep_done_s`` is not queued again.

A line torn by a crash is cut on open (it was never acknowledged). What is not covered: a SIGKILL
between a channel's 2xx and the ``d`` record's fsync resends that one batch after restart; the event id
is the channel's dedup key (Meta, Snap, LinkedIn), GA4 has none.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pixel_server.forwarding.base import Event

FILE_NAME = "outbox.jsonl"


@dataclass
class Delivery:
    key: str
    channel: str
    event: Event
    queued_at: float
    attempts: int = 0
    first_attempt: float | None = None
    last_attempt: float | None = None
    http_status: int = 0
    message: str = ""
    next_at: float = 0.0


@dataclass
class _State:
    pending: dict[str, Delivery] = field(default_factory=dict)
    unlogged: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)  # key -> when it finished


def delivery_key(channel: str, site: str, event_id: str) -> str:
    return f"{channel}:{site}:{event_id}"


LOCK_WAIT_S = 10.0


class OutboxLocked(OSError):
    """Another process holds the outbox directory's lock."""


def lock_directory(directory: Path, timeout: float = LOCK_WAIT_S) -> int:
    """An exclusive lock (``flock``) on ``directory/.lock``, held until the returned descriptor is closed
    or the process ends: never two users of one outbox file. A delivery process its server left behind
    (killed) exits at its next report to the server, within a second; whoever comes next waits for that,
    then gives up with :class:`OutboxLocked`."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise OutboxLocked(f"{directory}: the outbox is in use by another process") from None
            time.sleep(0.05)


class OutboxStore:
    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        keep_done_s: float = 48 * 3600,
        compact_every_s: float = 3600,
    ) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        self.fsync = fsync
        self.keep_done_s = keep_done_s
        # Delivered events' fields (user agent, click ids) leave the file at the next compaction: at
        # least this often, not only when the file is mostly obsolete.
        self.compact_every_s = compact_every_s
        self._compacted = time.monotonic()
        # _lock guards the state (the event loop reads it: held briefly); _io orders the file's writes and
        # is held across each fdatasync, so a slow disk never makes the loop wait on the state lock.
        self._lock = threading.Lock()
        self._io = threading.Lock()
        self._dirty = False
        self._state = _State()
        self._lines = 0
        self._pruned = 0.0
        self._fh: Any = None
        self._lockfd: int | None = None
        self.lock_wait_s = LOCK_WAIT_S
        # rights: consent ids erased while this process runs; a pump that read a journal segment before
        # the erasure blanked it must not queue their events afterwards (the segment holds none now)
        self._erased: set[str] = set()

    # -- reading -------------------------------------------------------------------------------------
    def open(self, now: float | None = None) -> None:
        """Take the directory's lock (one user of the file at a time: the delivery process, an outbox in
        the server, an offline erasure), replay the file, cut a torn tail, compact, and open it for
        appending."""
        self.directory.mkdir(parents=True, exist_ok=True)
        took = self._lockfd is None
        if took:
            self._lockfd = lock_directory(self.directory, self.lock_wait_s)
        try:
            self._replay(time.time() if now is None else now)
        except BaseException:  # a failed open must not keep the lock: nobody could open it after
            if took and self._lockfd is not None:
                os.close(self._lockfd)
                self._lockfd = None
            raise

    def _replay(self, now: float) -> None:
        with self._io, self._lock:
            state = _State()
            if self.path.exists():
                data = self.path.read_bytes()
                end = data.rfind(b"\n") + 1
                for line in data[:end].splitlines():
                    try:
                        rec = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(rec, dict):
                        _apply(state, rec)
            state.done = {k: t for k, t in state.done.items() if now - t < self.keep_done_s}
            self._state = state
            self._rewrite()

    def pending(self) -> list[Delivery]:
        with self._lock:
            return list(self._state.pending.values())

    def unlogged(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._state.unlogged)

    def known(self, key: str) -> bool:
        with self._lock:
            s = self._state
            return key in s.pending or key in s.unlogged or key in s.done

    def depth(self) -> int:
        with self._lock:
            return len(self._state.pending)

    # -- writing (each call: one write + one fdatasync, under _io) ---------------------------------
    def enqueue(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        """Queue the deliveries not seen before; returns those."""
        with self._io:
            with self._lock:
                s = self._state
                new = [
                    d
                    for d in deliveries
                    if d.key not in s.pending
                    and d.key not in s.unlogged
                    and d.key not in s.done
                    and d.event.consent_id not in self._erased
                ]
                new = list({d.key: d for d in new}.values())
            # the file is _io's: written without the state lock, so the loop's readers never wait for it
            self._append({"q": d.key, "ch": d.channel, "ev": d.event, "at": d.queued_at} for d in new)
            with self._lock:
                for d in new:
                    s.pending[d.key] = d
            self._sync()
            return new

    def _live(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        """Those still queued: a delivery dropped by an erasure while its request was out (sent or not)
        must not come back into the file or the delivery log with the erased consent id."""
        with self._lock:
            s = self._state
            return [d for d in deliveries if d.key in s.pending and d.event.consent_id not in self._erased]

    def attempted(self, deliveries: Iterable[Delivery]) -> None:
        with self._io:  # the file only: the attempts are already on the Delivery objects
            deliveries = self._live(deliveries)  # under _io: an erasure's rewrite cannot come between
            self._append(
                {
                    "a": d.key,
                    "n": d.attempts,
                    "first": d.first_attempt,
                    "last": d.last_attempt,
                    "http": d.http_status,
                    "msg": d.message,
                    "next": d.next_at,
                }
                for d in deliveries
            )
            self._sync()

    def finish(self, finished: Iterable[tuple[Delivery, Mapping[str, Any]]], now: float) -> None:
        with self._io:
            items = list(finished)
            live = {d.key for d in self._live(d for d, _ in items)}
            items = [(d, row) for d, row in items if d.key in live]
            self._append({"d": d.key, "row": dict(row), "t": now} for d, row in items)
            with self._lock:
                s = self._state
                for d, row in items:
                    s.pending.pop(d.key, None)
                    s.unlogged[d.key] = dict(row)
                    s.done[d.key] = now
            self._sync()

    def logged(self, keys: Iterable[str]) -> None:
        with self._io:
            with self._lock:
                keys = [k for k in keys if k in self._state.unlogged]
                self._append({"l": k} for k in keys)
                for k in keys:
                    del self._state.unlogged[k]
                now = time.time()
                if now - self._pruned > 600:  # forget finished keys past the replay window
                    self._pruned = now
                    done = self._state.done
                    for k in [k for k, t in done.items() if now - t >= self.keep_done_s]:
                        del done[k]
                live = len(self._state.pending) + len(self._state.unlogged) + len(self._state.done)
                stale = time.monotonic() - self._compacted >= self.compact_every_s and self._lines > live
                if stale or (self._lines > 10_000 and self._lines > 4 * live):
                    self._rewrite()
            self._sync()

    def drop(self, consent_ids: set[str], event_ids: set[str]) -> int:
        """rights (issue #10): forget the deliveries of an erased subject — queued, or finished with the
        delivery-log row not yet written — and the keys kept for their events; then rewrite the file
        without them (new file, fsync, rename), so no line of theirs stays. Returns how many."""
        with self._io, self._lock:
            self._erased |= consent_ids
            s = self._state
            gone = [k for k, d in s.pending.items() if d.event.consent_id in consent_ids]
            gone += [k for k, row in s.unlogged.items() if str(row.get("consent_id")) in consent_ids]
            gone += [k for k in s.done if k.rsplit(":", 1)[-1] in event_ids]
            for k in gone:
                s.pending.pop(k, None)
                s.unlogged.pop(k, None)
                s.done.pop(k, None)
            if gone:
                self._rewrite()
            return len(set(gone))

    def close(self) -> None:
        with self._io, self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            if self._lockfd is not None:
                os.close(self._lockfd)  # releases the lock
                self._lockfd = None

    # -- internals -----------------------------------------------------------------------------------
    def _append(self, records: Iterable[Mapping[str, Any]]) -> None:
        # an Event is a dataclass: orjson writes it natively (its fields, in order), no dict per delivery
        data = b"".join(orjson.dumps(r, default=_plain) + b"\n" for r in records)
        if not data:
            return
        assert self._fh is not None, "OutboxStore.open() first"
        self._fh.write(data)
        self._fh.flush()
        self._dirty = True
        self._lines += data.count(b"\n")

    def _sync(self) -> None:
        """fdatasync what this caller wrote (holding ``_io``, not the state lock)."""
        if self._dirty and self._fh is not None:
            self._dirty = False
            if self.fsync:
                os.fdatasync(self._fh.fileno())

    def _rewrite(self) -> None:
        """Write the live state to a new file, fsync it, and rename it over the old one."""
        if self._fh is not None:
            self._fh.close()
        s = self._state
        records: list[Mapping[str, Any]] = []
        for d in s.pending.values():
            records.append({"q": d.key, "ch": d.channel, "ev": d.event, "at": d.queued_at})
            if d.attempts:
                records.append(
                    {
                        "a": d.key,
                        "n": d.attempts,
                        "first": d.first_attempt,
                        "last": d.last_attempt,
                        "http": d.http_status,
                        "msg": d.message,
                        "next": d.next_at,
                    }
                )
        records += [{"d": k, "row": row, "t": s.done.get(k, 0.0)} for k, row in s.unlogged.items()]
        records += [{"k": k, "t": t} for k, t in s.done.items() if k not in s.unlogged]
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            fh.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        if self.fsync:
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._lines = len(records)
        self._compacted = time.monotonic()
        self._fh = self.path.open("ab")
        self._dirty = False  # the new file was fsynced whole


def _plain(value: Any) -> Any:
    """orjson's fallback: an Event field that is a Mapping but no dict (a MappingProxyType, say)."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _apply(s: _State, rec: Mapping[str, Any]) -> None:
    if "q" in rec:
        key = str(rec["q"])
        if key in s.done or key in s.unlogged:
            return
        ev = rec.get("ev")
        if not isinstance(ev, dict):
            return
        event = Event(**{k: v for k, v in ev.items() if k in Event.__dataclass_fields__})
        s.pending[key] = Delivery(key, str(rec.get("ch", "")), event, float(rec.get("at", 0.0)))
    elif "a" in rec:
        d = s.pending.get(str(rec["a"]))
        if d is not None:
            d.attempts = int(rec.get("n", d.attempts))
            d.first_attempt = rec.get("first")
            d.last_attempt = rec.get("last")
            d.http_status = int(rec.get("http", 0))
            d.message = str(rec.get("msg", ""))
            d.next_at = float(rec.get("next", 0.0))
    elif "d" in rec:
        key = str(rec["d"])
        s.pending.pop(key, None)
        row = rec.get("row")
        s.unlogged[key] = dict(row) if isinstance(row, dict) else {}
        s.done[key] = float(rec.get("t", 0.0))
    elif "l" in rec:
        s.unlogged.pop(str(rec["l"]), None)
    elif "k" in rec:
        s.done[str(rec["k"])] = float(rec.get("t", 0.0))
