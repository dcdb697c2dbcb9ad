"""A real server process (``jobpixel serve``) SIGKILLed with deliveries queued delivers each of them
exactly once after restart, and a restart after success sends nothing again; a missing secret
fails the start naming its variable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.forwarding import support
from tests.forwarding.support import SECRETS
from tests.harness import DESKTOP_UA, OPS, TEST_CHANNELS, RecordingServer, free_port
from tests.harness import SECRETS as SERVER_SECRETS

ORIGIN = "https://jobs.example.test"


def write_config(tmp: Path, port: int, endpoint: str) -> Path:
    cfg = tmp / "jobpixel.toml"
    cfg.write_text(
        f"""
[server]
port = {port}
data_dir = "{tmp / "data"}"
[storage]
backend = "chdb"
flush_interval_ms = 200
[forwarding]
retry_base_ms = 50
retry_max_s = 1
timeout_ms = 2000
[forwarding.endpoints]
meta = "{endpoint}"
snapchat = "{endpoint}"
[partners.p]
name = "P"
[sites.shop]
partner = "p"
origins = ["{ORIGIN}"]
[sites.shop.channels.meta]
id = "{TEST_CHANNELS["meta"]["id"]}"
secret_env = "META_TOKEN"
[sites.shop.channels.snapchat]
id = "{TEST_CHANNELS["snapchat"]["id"]}"
secret_env = "SNAP_TOKEN"
"""
    )
    return cfg


@pytest.fixture
def channels() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for pr in started:
        if pr.p.poll() is None:
            pr.kill(signal.SIGKILL)


def post(url: str, path: str, doc: dict[str, object]) -> httpx.Response:
    return httpx.post(
        url + path,
        content=json.dumps(doc),
        headers={"Content-Type": "text/plain", "Origin": ORIGIN, "User-Agent": DESKTOP_UA},
        timeout=10,
    )


def marketing_events(url: str, n: int) -> list[str]:
    consent = {
        "site": "shop",
        "consent_id": str(uuid.uuid4()),
        "choice_id": str(uuid.uuid4()),
        "action": "accept_all",
        "granted": ["necessary", "statistics", "marketing"],
        "denied": [],
        "revision": 1,
        "lang": "nb",
        "gpc": False,
        "layer": 1,
    }
    r = post(url, "/consent", consent)
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    ids = []
    for _ in range(n):
        event_id = str(uuid.uuid4())
        doc = {
            "site": "shop",
            "ad": "4711",
            "name": "apply_complete",
            "url": ORIGIN + "/jobb/4711/takk?ScCid=sc-click-1",
            "event_id": event_id,
            "token": token,
            "channel_ids": {"fbp": "fb.1.1558571054389.1098115397", "scid": "scid-1"},
        }
        assert post(url, "/collect", doc).status_code == 204
        ids.append(event_id)
    return ids


def delivered(channels: RecordingServer) -> Counter[tuple[str, str]]:
    """(channel, event id) for every event in every request a channel accepted."""
    out: Counter[tuple[str, str]] = Counter()
    for r in channels.ok():
        if r.path.startswith("/v3/"):
            out.update(("snapchat", e["event_id"]) for e in r.json()["data"])
        else:
            out.update(("meta", e["event_id"]) for e in orjson.loads(r.form()["data"][0]))
    return out


def wait(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    support.wait(cond, timeout)  # a whole server process per step here: longer than the default


class Proc:
    """``jobpixel serve`` as a child process; its output goes to a file (a full pipe would block it)."""

    def __init__(self, cfg: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = (cfg.parent / f"server-{time.monotonic_ns()}.log").open("wb")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "pixel_server", "serve", "--config", str(cfg)],
            env={**os.environ, **SERVER_SECRETS, **SECRETS},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.p.poll() is None, f"server exited: {Path(self.log.name).read_text()}"
            try:
                r = httpx.get(self.url + "/readyz", timeout=1)
                if r.status_code == 200:
                    body: dict[str, Any] = r.json()
                    return body
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def kill(self, sig: int) -> None:
        self.p.send_signal(sig)
        self.p.wait(timeout=30)
        self.log.close()


def depth(proc: Proc) -> int:
    proc.wait_ready()
    return int(httpx.get(proc.url + "/readyz", headers=OPS, timeout=5).json()["outbox"]["depth"])


def start(cfg: Path, port: int, procs: list[Proc]) -> Proc:
    proc = Proc(cfg, port)
    procs.append(proc)
    proc.wait_ready()
    return proc


def test_sigkilled_server_delivers_queued_events_exactly_once_after_restart(
    tmp_path: Path, channels: RecordingServer, procs: list[Proc]
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, port, channels.url)
    channels.fail(10_000, 503)  # both channels down: the deliveries stay queued, retrying
    first = start(cfg, port, procs)
    ids = marketing_events(first.url, 6)

    def tried_twice() -> bool:
        per_channel = Counter("snapchat" if r.path.startswith("/v3/") else "meta" for r in channels.requests)
        return len(per_channel) == 2 and min(per_channel.values()) >= 2

    wait(tried_twice)
    wait(lambda: depth(first) == 12)  # every delivery queued in the outbox file, none sent
    first.kill(signal.SIGKILL)
    assert channels.ok() == []

    channels.recover()
    second = start(cfg, port, procs)
    expected = {(c, e) for c in ("meta", "snapchat") for e in ids}
    wait(lambda: set(delivered(channels)) == expected)
    wait(lambda: depth(second) == 0)
    time.sleep(0.5)  # the delivery log's rows reach the journal
    second.kill(signal.SIGKILL)  # killed after success ...
    sent_before = len(channels.requests)

    third = start(cfg, port, procs)  # ... and restarted: nothing is sent again
    time.sleep(2.5)
    assert len(channels.requests) == sent_before
    third.kill(signal.SIGTERM)

    got = delivered(channels)
    assert set(got) == expected and all(n == 1 for n in got.values()), got
    # the delivery log (through the journal, into chDB) survived both kills: `jobpixel deliveries`
    env = {**os.environ, **SERVER_SECRETS, **SECRETS}
    for event_id in ids[:2]:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pixel_server",
                "deliveries",
                "--config",
                str(cfg),
                "--event",
                event_id,
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert {r["channel"] for r in rows} == {"meta", "snapchat"}
        assert all(r["status"] == "sent" and r["attempts"] >= 2 and r["http_status"] == 200 for r in rows), (
            rows
        )


def test_a_missing_secret_fails_the_start_naming_it(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, free_port(), "http://127.0.0.1:9")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env |= {**SERVER_SECRETS, "SNAP_TOKEN": SECRETS["SNAP_TOKEN"]}  # META_TOKEN is not set
    p = subprocess.run(
        [sys.executable, "-m", "pixel_server", "serve", "--config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode != 0
    assert "META_TOKEN: missing" in p.stderr, p.stderr
    assert "sites.shop.channels.meta.secret_env" in p.stderr


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; nobody may have reaped it yet


def outbox_status(proc: Proc) -> dict[str, Any]:
    proc.wait_ready()
    status: dict[str, Any] = httpx.get(proc.url + "/readyz", headers=OPS, timeout=5).json()["outbox"]
    return status


def test_delivery_runs_in_its_own_process_which_dies_with_the_server_and_is_restarted_if_killed(
    tmp_path: Path, channels: RecordingServer, procs: list[Proc]
) -> None:
    """forwarding/child.py: the outbox is another process; killed, the server starts another, which
    delivers what was queued; the server killed, it exits too (never an orphan still sending)."""
    port = free_port()
    cfg = write_config(tmp_path, port, channels.url)
    channels.fail(10_000, 503)
    server = start(cfg, port, procs)
    wait(lambda: outbox_status(server).get("process") == "running")
    child = int(outbox_status(server)["pid"])
    assert child != server.p.pid and _alive(child)
    ids = marketing_events(server.url, 2)
    wait(lambda: outbox_status(server)["depth"] == 4)

    os.kill(child, signal.SIGKILL)  # the delivery process dies; the server does not
    wait(lambda: outbox_status(server).get("pid") not in (None, child))
    status = outbox_status(server)
    assert status["restarts"] == 1 and _alive(int(status["pid"]))
    channels.recover()
    expected = {(c, e) for c in ("meta", "snapchat") for e in ids}
    wait(lambda: set(delivered(channels)) == expected)
    assert all(n == 1 for n in delivered(channels).values())

    second_child = int(outbox_status(server)["pid"])
    server.kill(signal.SIGKILL)  # the server dies: its delivery process notices and exits
    wait(lambda: not _alive(second_child), timeout=10)


def test_two_users_never_share_an_outbox_file(tmp_path: Path) -> None:
    """The delivery process, an outbox in the server and an offline erasure all open the file through
    OutboxStore.open, which takes the directory's lock (an orphaned delivery process still holds it)."""
    from pixel_server.forwarding.store import OutboxStore

    held = OutboxStore(tmp_path / "outbox")
    held.open()
    code = (
        "import sys; from pathlib import Path\n"
        "from pixel_server.forwarding.store import OutboxLocked, OutboxStore\n"
        f"s = OutboxStore(Path({str(tmp_path / 'outbox')!r})); s.lock_wait_s = 0.3\n"
        "try:\n    s.open()\nexcept OutboxLocked:\n    sys.exit(7)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 7
    held.close()  # the holder is done: the next one gets it
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0
