"""The store protocol: what every ClickHouse backend offers (``pixel_server.storage`` has them).

SQL values are always bound by the driver as ``{name:Type}`` parameters, never formatted in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

_T = TypeVar("_T")


class StoreError(RuntimeError):
    """The store could not be reached or refused a statement.

    Inserts raise one of the two subclasses, and the loader treats them oppositely:

    - :class:`StoreUnavailable`: the store cannot take rows now (unreachable, timeout, read-only
      replica, TOO_MANY_PARTS, disk full, or any error not known to be about the rows). The rows
      are fine: keep them and retry, however long it takes.
    - :class:`RowsRefused`: ClickHouse could not parse or convert the rows themselves. Only these
      are bisected and the bad lines quarantined.
    """


class StoreUnavailable(StoreError):
    """The store cannot take rows now; retry later with the same rows."""


class RowsRefused(StoreError):
    """ClickHouse refused the rows themselves (a parse or type error): retrying cannot help."""


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

    def insert_jsonl(self, table: str, data: bytes, dedup_token: str | None = None) -> None:
        """Insert JSONEachRow bytes as they are (journal chunks) into an allow-listed table.

        ``dedup_token`` becomes ClickHouse's ``insert_deduplication_token``: a second insert with
        the same token is dropped by ClickHouse itself. Raises :class:`StoreUnavailable` or
        :class:`RowsRefused`."""
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

    async def start(self) -> None: ...

    def nudge(self) -> None: ...

    async def flush(self) -> int: ...

    async def next_flush(self, timeout: float = 2.0) -> None: ...

    async def stop(self) -> None: ...

    async def exclusive(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` where no load interleaves (the loader's thread)."""
        ...
