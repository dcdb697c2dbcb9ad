"""A SIGKILLed outbox with deliveries queued delivers them after restart, each exactly once, and never
resends what a channel already accepted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.forwarding.support import FakeJournal, FileLog, event_row, wait
from tests.harness import RecordingServer

ROOT = Path(__file__).parents[2]


@pytest.fixture
def channels() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


def start(tmp: Path, endpoint: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.forwarding.outbox_process", str(tmp), endpoint],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"started"
    return proc


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def delivered(channels: RecordingServer) -> Counter[tuple[str, str]]:
    """(channel, event id) for every event in every request a channel accepted."""
    out: Counter[tuple[str, str]] = Counter()
    for r in channels.ok():
        if r.path.startswith("/v3/"):
            out.update(("snapchat", e["event_id"]) for e in r.json()["data"])
        else:
            out.update(("meta", e["event_id"]) for e in orjson.loads(r.form()["data"][0]))
    return out


def test_sigkill_with_deliveries_queued_then_restart(tmp_path: Path, channels: RecordingServer) -> None:
    journal = FakeJournal(tmp_path / "journal")
    rows = [event_row("apply_complete") for _ in range(6)]
    journal.add(*rows[:3])
    journal.add(*rows[3:])
    channels.fail(10_000, 503)  # both channels down: everything stays queued, retrying

    proc = start(tmp_path, channels.url)

    # two requests to a channel: the first one's failed attempt is in the outbox file
    def tried_twice() -> bool:
        per_channel = Counter("snapchat" if r.path.startswith("/v3/") else "meta" for r in channels.requests)
        return len(per_channel) == 2 and min(per_channel.values()) >= 2

    wait(tried_twice)
    kill(proc)
    assert journal.cursor("outbox").pending() == []  # the journal let go: the outbox file holds them
    assert FileLog(tmp_path / "log.jsonl").rows() == []

    channels.recover()
    proc = start(tmp_path, channels.url)
    expected = {(c, r["event_id"]) for c in ("meta", "snapchat") for r in rows}
    wait(lambda: len(FileLog(tmp_path / "log.jsonl").rows()) >= len(expected))
    kill(proc)  # killed again after success ...
    cursor = tmp_path / "journal" / "cursor.outbox"
    cursor.unlink()  # ... with the journal handing the segments back (a commit lost in the crash) ...
    proc = start(tmp_path, channels.url)  # ... and restarted: nothing is sent twice
    wait(lambda: cursor.exists() and len(cursor.read_text().split()) == 2)
    time.sleep(0.3)
    kill(proc)

    got = delivered(channels)
    assert set(got) == expected
    assert all(n == 1 for n in got.values()), got
    logged = FileLog(tmp_path / "log.jsonl").rows()
    assert {(r["channel"], r["event_id"]) for r in logged} == expected
    assert all(r["status"] == "sent" and r["attempts"] >= 2 for r in logged)
