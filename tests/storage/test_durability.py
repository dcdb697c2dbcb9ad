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
from tests.harness import DESKTOP_UA, OPS, SECRETS, free_port

ORIGIN = "https://jobs.example.test"


def write_config(tmp: Path, port: int, flush_interval_ms: int, backend: str = "chdb") -> Path:
    cfg = tmp / "jobpixel.toml"
    cfg.write_text(
        f"""
[server]
port = {port}
data_dir = "{tmp / "data"}"
[storage]
backend = "{backend}"
flush_interval_ms = {flush_interval_ms}
[limits]
grant_rate_per_s = 0  # one visitor sends all the load here: durability, not abuse limits, is tested
[partners.p]
name = "P"
[sites.s]
partner = "p"
origins = ["{ORIGIN}"]
"""
    )
    return cfg


class Proc:
    def __init__(self, cfg: Path, port: int, **env_extra: str) -> None:
        env = {**os.environ, **SECRETS, **env_extra}
        self.url = f"http://127.0.0.1:{port}"
        self.p = subprocess.Popen(
            [sys.executable, "-m", "pixel_server", "serve", "--config", str(cfg)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 30, path: str = "/readyz") -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f"server exited: {self.p.stderr.read() if self.p.stderr else ''}")
            try:
                r = httpx.get(self.url + path, timeout=1, headers=OPS)
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

    def statistics_token(self, site: str = "s") -> str:
        """A grant for statistics (no marketing) from this server's ``POST /consent``."""
        consent = {
            "site": site,
            "consent_id": str(uuid.uuid4()),
            "choice_id": str(uuid.uuid4()),
            "action": "accept_all",
            "granted": ["necessary", "statistics"],
            "denied": ["marketing"],
        }
        r = httpx.post(self.url + "/consent", content=json.dumps(consent), headers={"Origin": ORIGIN})
        token: str = r.json()["token"]
        return token

    def wait_drained(self, timeout: float = 30) -> None:
        """Until ``/readyz`` reports an empty journal (everything loaded into the store), or ``timeout``."""
        deadline = time.monotonic() + timeout
        while (
            httpx.get(self.url + "/readyz", headers=OPS).json()["spool_bytes"] and time.monotonic() < deadline
        ):
            time.sleep(0.05)


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
    token = server.statistics_token()
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
    restarted.wait_ready()
    restarted.wait_drained()
    assert not list((tmp_path / "data" / "journal").glob("*.jsonl")), "the journal was loaded"
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


def test_second_process_on_the_same_data_dir_fails_clearly_with_a_clickhouse_server_too(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """Main let two processes share one journal with the clickhouse backend (no chDB lock to stop
    them), and acknowledged events were lost. The store is down here: the lock does not need it."""
    dead_store = {"CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}/"}
    port = free_port()
    cfg = write_config(tmp_path, port, flush_interval_ms=500, backend="clickhouse")
    first = Proc(cfg, port, **dead_store)
    procs.append(first)
    first.wait_ready(path="/healthz")
    second = Proc(cfg, free_port(), **dead_store)
    procs.append(second)
    assert second.p.wait(timeout=30) == 3
    assert second.p.stderr is not None
    err = second.p.stderr.read()
    assert f"data_dir {tmp_path / 'data'} is in use by another jobpixel process (pid {first.p.pid})" in err
    assert "Traceback" not in err
    assert httpx.get(first.url + "/healthz").status_code == 200  # the first one is unharmed
