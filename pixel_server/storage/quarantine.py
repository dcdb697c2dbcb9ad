"""``journal/quarantine/``: rows ClickHouse refused (parse or type errors), kept to be fixed and loaded.

The loader writes ``<segment>.<table>.jsonl`` files there. ``jobpixel quarantine
list`` shows them; ``jobpixel quarantine replay`` (server stopped, schema migrated
first) loads every line ClickHouse now takes and keeps the rest. Replayed pieces are
named by a hash of their bytes, so replaying twice, or after a crash half-way, loads
each row once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pixel_server.core.store import Store
from pixel_server.storage.base import TABLES
from pixel_server.storage.loader import chunks, insert_bisecting, write_durably

_NAME_RE = re.compile(r"^(\d{12})\.([a-z_]+)\.jsonl$")
REPLAY_CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class Entry:
    path: Path
    table: str
    rows: int
    nbytes: int


@dataclass(frozen=True)
class Replayed:
    loaded: int
    refused: int


def listing(directory: Path) -> list[Entry]:
    out = []
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            m = _NAME_RE.match(path.name)
            if m and m.group(2) in TABLES:
                data = path.read_bytes()
                out.append(Entry(path, m.group(2), data.count(b"\n"), len(data)))
    return out


def replay(directory: Path, store: Store) -> Replayed:
    """Load what ClickHouse now takes; rewrite each file with what it still refuses (or delete it)."""
    loaded = refused = 0
    for entry in listing(directory):
        data = entry.path.read_bytes()
        end_of_lines = data.rfind(b"\n") + 1
        data = data[:end_of_lines]
        still: list[bytes] = []
        for start, end, _ in chunks(data, REPLAY_CHUNK_ROWS):
            still += insert_bisecting(store, entry.table, data, start, end, _content_token(data))
        kept = sum(piece.count(b"\n") for piece in still)
        loaded += entry.rows - kept
        refused += kept
        if still:
            write_durably(entry.path, b"".join(still))
        else:
            entry.path.unlink()
    return Replayed(loaded, refused)


def _content_token(data: bytes) -> Callable[[int, int], str]:
    return lambda start, end: "quarantine:" + hashlib.sha256(data[start:end]).hexdigest()[:40]
