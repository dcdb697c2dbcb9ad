"""A 2xx means on disk: a real server process killed with SIGKILL loses no acknowledged event."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pixel_server.storage.chdb_store import ChdbStore
from tests.harness import DESKTOP_UA, SECRETS, free_port

ORIGIN = "https://jobs.example.test"


def write_config(tmp: Path, port: int, flush_interval_ms: int) -> Path:
    cfg = tmp / "jobpixel.toml"
    cfg.write_text(
        f"""
[server]
port = {port}
data_dir = "{tmp / "data"}"
[storage]
backend = "chdb"
flush_interval_ms = {flush_interval_ms}
[partners.p]
name = "P"
[sites.s]
partner = "p"
origins = ["{ORIGIN}"]
"""
    )
    return cfg


class Proc:
    def __init__(self, cfg: Path, port: int) -> None:
        env = {**os.environ, **SECRETS}
        self.url = f"http://127.0.0.1:{port}"
        self.p = subprocess.Popen(
            [sys.executable, "-m", "pixel_server", "serve", "--config", str(cfg)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 30) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f"server exited: {self.p.stderr.read() if self.p.stderr else ''}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=1)
                if r.status_code == 200:
                    body: dict[str, object] = r.json()
                    return body
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def kill(self, sig: int) -> None:
        self.p.send_signal(sig)
        self.p.wait(timeout=30)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for pr in started:
        if pr.p.poll() is None:
            pr.kill(signal.SIGKILL)


def test_sigkill_right_after_acknowledging_loses_nothing(tmp_path: Path, procs: list[Proc]) -> None:
    port = free_port()
    # A long flush interval: at the kill every acknowledged event is only in the spool.
    cfg = write_config(tmp_path, port, flush_interval_ms=60_000)
    server = Proc(cfg, port)
    procs.append(server)
    server.wait_ready()
    consent = {
        "site": "s",
        "consent_id": str(uuid.uuid4()),
        "choice_id": str(uuid.uuid4()),
        "action": "accept_all",
        "granted": ["necessary", "statistics"],
        "denied": ["marketing"],
    }
    token = httpx.post(
        server.url + "/consent", content=json.dumps(consent), headers={"Origin": ORIGIN}
    ).json()["token"]
    headers = {"Content-Type": "text/plain", "Origin": ORIGIN, "User-Agent": DESKTOP_UA}

    def send(i: int) -> list[str]:
        batch = [
            {
                "site": "s",
                "ad": str(i),
                "name": "pageview",
                "url": f"{ORIGIN}/jobb/{i}",
                "event_id": str(uuid.uuid4()),
                "token": token,
            }
            for _ in range(1 + i % 3)
        ]
        r = httpx.post(server.url + "/collect", content=json.dumps(batch), headers=headers, timeout=10)
        return [e["event_id"] for e in batch] if r.status_code == 204 else []

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        acked = [eid for ids in pool.map(send, range(300)) for eid in ids]
    server.kill(signal.SIGKILL)  # no shutdown, no flush
    assert len(acked) == sum(1 + i % 3 for i in range(300))
    assert list((tmp_path / "data" / "journal").glob("*.jsonl")), "acknowledged events must be in the spool"

    restarted = Proc(write_config(tmp_path, port, flush_interval_ms=100), port)
    procs.append(restarted)
    ready = restarted.wait_ready()
    assert ready["spool_rows"] in (0, len(acked) + 1)  # 1 consent row; maybe already drained
    deadline = time.monotonic() + 30
    while httpx.get(restarted.url + "/readyz").json()["spool_rows"] and time.monotonic() < deadline:
        time.sleep(0.1)
    restarted.kill(signal.SIGTERM)
    assert restarted.p.stderr is not None
    assert (
        "Application shutdown complete" in restarted.p.stderr.read()
    )  # graceful (uvicorn re-raises SIGTERM)

    store = ChdbStore(tmp_path / "data" / "chdb")
    try:
        stored = {r["event_id"] for r in store.query("SELECT event_id FROM ${db}.events FINAL")}
        consent_rows = store.query("SELECT count() AS n FROM ${db}.consent_log FINAL")[0]["n"]
    finally:
        store.close()
    assert stored == set(acked)
    assert consent_rows == 1


def test_second_process_on_the_same_chdb_path_fails_clearly(tmp_path: Path, procs: list[Proc]) -> None:
    port = free_port()
    cfg = write_config(tmp_path, port, flush_interval_ms=500)
    first = Proc(cfg, port)
    procs.append(first)
    first.wait_ready()
    second = Proc(cfg, free_port())
    procs.append(second)
    assert second.p.wait(timeout=30) != 0
    assert second.p.stderr is not None
    err = second.p.stderr.read()
    assert "in use by another jobpixel process" in err and "one process per data path" in err
    assert httpx.get(first.url + "/readyz").status_code == 200  # the first one is unharmed
