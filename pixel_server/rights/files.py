"""A subject's rows in the files beside ClickHouse: un-loaded journal segments and the quarantine.

**Journal segments are blanked in place, never shortened.** Every line of the subject is replaced by
as many spaces as it had bytes (the newline stays); the file is written anew, fsynced and renamed over
the old one. Why not simply drop the lines:

- the loader names every chunk it inserts by ``(node, segment, table, byte range)``, ClickHouse's
  ``insert_deduplication_token``. Shortening a file shifts every later byte range, and a chunk of other
  visitors' rows could then carry a token ClickHouse already saw for other bytes — and be dropped as a
  duplicate: acknowledged rows lost. Same length keeps every range naming the same other rows;
- ClickHouse's JSONEachRow reader skips whitespace between rows, the outbox and the consent index skip a
  line that does not parse: a blank line is no row for any consumer;
- sizes stay what the journal counted (``max_bytes``, lag).

The rewrite runs on the loader's thread (:meth:`Loader.exclusive`), so no load reads a segment half-way
through it, after :meth:`Journal.rotate` sealed the open segment (no write lands in a file being
rewritten). A consumer that read a segment before the rewrite can only have loaded the old lines into
ClickHouse — the erasure deletes there *after* the journal — or queued them in the outbox, which the
erasure purges after that and whose delivery re-checks the (now revoked) grant.

The quarantine is rewritten without the lines (its replay names pieces by a hash of their bytes, so a
shorter file is safe there); a file left empty is removed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from pixel_server.core.journal import Journal, Segment
from pixel_server.storage.loader import write_durably

RowTest = Callable[[str, Mapping[str, Any]], bool]  # (table, row) -> erase it?


def journal_segments(journal: Journal) -> list[Segment]:
    """Every segment still on disk (some consumer has not committed it), the open one sealed first."""
    journal.rotate()
    seen: dict[int, Segment] = {}
    for name in journal.consumers:
        for seg in journal.cursor(name).pending():
            seen.setdefault(seg.seq, seg)
    return [seen[k] for k in sorted(seen)]


def matching_lines(
    data: bytes, table: str, test: RowTest, needles: tuple[bytes, ...] | None
) -> list[tuple[int, int]]:
    """(start, end) of the lines of ``data`` whose row ``test`` picks (``end`` excludes the newline).

    ``needles``: byte strings one of which a picked line must contain (a cheap scan before parsing);
    ``None`` parses every line."""
    out = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break  # a torn last line: never acknowledged, and no consumer reads it
        line = data[pos:end]
        if line.strip() and (needles is None or any(n in line for n in needles)):
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                row = None
            if isinstance(row, dict) and test(table, row):
                out.append((pos, end))
        pos = end + 1
    return out


def blank_journal(
    journal: Journal, test: RowTest, needles: tuple[bytes, ...] | None = None
) -> dict[str, int]:
    """Blank the picked rows in every segment on disk; rows blanked per table."""
    return blank_segments(journal_segments(journal), test, needles)


def blank_segments(
    segments: list[Segment], test: RowTest, needles: tuple[bytes, ...] | None = None
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for seg in segments:
        for table, path in seg.files.items():
            with contextlib.suppress(FileNotFoundError):
                data = path.read_bytes()
                spans = matching_lines(data, table, test, needles)
                if not spans:
                    continue
                buf = bytearray(data)
                for start, end in spans:
                    buf[start:end] = b" " * (end - start)
                write_durably(path, bytes(buf))
                counts[table] = counts.get(table, 0) + len(spans)
    return counts


def purge_quarantine(
    directory: Path, test: RowTest, needles: tuple[bytes, ...] | None = None
) -> dict[str, int]:
    """Drop the picked rows from the quarantine files; rows dropped per table."""
    from pixel_server.storage.quarantine import listing

    counts: dict[str, int] = {}
    for entry in listing(directory):
        data = entry.path.read_bytes()
        spans = matching_lines(data, entry.table, test, needles)
        if not spans:
            continue
        keep = bytearray()
        pos = 0
        for start, end in spans:
            keep += data[pos:start]
            pos = end + 1
        keep += data[pos:]
        if keep.strip():
            write_durably(entry.path, bytes(keep))
        else:
            entry.path.unlink()
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        counts[entry.table] = counts.get(entry.table, 0) + len(spans)
    return counts


def scan_rows(
    journal: Journal, test: RowTest, needles: tuple[bytes, ...] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The picked rows of every segment on disk (read only)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for seg in journal_segments(journal):
        for table, path in seg.files.items():
            with contextlib.suppress(FileNotFoundError):
                data = path.read_bytes()
                for start, end in matching_lines(data, table, test, needles):
                    out.append((table, orjson.loads(data[start:end])))
    return out
