"""The store protocol: what every ClickHouse backend offers (``pixel_server.storage`` has them).

SQL values are always bound by the driver as ``{name:Type}`` parameters, never formatted in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class StoreError(RuntimeError):
    """The store could not be reached or refused a statement."""


class StoreLockedError(StoreError):
    """The embedded store's data path is held by another process."""


class Store(Protocol):
    database: str

    def migrate(self) -> list[str]:
        """Apply pending schema versions; return the names applied now."""
        ...

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows (JSON-ready dicts) into an allow-listed table."""
        ...

    def insert_jsonl(self, table: str, data: bytes) -> None:
        """Insert JSONEachRow bytes as they are (the spool's segments) into an allow-listed table."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a read; ``${db}`` in ``sql`` is the configured database."""
        ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, mutations)."""
        ...

    def ping(self) -> None:
        """Raise :class:`StoreError` unless the store answers."""
        ...

    def close(self) -> None: ...


class Loader(Protocol):
    """The journal consumer that loads ClickHouse (``pixel_server.storage.loader``)."""

    last_error: str | None

    def nudge(self) -> None: ...

    async def flush(self) -> int: ...

    async def next_flush(self, timeout: float = 2.0) -> None: ...

    async def stop(self) -> None: ...
