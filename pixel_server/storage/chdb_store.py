"""The embedded store: chDB, the ClickHouse engine in-process.

chDB locks its data path: one server process per path (MEASURED.md). Within
the process two connections on the same path run concurrently, one shared
connection serialises, so the writer and the readers each get their own: two
readers, so that two report queries run at once — a dashboard page's two lanes
(dashboards/panels.py), or two requests (two partners' pages, an API call), which
otherwise wait for a free reader.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chdb

from pixel_server.storage.base import (
    READ_SETTINGS,
    StoreBase,
    StoreError,
    StoreLockedError,
    StoreUnavailable,
    check_table,
    insert_error,
    parse_jsonl,
)

if TYPE_CHECKING:
    from pixel_server.core.settings import Settings

# Reader connections: a query takes a free one (each serialises its own queries); each costs ~5 MiB.
READERS = 2

# A deduplication token is formatted into the INSERT (chDB's send_insert binds no parameters).
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")


class _Conn:
    """A chDB connection with a lock: queries on one connection run one at a time."""

    def __init__(self, path: Path) -> None:
        self.lock = threading.Lock()
        self.conn = chdb.connect(str(path))  # type: ignore[no-untyped-call]
        self.open = True
        for key, value in READ_SETTINGS.items():
            self.conn.query(f"SET {key} = '{value}'" if isinstance(value, str) else f"SET {key} = {value}")


class ChdbStore(StoreBase):
    def __init__(self, path: Path, database: str = "jobpixel") -> None:
        self.path = path
        self.database = database
        path.mkdir(parents=True, exist_ok=True)
        self._turn = itertools.count()
        try:
            self._writer = _Conn(path)
            # The insert shares 2 cores with the event loop: one parsing thread, not several.
            self._writer.conn.query("SET max_insert_threads = 1")
            self._writer.conn.query("SET max_threads = 1")
            self._readers = [_Conn(path) for _ in range(READERS)]
        except Exception as exc:
            if "Cannot lock file" in str(exc) or "already running" in str(exc):
                raise StoreLockedError(
                    f"chDB data path {path} is in use by another process. The embedded store allows one "
                    "jobpixel process per data path: stop the other one, or point storage.path elsewhere, "
                    "or use storage.backend = 'clickhouse' to run several processes."
                ) from None
            raise StoreError(f"cannot open chDB at {path}: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> ChdbStore:
        return cls(settings.resolved_chdb_path, settings.database)

    def insert_jsonl(self, table: str, data: bytes, dedup_token: str | None = None) -> None:
        if not data:
            return
        sql = f"INSERT INTO {self.database}.{check_table(table)}"
        if dedup_token is not None:
            if not _TOKEN_RE.match(dedup_token):
                raise StoreError(f"bad deduplication token {dedup_token!r}")
            sql += f" SETTINGS insert_deduplication_token = '{dedup_token}'"  # checked: [A-Za-z0-9._:-]
        with self._writer.lock:
            try:
                self._send_insert(sql, data)
            except Exception as exc:
                raise insert_error(table, exc) from exc

    def _send_insert(self, sql: str, data: bytes) -> None:
        """The raw chDB call (caller holds the writer lock); its errors carry ClickHouse's code."""
        with self._writer.conn.send_insert(sql, "JSONEachRow") as ins:
            ins.append(data)
            ins.finish()

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        sql = sql.replace("${db}", self.database)
        conn = self._take_reader()
        try:
            res = conn.conn.query(sql, "JSONEachRow", params=dict(params or {}))
        except Exception as exc:
            raise StoreError(f"query failed: {exc}") from exc
        finally:
            conn.lock.release()
        return parse_jsonl(res.bytes())

    def _take_reader(self) -> _Conn:
        """A reader connection with its lock held: a free one, else wait for the next in turn."""
        for conn in self._readers:
            if conn.lock.acquire(blocking=False):
                return conn
        conn = self._readers[next(self._turn) % len(self._readers)]
        conn.lock.acquire()
        return conn

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        sql = sql.replace("${db}", self.database)
        with self._writer.lock:
            try:
                self._writer.conn.query(sql, "CSV", params=dict(params or {}))
            except Exception as exc:
                raise StoreError(f"statement failed: {exc}") from exc

    def ping(self) -> None:
        try:
            self.query("SELECT 1 AS ok")
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def close(self) -> None:
        for c in (*self._readers, self._writer):
            with c.lock:
                if c.open:
                    c.open = False
                    c.conn.close()
