"""The journal: group commit, segments, consumers' cursors, limits and the lock, against real files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from pixel_server.core.journal import Journal, JournalError, JournalFull, JournalLocked
from tests.harness import run_async


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"i": start + k} for k in range(n)]


def read_all(spool: Journal, table: str = "events", consumer: str = "loader") -> list[int]:
    out = []
    for seg in spool.cursor(consumer).pending():
        tables, _ = seg.read()
        out += [orjson.loads(line)["i"] for line in tables.get(table, b"").splitlines()]
    return out


def test_group_commit_makes_many_requests_durable_with_few_fsyncs(tmp_path: Path) -> None:
    groups: list[int] = []
    spool = Journal(tmp_path, on_commit=lambda s, n: groups.append(n))

    async def main() -> None:
        await asyncio.gather(*(spool.append("events", rows(1, i)) for i in range(200)))

    run_async(main())
    assert sum(groups) == 200
    assert len(groups) < 200 / 4, groups  # concurrent requests share fsyncs
    spool.rotate()
    assert sorted(read_all(spool)) == list(range(200))
    assert spool.rows_pending == 200
    spool.close()


def test_tables_go_to_their_own_files_in_one_commit(tmp_path: Path) -> None:
    spool = Journal(tmp_path)

    async def main() -> None:
        await asyncio.gather(spool.append("events", rows(2)), spool.append("consent_log", rows(1, 7)))

    run_async(main())
    spool.rotate()
    [seg] = spool.cursor("loader").pending()
    assert set(seg.files) == {"events", "consent_log"}
    assert read_all(spool) == [0, 1] and read_all(spool, "consent_log") == [7]


def test_leftover_segments_are_sealed_on_start_without_reading_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Journal(tmp_path)
    run_async(first.append("events", rows(3)))
    # no rotate, no close: as after SIGKILL
    size = sum(p.stat().st_size for p in tmp_path.glob("*.jsonl"))

    def no_reading(self: Path) -> bytes:
        raise AssertionError(f"start-up read {self}")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    second = Journal(tmp_path)
    monkeypatch.undo()
    assert second.cursor("loader").lag() == (0, size)  # bytes exact; rows of old segments uncounted
    assert second.bytes_on_disk == size
    assert read_all(second) == [0, 1, 2]


def test_torn_last_line_is_skipped_and_the_rest_loads(tmp_path: Path) -> None:
    spool = Journal(tmp_path)
    run_async(spool.append("events", rows(2)))
    spool.rotate()
    [seg] = spool.cursor("loader").pending()
    with seg.files["events"].open("ab") as fh:
        fh.write(b'{"i":99')  # a crash in the middle of a write
    tables, torn = seg.read()
    assert tables["events"] == b'{"i":0}\n{"i":1}\n' and torn == 1


def test_failed_write_is_reported_and_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Journal(tmp_path)
    run_async(spool.append("events", rows(1)))
    real_write = os.write
    calls = {"n": 0}

    def half_then_fail(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))  # a partial write ...
        raise OSError(28, "No space left on device")  # ... then the disk is full

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(JournalError, match="No space left"):
        run_async(spool.append("events", rows(1, 1)))
    monkeypatch.setattr(os, "write", real_write)
    run_async(spool.append("events", rows(1, 2)))
    spool.rotate()
    assert read_all(spool) == [0, 2]  # the failed group left no torn line behind


def test_acknowledged_only_after_fdatasync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 204 promise itself: ``append`` returns only once fdatasync of its file returned."""
    real = os.fdatasync
    gate = threading.Event()
    synced: list[int] = []

    def slow_sync(fd: int) -> None:
        gate.wait(5)
        real(fd)
        synced.append(fd)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    spool = Journal(tmp_path)

    async def main() -> tuple[bool, bool]:
        task = asyncio.create_task(spool.append("events", rows(1)))
        await asyncio.sleep(0.3)
        before = task.done()
        gate.set()
        await asyncio.wait_for(task, 5)
        return before, task.done()

    before, after = run_async(main())
    assert (before, after) == (False, True)
    assert synced, "fdatasync was never called"
    spool.close()


def test_a_new_segment_file_is_acknowledged_only_after_its_directory_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new file's name must survive a crash too: its directory's fsync runs on the sync thread (never
    on the loop: it took ms under load) and the append returns only after it, for each new segment."""
    import pixel_server.core.journal as journal_mod

    real = journal_mod._fsync_dir
    gate = threading.Event()
    calls: list[tuple[Path, str]] = []

    def slow_dir_sync(directory: Path) -> None:
        calls.append((directory, threading.current_thread().name))
        gate.wait(5)
        real(directory)

    monkeypatch.setattr(journal_mod, "_fsync_dir", slow_dir_sync)
    gate.set()
    spool = Journal(tmp_path)  # opening syncs the cursors' directory on the caller's thread: not counted
    calls.clear()

    async def main() -> list[bool]:
        seen = []
        for _ in range(2):  # the first segment, then a second one after a rotation
            gate.clear()
            task = asyncio.create_task(spool.append("events", rows(1)))
            await asyncio.sleep(0.3)
            seen.append(task.done())
            gate.set()
            await asyncio.wait_for(task, 5)
            seen.append(task.done())
            spool.rotate()
        return seen

    assert run_async(main()) == [False, True, False, True]
    segment_syncs = [name for directory, name in calls if directory == tmp_path]
    assert segment_syncs == ["jobpixel-journal-sync"] * 2, calls
    spool.close()


def test_depth_counters_survive_a_load_before_the_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the loader removed a segment before its group's fdatasync returned, and the
    late acknowledgement added the rows back: /readyz showed a spool that was empty."""
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (time.sleep(0.1), real(fd))[1])
    spool = Journal(tmp_path)

    async def main() -> None:
        task = asyncio.create_task(spool.append("events", rows(3)))
        await asyncio.sleep(0.02)  # written, not yet synced
        spool.rotate()
        [seg] = spool.cursor("loader").pending()
        tables, _ = seg.read()
        spool.cursor("loader").commit(seg)  # what the loader does after a successful insert
        await task

    run_async(main())
    assert (spool.rows_pending, spool.bytes_pending) == (0, 0)
    assert spool.cursor("loader").lag() == (0, 0) and spool.bytes_on_disk == 0
    assert not list(tmp_path.glob("*.jsonl"))
    spool.close()


def test_rotates_by_size(tmp_path: Path) -> None:
    spool = Journal(tmp_path, segment_bytes=4096)

    async def main() -> None:
        for i in range(100):
            await spool.append("events", [{"i": i, "pad": "x" * 200}])

    run_async(main())
    segments = spool.cursor("loader").pending()
    assert len(segments) >= 4  # ~21 KB in segments of ~4 KB, sealed without anyone asking
    assert all(seg.size < 4096 + 300 for seg in segments)
    spool.rotate()
    assert read_all(spool) == list(range(100))
    spool.close()


def test_rotates_by_time(tmp_path: Path) -> None:
    spool = Journal(tmp_path, segment_seconds=0.2)

    async def main() -> int:
        await spool.append("events", rows(1))
        before = len(spool.cursor("loader").pending())
        await asyncio.sleep(0.5)
        return before

    assert run_async(main()) == 0
    assert len(spool.cursor("loader").pending()) == 1  # sealed by age, no rotate() call
    spool.close()


def test_a_segment_goes_only_when_every_consumer_is_past_it(tmp_path: Path) -> None:
    spool = Journal(tmp_path, ("loader", "outbox"))
    run_async(spool.append("events", rows(2)))
    spool.rotate()
    run_async(spool.append("events", rows(1, 2)))
    spool.rotate()
    loader, outbox = spool.cursor("loader"), spool.cursor("outbox")
    first, second = loader.pending()
    loader.commit(first)
    loader.commit(second)
    assert loader.pending() == [] and len(outbox.pending()) == 2
    assert first.files["events"].exists()  # the outbox still needs it
    outbox.commit(first)
    assert not first.files["events"].exists() and second.files["events"].exists()
    spool.close()
    # cursors are durable: a restart resumes each consumer where it was
    again = Journal(tmp_path, ("loader", "outbox"))
    assert again.cursor("loader").pending() == []
    assert [s.seq for s in again.cursor("outbox").pending()] == [second.seq]
    again.close()


def test_a_new_consumer_starts_at_the_oldest_segment_kept(tmp_path: Path) -> None:
    spool = Journal(tmp_path)
    for i in range(3):
        run_async(spool.append("events", rows(1, i)))
        spool.rotate()
    loader = spool.cursor("loader")
    loader.commit(loader.pending()[0])  # segment 1 is gone; 2 and 3 are kept
    spool.close()
    grown = Journal(tmp_path, ("loader", "outbox"))  # adding a consumer is one word
    assert read_all(grown, consumer="outbox") == [1, 2]
    assert read_all(grown, consumer="loader") == [1, 2]
    with pytest.raises(KeyError):
        grown.cursor("erasure")
    grown.close()


def test_segment_numbers_never_go_back(tmp_path: Path) -> None:
    """A chunk's dedup token names (node, segment): reusing a number would make ClickHouse drop new rows."""
    spool = Journal(tmp_path)
    run_async(spool.append("events", rows(1)))
    spool.rotate()
    [seg] = spool.cursor("loader").pending()
    spool.cursor("loader").commit(seg)
    node = spool.node_id
    spool.close()
    assert not list(tmp_path.glob("*.jsonl"))  # nothing left to number from
    again = Journal(tmp_path)
    run_async(again.append("events", rows(1)))
    again.rotate()
    [new] = again.cursor("loader").pending()
    assert new.seq > seg.seq and again.node_id == node
    again.close()


def test_over_max_bytes_appends_are_refused_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    spool = Journal(tmp_path, max_bytes=4096, segment_bytes=1024)
    acked: list[int] = []

    async def fill() -> JournalFull:
        for i in range(1000):
            try:
                await spool.append("events", [{"i": i, "pad": "x" * 100}])
            except JournalFull as exc:
                return exc
            acked.append(i)
        raise AssertionError("never full")

    exc = run_async(fill())
    assert "max_bytes" in str(exc) and spool.full
    assert 4096 / 120 <= len(acked) < 4096 / 100 + 2  # stopped at the limit (one group may pass it)
    spool.rotate()
    assert read_all(spool) == acked  # every acknowledged row is still there
    with pytest.raises(JournalFull):
        run_async(spool.append("events", rows(1, 5000)))
    loader = spool.cursor("loader")
    for seg in loader.pending():  # the consumer catches up: room again
        loader.commit(seg)
    assert spool.full is None
    run_async(spool.append("events", rows(1, 5000)))
    spool.close()


def test_under_the_free_disk_reserve_appends_are_refused(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    spool = Journal(tmp_path, reserve_bytes=st.f_bavail * st.f_frsize * 2)
    with pytest.raises(JournalFull, match="reserve_bytes"):
        run_async(spool.append("events", rows(1)))
    assert not list(tmp_path.glob("*.jsonl"))
    spool.close()


def test_a_second_process_cannot_open_the_journal(tmp_path: Path) -> None:
    spool = Journal(tmp_path)
    probe = (
        "import sys; from pathlib import Path; from pixel_server.core.journal import Journal, JournalLocked\n"
        "try:\n    Journal(Path(sys.argv[1]))\nexcept JournalLocked as e:\n    print(e); sys.exit(7)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 7, r.stderr
    assert "in use by another jobpixel process" in r.stdout
    spool.close()  # released: now it opens
    r = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert JournalLocked.__mro__[1] is JournalError
