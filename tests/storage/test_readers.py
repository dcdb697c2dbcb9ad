"""The embedded store's readers: two report requests run at once, not one after the other."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pixel_server.storage.chdb_store import READERS, ChdbStore


def test_a_quick_query_is_not_held_behind_a_slow_one(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb")
    try:
        assert READERS >= 2
        finished: list[str] = []
        slow = threading.Thread(
            target=lambda: (store.query("SELECT sleep(2) AS s"), finished.append("slow")), daemon=True
        )
        slow.start()
        time.sleep(0.3)  # the slow query holds one reader now
        assert store.query("SELECT 42 AS x") == [{"x": 42}]
        finished.append("quick")
        slow.join(timeout=30)
        assert finished == ["quick", "slow"]  # one reader would have answered the quick one second
    finally:
        store.close()
