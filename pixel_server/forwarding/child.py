"""Delivery in its own process: the outbox runs in a child of the server, so reading the journal's
marketing rows, planning deliveries, the outbox file's fsyncs and the channels' HTTP never take the
server's GIL (issue #8: forwarding must cost ``/collect`` at most 10 %; in-process it cost 15–27 %,
bench/README.md).

The child runs the same :class:`~pixel_server.forwarding.outbox.Outbox`; only its ports are remote. What
needs the server's state is asked of the server over a pipe, one request and its reply at a time:

============  ==========================================  ============================================
up (child →)  argument                                    the server's reply
============  ==========================================  ============================================
``pending``   —                                           sealed journal segments after the outbox's
                                                          cursor: ``[(seq, {table: path})]``
``commit``    segment seq                                 ``None`` once the cursor is durable
``verdicts``  ``[(consent_id, choice_id, site, issued)]`` ``[(judgeable, revoked)]`` from the
                                                          server's revocation index, at that moment
``ads``       ``[(site, ad)]``                            the ads' job metadata (``StoreAds``)
``log``       delivery-log rows                           ``None`` once journaled (fsynced)
``report``    ``(status, metrics exposition)``            ``None``; kept for ``/readyz``, ``/metrics``
============  ==========================================  ============================================

and the server asks the child on a second pipe: ``drop`` (an erasure: the subject's queued deliveries;
the count dropped) and ``stop`` (finish, flush the delivery log; ``None``).

The child reads segment files itself (paths from ``pending``; a segment is deleted only after every
consumer committed it), keeps the outbox file (``data_dir/outbox``) to itself, and judges consent at
delivery time from verdicts asked in the same pass, as the in-process outbox does. It runs at a lower
CPU priority (``nice`` +:data:`NICE`): under load the server's requests come first, and deliveries
have hours to days (the channels' age limits). If the child dies, the server starts another after
:data:`RESTART_S`; the outbox file and the journal cursor carry on. If the server dies, the child's
next call fails and it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import copyreg
import fcntl
import io
import logging
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from pixel_server.core.journal import Segment
from pixel_server.core.settings import Settings
from pixel_server.core.state import State
from pixel_server.forwarding.deliverylog import JournalDeliveryLog
from pixel_server.forwarding.metrics import ForwardMetrics
from pixel_server.forwarding.outbox import CONSUMER, Outbox
from pixel_server.forwarding.ports import GrantRef

log = logging.getLogger("jobpixel.forwarding")

NICE = 19
RESTART_S = 1.0
REPORT_S = 0.5
STOP_TIMEOUT_S = 30.0
DROP_TIMEOUT_S = 30.0
LOCK_WAIT_S = 10.0


# -- the settings cross as pickled bytes (their read-only mappings are MappingProxyType) ------------------
def _mapping_proxy(d: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(d)


def _reduce_proxy(m: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return _mapping_proxy, (dict(m),)


def dumps_settings(settings: Settings) -> bytes:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _reduce_proxy}
    pickler.dump(settings)
    return buf.getvalue()


class _Calls:
    """One request and its reply at a time on a pipe, from any thread."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def __call__(self, method: str, arg: Any = None, timeout: float | None = None) -> Any:
        with self.lock:
            self.conn.send((method, arg))
            if timeout is not None and not self.conn.poll(timeout):
                raise TimeoutError(f"forwarder: no answer to {method} in {timeout:.0f} s")
            ok, value = self.conn.recv()
        if not ok:
            raise RuntimeError(f"forwarder: {method} failed on the other side: {value}")
        return value


# -- the server's side ---------------------------------------------------------------------------------
class _ChildMetrics(Collector):
    """The child's metrics (the outbox's, ``ForwardMetrics``) in the server's ``/metrics``, as its last
    report had them (at most :data:`REPORT_S` old)."""

    def __init__(self, owner: ChildForwarder) -> None:
        self.owner = owner

    def collect(self) -> Iterable[Any]:
        text = self.owner.metrics_text
        if text:
            yield from text_string_to_metric_families(text)


class _RemoteStore:
    """What the rights module calls on a running outbox's store (``drop``), asked of the child."""

    def __init__(self, owner: ChildForwarder) -> None:
        self.owner = owner

    def drop(self, consent_ids: Iterable[str], event_ids: Iterable[str]) -> int:
        return int(self.owner.ask_child("drop", (sorted(consent_ids), sorted(event_ids)), DROP_TIMEOUT_S))


class _RemoteOutbox:
    def __init__(self, owner: ChildForwarder) -> None:
        self.store = _RemoteStore(owner)


class ChildForwarder:
    """The outbox in a child process: the same interface as ``wiring.Forwarder`` (start, stop, status,
    ``outbox.store.drop`` for erasure)."""

    def __init__(self, state: State) -> None:
        from pixel_server.forwarding.wiring import StoreAds

        self.state = state
        self.cursor = state.journal.cursor(CONSUMER)
        self.ads = StoreAds(state)
        self.delivery_log = JournalDeliveryLog(state.journal)
        self.outbox = _RemoteOutbox(self)
        self.metrics_text = ""
        self._status: dict[str, Any] = {"depth": None, "oldest_age_s": None, "process": "starting"}
        self._settings = dumps_settings(state.settings)
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._down: _Calls | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.restarts = 0
        state.metrics.registry.register(_ChildMetrics(self))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._spawn)
        targets = self.state.settings.forwarding.targets
        log.info(
            "forwarding on, delivering from process %s: %s",
            self._proc.pid if self._proc else "?",
            "; ".join(f"{site}: {', '.join(sorted(t))}" for site, t in sorted(targets.items()) if t),
        )

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        up_server, up_child = ctx.Pipe()
        down_server, down_child = ctx.Pipe()
        proc = ctx.Process(
            target=child_main,
            args=(self._settings, up_child, down_child),
            name="jobpixel-forwarder",
            daemon=True,
        )
        proc.start()
        up_child.close()
        down_child.close()
        self._proc, self._down = proc, _Calls(down_server)
        self._status = {**self._status, "process": "running", "pid": proc.pid, "restarts": self.restarts}
        threading.Thread(
            target=self._serve, args=(up_server, proc), name="jobpixel-forwarder-up", daemon=True
        ).start()

    async def stop(self) -> None:
        self._stopping = True
        if self._proc is None:
            return
        with contextlib.suppress(Exception):  # a dead child has nothing left to flush
            await asyncio.to_thread(self.ask_child, "stop", None, STOP_TIMEOUT_S)
        await asyncio.to_thread(self._proc.join, 5.0)
        if self._proc.is_alive():
            log.error("forwarder: process %s did not stop; killing it", self._proc.pid)
            self._proc.kill()
            await asyncio.to_thread(self._proc.join, 5.0)

    def status(self) -> dict[str, Any]:
        return dict(self._status)

    def ask_child(self, method: str, arg: Any, timeout: float) -> Any:
        if self._down is None:
            raise RuntimeError("forwarder: the delivery process is not running")
        return self._down(method, arg, timeout)

    # the child's requests, on their own thread
    def _serve(self, conn: Connection, proc: multiprocessing.process.BaseProcess) -> None:
        while True:
            try:
                method, arg = conn.recv()
            except (EOFError, OSError):
                break
            try:
                reply = (True, self._answer(method, arg))
            except Exception as exc:  # the child logs it and retries its pass; the server carries on
                log.exception("forwarder: %s from the delivery process failed", method)
                reply = (False, f"{type(exc).__name__}: {exc}")
            try:
                conn.send(reply)
            except (OSError, ValueError):
                break
        conn.close()
        proc.join(1.0)
        if self._stopping:
            return
        self._status = {**self._status, "process": "restarting"}
        log.error(
            "forwarder: the delivery process %s ended (exit code %s); starting another in %.0f s",
            proc.pid,
            proc.exitcode,
            RESTART_S,
        )
        time.sleep(RESTART_S)
        if not self._stopping:
            self.restarts += 1
            self._spawn()

    def _answer(self, method: str, arg: Any) -> Any:
        if method == "pending":
            return [(s.seq, {t: str(p) for t, p in s.files.items()}) for s in self.cursor.pending()]
        if method == "commit":
            self.cursor.commit(Segment(int(arg), {}))
            return None
        if method == "verdicts":
            rev = self.state.revocations
            out = []
            for consent_id, choice_id, site, issued in arg:
                g = GrantRef(consent_id, choice_id, site, issued)
                judgeable = rev.can_judge(g)  # type: ignore[arg-type]
                out.append((judgeable, judgeable and rev.is_revoked(g)))  # type: ignore[arg-type]
            return out
        if method == "ads":
            return self.ads.many([tuple(k) for k in arg])
        if method == "log":
            assert self._loop is not None
            asyncio.run_coroutine_threadsafe(self.delivery_log.write(arg), self._loop).result()
            return None
        if method == "report":
            status, text = arg
            self._status = {**self._status, **status}
            self.metrics_text = text
            return None
        raise ValueError(f"unknown request {method!r}")


# -- the child's side ----------------------------------------------------------------------------------
class _RemoteCursor:
    def __init__(self, up: _Calls) -> None:
        self.up = up

    def pending(self) -> list[Segment]:
        return [Segment(seq, {t: Path(p) for t, p in files.items()}) for seq, files in self.up("pending")]

    def commit(self, segment: Segment) -> None:
        self.up("commit", segment.seq)


class _RemoteRevocations:
    """The server's revocation index, as verdicts asked once per pass for every grant due in it
    (``Outbox.deliver_due`` calls :meth:`prefetch`); a grant not asked is not judgeable (it waits)."""

    def __init__(self, up: _Calls) -> None:
        self.up = up
        self._verdicts: dict[tuple[str, str, str, float], tuple[bool, bool]] = {}

    def prefetch(self, grants: Sequence[GrantRef]) -> None:
        keys = list(dict.fromkeys((g.consent_id, g.choice_id, g.site, g.issued_at) for g in grants))
        answers = self.up("verdicts", keys) if keys else []
        self._verdicts = {k: (bool(j), bool(r)) for k, (j, r) in zip(keys, answers, strict=True)}

    def _get(self, g: GrantRef) -> tuple[bool, bool]:
        return self._verdicts.get((g.consent_id, g.choice_id, g.site, g.issued_at), (False, False))

    def can_judge(self, grant: GrantRef) -> bool:
        return self._get(grant)[0]

    def is_revoked(self, grant: GrantRef) -> bool:
        return self._get(grant)[1]


class _RemoteAds:
    def __init__(self, up: _Calls) -> None:
        self.up = up

    def __call__(self, site: str, ad: str) -> Mapping[str, Any]:
        return self.many([(site, ad)]).get((site, ad), {})

    def many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Mapping[str, Any]]:
        return dict(self.up("ads", list(keys)))


class _RemoteDeliveryLog:
    def __init__(self, up: _Calls) -> None:
        self.up = up

    async def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await asyncio.to_thread(self.up, "log", [dict(r) for r in rows])


def child_main(settings_blob: bytes, up: Connection, down: Connection) -> None:
    """The delivery process (spawned: a fresh interpreter, nothing inherited but the pipes)."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s [forwarder %(process)d] %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is the delivery log's job
    with contextlib.suppress(OSError):
        os.nice(NICE)
    settings: Settings = pickle.loads(settings_blob)
    try:
        asyncio.run(_child(settings, _Calls(up), down))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        log.warning("forwarder: the server is gone; exiting")
        os._exit(1)


def lock_outbox(directory: Path, timeout: float = LOCK_WAIT_S) -> int:
    """An exclusive lock on the outbox directory for as long as this process lives: never two outboxes
    on one file. A delivery process its server left behind (killed) exits at its next report, within
    :data:`REPORT_S`; its successor waits for that, then gives up (exit 1: the server starts another)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise
            time.sleep(0.05)


async def _child(settings: Settings, up: _Calls, down: Connection) -> None:
    try:
        lock_outbox(settings.data_dir / "outbox")
    except BlockingIOError:
        log.error("forwarder: another delivery process holds %s; exiting", settings.data_dir / "outbox")
        os._exit(1)
    registry = CollectorRegistry()
    outbox = Outbox(
        settings,
        _RemoteCursor(up),
        _RemoteRevocations(up),
        _RemoteDeliveryLog(up),
        metrics=ForwardMetrics(registry),
        ads=_RemoteAds(up),
    )
    await outbox.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stopped = threading.Event()
    threading.Thread(
        target=_serve_down,
        args=(down, outbox, loop, stop, stopped),
        name="jobpixel-forwarder-down",
        daemon=True,
    ).start()

    def report() -> None:
        up("report", (outbox.status(), generate_latest(registry).decode()))

    try:
        while not stop.is_set():
            try:
                await asyncio.to_thread(report)
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                log.warning("forwarder: the server is gone; exiting")
                os._exit(1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REPORT_S)
    finally:
        await outbox.stop()
        stopped.set()


def _serve_down(
    down: Connection,
    outbox: Outbox,
    loop: asyncio.AbstractEventLoop,
    stop: asyncio.Event,
    stopped: threading.Event,
) -> None:
    while True:
        try:
            method, arg = down.recv()
        except (EOFError, OSError):
            loop.call_soon_threadsafe(stop.set)
            return
        try:
            if method == "drop":
                consent_ids, event_ids = arg
                down.send((True, outbox.store.drop(set(consent_ids), set(event_ids))))
            elif method == "stop":
                loop.call_soon_threadsafe(stop.set)
                stopped.wait(STOP_TIMEOUT_S)
                down.send((True, None))
                return
            else:
                down.send((False, f"unknown request {method!r}"))
        except Exception as exc:
            log.exception("forwarder: %s failed", method)
            with contextlib.suppress(OSError):
                down.send((False, f"{type(exc).__name__}: {exc}"))
