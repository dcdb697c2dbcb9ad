"""``jobpixel quarantine list|replay`` as an operator runs it: a real process on a real data_dir."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson

from pixel_server.storage.chdb_store import ChdbStore
from tests.harness import SIGNING_KEY, free_port
from tests.storage.test_durability import write_config


def jobpixel(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBPIXEL_SIGNING_KEYS": SIGNING_KEY}
    return subprocess.run(
        [sys.executable, "-m", "pixel_server", *args], env=env, capture_output=True, text=True, timeout=120
    )


def event(**over: object) -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),
        "site_id": "s",
        "ts": round(time.time(), 3),
        "visitor_id": str(uuid.uuid4()),
        "retention_days": 30,
        **over,
    }


def test_list_then_replay_loads_what_loads_and_keeps_the_rest(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, free_port(), flush_interval_ms=500)
    qdir = tmp_path / "data" / "journal" / "quarantine"
    qdir.mkdir(parents=True)
    good, bad = event(), event(scroll_pct="not a number")
    (qdir / "000000000003.events.jsonl").write_bytes(orjson.dumps(good) + b"\n" + orjson.dumps(bad) + b"\n")

    listed = jobpixel("quarantine", "list", "--config", str(cfg))
    assert listed.returncode == 0, listed.stderr
    assert "000000000003.events.jsonl\tevents\t2 rows" in listed.stdout
    assert "1 file(s), 2 row(s)" in listed.stdout

    replayed = jobpixel("quarantine", "replay", "--config", str(cfg))
    assert replayed.returncode == 1, replayed.stderr  # not everything loaded: says so
    assert "1 row(s) loaded, 1 still refused (kept)" in replayed.stdout
    kept = (qdir / "000000000003.events.jsonl").read_bytes()
    assert orjson.loads(kept)["event_id"] == bad["event_id"]

    store = ChdbStore(tmp_path / "data" / "chdb")
    try:
        assert [r["event_id"] for r in store.query("SELECT event_id FROM ${db}.events")] == [good["event_id"]]
    finally:
        store.close()
