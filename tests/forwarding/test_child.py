"""The delivery process (forwarding/child.py) as an attacker of its promises would try it: an erasure
while the process is down still purges the queue; a late reply never answers the next request; a
process that cannot start is retried with a back-off and shows as down; the process gets no secret
it does not need."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixel_server.forwarding import child
from tests.forwarding.support import ForwardingServer, forwarding_settings, wait
from tests.forwarding.test_live import CHANNELS, collect
from tests.harness import OPS, PartnerSite, RecordingServer


@contextlib.contextmanager
def running(data_dir: Path) -> Iterator[ForwardingServer]:
    """A live server forwarding to a recorder per channel, its partner site on another origin."""
    partner = PartnerSite()
    recorders = {name: RecordingServer() for name in CHANNELS}
    srv = ForwardingServer(data_dir, partner, recorders, timeout_ms=5000)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        for rec in recorders.values():
            rec.close()
        partner.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ForwardingServer]:
    with running(tmp_path / "data") as srv:
        yield srv


def _status(server: ForwardingServer) -> dict[str, object]:
    status: dict[str, object] = httpx.get(server.url + "/readyz", headers=OPS).json()["outbox"]
    return status


def queued_while_the_channels_fail(server: ForwardingServer) -> tuple[dict[str, Any], str, int]:
    """A marketing event queued for every channel, none sent: its grant, its id, and the delivery
    process's pid."""
    for rec in server.recorders.values():  # the channels fail: the deliveries stay queued
        rec.fail(10_000, 503)
    grant = server.consent("shop", statistics=True, marketing=True)
    event_id = collect(server, grant)
    server.flush()
    wait(lambda: int(str(_status(server).get("depth") or 0)) == len(CHANNELS))
    return grant, event_id, int(str(_status(server)["pid"]))


def test_an_erasure_while_the_delivery_process_is_down_still_purges_its_queue(
    server: ForwardingServer,
) -> None:
    fwd = server.state.forwarder
    assert isinstance(fwd, child.ChildForwarder)
    wait(lambda: fwd.reporting())
    grant, event_id, pid = queued_while_the_channels_fail(server)
    os.kill(pid, signal.SIGKILL)  # the delivery process is gone when the erasure comes
    assert fwd.outbox.store.drop({grant["consent_id"]}, {event_id}) == len(CHANNELS)
    # the next process starts from the purged file: nothing of that consent is queued, or sent
    wait(lambda: fwd.reporting() and str(_status(server)["pid"]) != str(pid))
    assert _status(server)["depth"] == 0
    assert fwd.restarts <= 1  # the kill above was a crash; the erasure's own stop is not counted
    assert grant["consent_id"].encode() not in (server.data_dir / "outbox" / "outbox.jsonl").read_bytes()
    for rec in server.recorders.values():
        rec.recover()
    time.sleep(1.5)
    assert not any(event_id.encode() in r.body for rec in server.recorders.values() for r in rec.ok())


def test_a_delivery_process_that_cannot_start_is_retried_with_a_back_off_and_shows_as_down(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "outbox").write_text("not a directory")  # its outbox can never open
    with running(data) as srv:
        fwd = srv.state.forwarder
        assert isinstance(fwd, child.ChildForwarder)
        wait(lambda: fwd.restarts >= 2)
        t0, n0 = time.monotonic(), fwd.restarts
        wait(lambda: fwd.restarts > n0)
        assert time.monotonic() - t0 >= 1.5  # the third wait is 4 s: backing off, not a tight loop
        assert not fwd.reporting() and _status(srv)["process"] in ("restarting", "running")
        text = httpx.get(srv.url + "/metrics", headers=OPS).text
        assert "jobpixel_forward_process_up 0.0" in text


def test_an_erasure_a_stuck_delivery_process_cannot_take_is_purged_by_the_server(
    server: ForwardingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fwd = server.state.forwarder
    assert isinstance(fwd, child.ChildForwarder)
    monkeypatch.setattr(child, "DROP_TIMEOUT_S", 1.0)
    wait(lambda: fwd.reporting())
    grant, event_id, pid = queued_while_the_channels_fail(server)
    os.kill(pid, signal.SIGSTOP)  # alive, but answers nothing
    try:
        assert fwd.outbox.store.drop({grant["consent_id"]}, {event_id}) == len(CHANNELS)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    wait(lambda: fwd.reporting() and str(_status(server)["pid"]) != str(pid))
    assert _status(server)["depth"] == 0
    assert fwd.restarts == 0  # stopped for the erasure, not a crash: no back-off, not counted


def test_a_late_reply_is_never_taken_for_the_next_answer() -> None:
    ours, theirs = Pipe()
    calls = child._Calls(ours)

    def answer() -> None:
        n, method, arg = theirs.recv()
        time.sleep(0.5)  # too late for the first caller
        theirs.send((n, True, "first"))
        n, method, arg = theirs.recv()
        theirs.send((n, True, "second"))

    t = threading.Thread(target=answer)
    t.start()
    with pytest.raises(TimeoutError):
        calls("drop", None, timeout=0.1)
    assert calls("stop", None, timeout=5) == "second"
    t.join()


def test_the_delivery_process_gets_no_secret_it_does_not_need(tmp_path: Path) -> None:
    settings = forwarding_settings(tmp_path, "http://127.0.0.1:9")
    reduced = child.child_settings(settings)
    blob = child.dumps_settings(reduced)
    for secret in (*settings.signing_keys, settings.hash_key):
        assert secret and secret.encode() not in blob
    assert reduced.forwarding == settings.forwarding and reduced.sites == settings.sites
    assert reduced.data_dir == settings.data_dir


def test_a_failed_open_of_the_outbox_file_releases_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixel_server.forwarding.store import OutboxStore

    broken = OutboxStore(tmp_path)

    def disk_full() -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(broken, "_rewrite", disk_full)
    with pytest.raises(OSError):
        broken.open()
    fine = OutboxStore(tmp_path)
    fine.lock_wait_s = 0.5
    fine.open()  # not OutboxLocked: the failed open let go of the lock
    fine.close()


def test_at_exit_the_server_kills_its_delivery_process(server: ForwardingServer) -> None:
    """The child ignores SIGTERM; a server leaving without stop() must not hang on it."""
    fwd = server.state.forwarder
    assert isinstance(fwd, child.ChildForwarder)
    wait(lambda: fwd.reporting())
    pid = int(str(_status(server)["pid"]))
    fwd._kill_at_exit()
    wait(
        lambda: (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]
        )
    )
    time.sleep(1.5)
    assert fwd.restarts == 0 and str(_status(server)["pid"]) == str(pid)  # and none started after it
