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
consumer committed it), and judges consent at delivery time from verdicts asked in the same pass, as
the in-process outbox does. It runs at the lowest CPU priority (``nice`` +:data:`NICE`): under load the
server's requests come first, and deliveries have hours to days (the channels' age limits). It ignores
SIGINT/SIGTERM sent to the whole process group: the server stops it (``stop``), so it can flush.

The outbox file is opened under an exclusive lock on its directory (``OutboxStore.open``): never two
users of it, whether a delivery process its killed server left behind, its successor, an outbox in the
server (``forwarding.process = false``) or an offline erasure. If the child dies, the server starts
another after a back-off (:data:`RESTART_S` doubling to :data:`RESTART_MAX_S`); the outbox file and the
journal cursor carry on. If it cannot take an erasure's ``drop`` (down, restarting, too slow), the
server kills it and purges the file itself under the lock. If the server dies, the child's next call
fails and it exits. Requests carry a number that replies echo, so a reply that arrives after its caller
gave up is never taken for the next one's.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import copyreg
import dataclasses
import io
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from pixel_server.core.journal import Segment
from pixel_server.core.settings import Access, Settings
from pixel_server.core.state import State
from pixel_server.forwarding.ads import StoreAds
from pixel_server.forwarding.deliverylog import JournalDeliveryLog
from pixel_server.forwarding.metrics import ForwardMetrics
from pixel_server.forwarding.outbox import CONSUMER, Outbox
from pixel_server.forwarding.ports import GrantRef
from pixel_server.forwarding.store import OutboxLocked, OutboxStore

log = logging.getLogger("jobpixel.forwarding")

NICE = 19
RESTART_S = 1.0
RESTART_MAX_S = 60.0
REPORT_S = 0.5
STOP_TIMEOUT_S = 30.0
DROP_TIMEOUT_S = 30.0


# -- the settings cross as pickled bytes (their read-only mappings are MappingProxyType) ------------------
def _mapping_proxy(d: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(d)


def _reduce_proxy(m: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return _mapping_proxy, (dict(m),)


def child_settings(settings: Settings) -> Settings:
    """What the delivery process needs: the sites, the forwarding block (its channel secrets) and the
    data directory — not the signing keys, the hash key, the ops token or the partners' credentials."""
    return dataclasses.replace(
        settings, signing_keys=(), hash_key="", ops_token=None, partners=MappingProxyType({}), admin=Access()
    )


def dumps_settings(settings: Settings) -> bytes:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _reduce_proxy}
    pickler.dump(settings)
    return buf.getvalue()


class _Calls:
    """One request and its reply at a time on a pipe, from any thread. Requests carry a number and
    replies echo it: a reply that comes after its caller gave up (a timeout) is read and dropped by the
    next call, never taken for that call's answer."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self._n = 0

    def __call__(self, method: str, arg: Any = None, timeout: float | None = None) -> Any:
        with self.lock:
            self._n += 1
            n = self._n
            self.conn.send((n, method, arg))
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if deadline is not None and not self.conn.poll(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"forwarder: no answer to {method} in {timeout:.0f} s")
                got, ok, value = self.conn.recv()
                if got == n:
                    break
        if not ok:
            raise RuntimeError(f"forwarder: {method} failed on the other side: {value}")
        return value


# -- the server's side ---------------------------------------------------------------------------------
class _ChildMetrics(Collector):
    """The child's metrics (the outbox's, ``ForwardMetrics``) in the server's ``/metrics``, as its last
    report had them (at most :data:`REPORT_S` old; none while it is down), and whether it is up."""

    def __init__(self, owner: ChildForwarder) -> None:
        self.owner = owner

    def collect(self) -> Iterable[Any]:
        up = GaugeMetricFamily(
            "jobpixel_forward_process_up", "1 while the delivery process runs and reports, else 0"
        )
        up.add_metric([], 1.0 if self.owner.reporting() else 0.0)
        yield up
        restarts = CounterMetricFamily(
            "jobpixel_forward_process_restarts", "Delivery processes started again after one ended"
        )
        restarts.add_metric([], float(self.owner.restarts))
        yield restarts
        text = self.owner.metrics_text
        if text:
            try:
                families = list(text_string_to_metric_families(text))
            except Exception:  # never let one bad report break /metrics
                log.exception("forwarder: unreadable metrics report")
                return
            yield from families


class _RemoteStore:
    """What the rights module calls on a running outbox's store (``drop``): asked of the delivery
    process; if it cannot answer (down, restarting, slow), done here on its file (ChildForwarder.drop)."""

    def __init__(self, owner: ChildForwarder) -> None:
        self.owner = owner

    def drop(self, consent_ids: Iterable[str], event_ids: Iterable[str]) -> int:
        return self.owner.drop(set(consent_ids), set(event_ids))


class _RemoteOutbox:
    def __init__(self, owner: ChildForwarder) -> None:
        self.store = _RemoteStore(owner)


class ChildForwarder:
    """The outbox in a child process: the same interface as ``wiring.Forwarder`` (start, stop, status,
    ``outbox.store.drop`` for erasure). One supervisor thread starts the process, answers its requests
    until it ends, and starts another after a back-off (:data:`RESTART_S` doubling to
    :data:`RESTART_MAX_S`), unless the server is stopping or holds the outbox itself (an erasure the
    process could not take)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.cursor = state.journal.cursor(CONSUMER)
        self.ads = StoreAds(state)
        self.delivery_log = JournalDeliveryLog(state.journal)
        self.outbox = _RemoteOutbox(self)
        self.metrics_text = ""
        self.restarts = 0
        self._status: dict[str, Any] = {"depth": None, "oldest_age_s": None, "process": "starting"}
        self._last_report: float | None = None
        self._settings = dumps_settings(child_settings(state.settings))
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._down: _Calls | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._held = 0  # erasures purging the outbox file here: no process meanwhile
        self._killed_for_erasure: int | None = None  # that process's end is no crash (no back-off)
        self._supervisor: threading.Thread | None = None
        state.metrics.registry.register(_ChildMetrics(self))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # at interpreter exit, before multiprocessing joins its children (registered earlier, so run
        # later): the child ignores SIGTERM and would keep a server that never ran stop() from exiting
        atexit.register(self._kill_at_exit)
        started = threading.Event()
        self._supervisor = threading.Thread(
            target=self._supervise, args=(started,), name="jobpixel-forwarder", daemon=True
        )
        self._supervisor.start()
        await asyncio.to_thread(started.wait, 30.0)
        targets = self.state.settings.forwarding.targets
        log.info(
            "forwarding on, delivering from process %s: %s",
            self._proc.pid if self._proc else "?",
            "; ".join(f"{site}: {', '.join(sorted(t))}" for site, t in sorted(targets.items()) if t),
        )

    async def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            proc = self._proc
        try:
            if proc is not None and proc.is_alive():
                with contextlib.suppress(Exception):  # a dead or stuck process: killed below
                    await asyncio.to_thread(self.ask_child, "stop", None, STOP_TIMEOUT_S + 5)
                await asyncio.to_thread(proc.join, 5.0)
        finally:
            if proc is not None and proc.is_alive():
                log.error("forwarder: process %s did not stop; killing it", proc.pid)
                proc.kill()
                proc.join(5.0)
        if self._supervisor is not None:
            await asyncio.to_thread(self._supervisor.join, 10.0)
        atexit.unregister(self._kill_at_exit)

    def _kill_at_exit(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            proc = self._proc
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(5.0)

    def reporting(self) -> bool:
        last = self._last_report
        return (
            self._status.get("process") == "running"
            and last is not None
            and (time.monotonic() - last < max(5.0, 10 * REPORT_S))
        )

    def status(self) -> dict[str, Any]:
        out = dict(self._status)
        last = self._last_report
        out["report_age_s"] = round(time.monotonic() - last, 1) if last is not None else None
        return out

    def ask_child(self, method: str, arg: Any, timeout: float) -> Any:
        down = self._down
        if down is None:
            raise RuntimeError("forwarder: the delivery process is not running")
        return down(method, arg, timeout)

    # -- erasure ---------------------------------------------------------------------------------------
    def drop(self, consent_ids: set[str], event_ids: set[str]) -> int:
        """An erasure's purge of the queued deliveries: by the delivery process if it answers; if not
        (down, restarting, stuck), the server stops it, purges the file itself under the directory's
        lock, and lets another start. Never lost because the process was away."""
        try:
            return int(self.ask_child("drop", (sorted(consent_ids), sorted(event_ids)), DROP_TIMEOUT_S))
        except Exception as exc:
            log.warning("forwarder: the delivery process did not take an erasure (%s); purging here", exc)
        with self._cond:
            self._held += 1
            proc = self._proc
            if proc is not None:
                self._killed_for_erasure = proc.pid
        try:
            if proc is not None and proc.is_alive():
                proc.kill()  # its pass may be mid-write: the file's lock and replay handle that
                proc.join(10.0)
            store = OutboxStore(self.state.settings.data_dir / "outbox")
            store.open()  # waits for the lock: a process its server left behind exits within a second
            try:
                return store.drop(consent_ids, event_ids)
            finally:
                store.close()
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify_all()

    # -- the supervisor --------------------------------------------------------------------------------
    def _supervise(self, started: threading.Event) -> None:
        delay = RESTART_S
        first = True
        while True:
            with self._cond:
                while self._held and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    break
                try:
                    proc, up = self._spawn()
                except Exception:
                    log.exception("forwarder: could not start the delivery process")
                    proc, up = None, None
            if first:
                first = False
                started.set()
            born = time.monotonic()
            if proc is not None and up is not None:
                self._serve(up, proc)
                proc.join(5.0)
            self._down = None
            self._last_report = None
            self.metrics_text = ""
            code = proc.exitcode if proc is not None else None
            with self._cond:
                if self._stopping:
                    self._status = {**self._status, "process": "stopped", "depth": None, "oldest_age_s": None}
                    break
                held = self._held > 0 or (proc is not None and proc.pid == self._killed_for_erasure)
                self._status = {**self._status, "process": "restarting", "depth": None, "oldest_age_s": None}
            if held:
                delay = RESTART_S  # stopped on purpose by an erasure: start again once it is done
                continue
            if time.monotonic() - born > RESTART_MAX_S:
                delay = RESTART_S  # it ran a while: a fresh failure, not a loop
            log.error(
                "forwarder: the delivery process %s ended (exit code %s); starting another in %.0f s",
                proc.pid if proc is not None else "-",
                code,
                delay,
            )
            with self._cond:
                self._cond.wait_for(lambda: self._stopping, delay)
            delay = min(RESTART_MAX_S, delay * 2)
            self.restarts += 1
        started.set()

    def _spawn(self) -> tuple[multiprocessing.process.BaseProcess, Connection]:
        ctx = multiprocessing.get_context("spawn")
        up_server, up_child = ctx.Pipe()
        down_server, down_child = ctx.Pipe()
        proc = ctx.Process(
            target=child_main,
            args=(self._settings, up_child, down_child),
            name="jobpixel-forwarder",
            daemon=True,
        )
        try:
            proc.start()
        except BaseException:
            for end in (up_server, up_child, down_server, down_child):
                end.close()
            raise
        up_child.close()
        down_child.close()
        self._proc, self._down = proc, _Calls(down_server)
        self._status = {**self._status, "process": "running", "pid": proc.pid, "restarts": self.restarts}
        return proc, up_server

    def _serve(self, conn: Connection, proc: multiprocessing.process.BaseProcess) -> None:
        """The process's requests, until it ends."""
        while True:
            try:
                n, method, arg = conn.recv()
            except (EOFError, OSError):
                break
            try:
                reply = (n, True, self._answer(method, arg))
            except Exception as exc:  # the child logs it and retries its pass; the server carries on
                log.exception("forwarder: %s from the delivery process failed", method)
                reply = (n, False, f"{type(exc).__name__}: {exc}")
            try:
                conn.send(reply)
            except (OSError, ValueError):
                break
        conn.close()

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
            self._last_report = time.monotonic()
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
    # the server stops it (``stop``, or its pipe's end): a signal to the whole process group (Ctrl-C,
    # systemd) must not kill it before it has flushed the delivery log
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(NICE)
    settings: Settings = pickle.loads(settings_blob)
    try:
        asyncio.run(_child(settings, _Calls(up), down))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        log.warning("forwarder: the server is gone; exiting")
        os._exit(1)
    except OutboxLocked as exc:
        log.error("forwarder: %s; exiting", exc)
        os._exit(1)


async def _child(settings: Settings, up: _Calls, down: Connection) -> None:
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
            n, method, arg = down.recv()
        except (EOFError, OSError):
            loop.call_soon_threadsafe(stop.set)
            return
        try:
            if method == "drop":
                consent_ids, event_ids = arg
                down.send((n, True, outbox.store.drop(set(consent_ids), set(event_ids))))
            elif method == "stop":
                loop.call_soon_threadsafe(stop.set)
                stopped.wait(STOP_TIMEOUT_S)
                down.send((n, True, None))
                return
            else:
                down.send((n, False, f"unknown request {method!r}"))
        except Exception as exc:
            log.exception("forwarder: %s failed", method)
            with contextlib.suppress(OSError):
                down.send((n, False, f"{type(exc).__name__}: {exc}"))
