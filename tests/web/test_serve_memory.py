"""``jobpixel serve`` keeps pyarrow (and numpy) out of its process (issue #7: peak RSS; bench/README.md).

chDB's connection module imports pyarrow whenever it is installed, which maps ~40 MiB that
jobpixel never uses. The served process must still do all its work without it.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pixel_server.storage.chdb_store import ChdbStore
from tests.harness import DESKTOP_UA, free_port
from tests.storage.test_durability import ORIGIN, Proc, write_config


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Proc]:
    port = free_port()
    proc = Proc(write_config(tmp_path, port, flush_interval_ms=50), port)
    try:
        proc.wait_ready()  # /readyz pings the store: chDB's connections are open by now
        yield proc
    finally:
        if proc.p.poll() is None:
            proc.kill(signal.SIGKILL)


def mapped_libraries(pid: int) -> set[str]:
    paths = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            paths.add(parts[5])
    return paths


def test_the_served_process_maps_neither_pyarrow_nor_numpy_and_still_stores(
    server: Proc, tmp_path: Path
) -> None:
    event = {
        "site": "s",
        "ad": "7",
        "name": "pageview",
        "url": f"{ORIGIN}/jobb/7",
        "event_id": str(uuid.uuid4()),
    }
    event["token"] = server.statistics_token()
    headers = {"Content-Type": "text/plain", "Origin": ORIGIN, "User-Agent": DESKTOP_UA}
    assert httpx.post(server.url + "/collect", content=json.dumps(event), headers=headers).status_code == 204

    libraries = mapped_libraries(server.p.pid)
    assert any("chdb" in p for p in libraries), "the test reads the wrong process: chDB is not mapped"
    assert not [p for p in libraries if "/pyarrow/" in p or "/numpy" in p]

    # chDB still does its work in that process: the event is loaded (journal drained), then stored.
    server.wait_drained()
    server.kill(signal.SIGTERM)
    store = ChdbStore(tmp_path / "data" / "chdb")
    try:
        assert store.query("SELECT event_id FROM ${db}.events FINAL") == [{"event_id": event["event_id"]}]
    finally:
        store.close()
