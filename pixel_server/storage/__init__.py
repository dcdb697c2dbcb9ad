"""One ClickHouse store, two ways to reach it.

``chdb`` (embedded, default) and ``clickhouse`` (a server through
clickhouse-connect) are chosen by ``storage.backend`` from a registry of
import strings, the way uvicorn picks its HTTP protocol. Both run the same SQL
(``schema/*.sql``) and both implement :class:`Store`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pixel_server.storage.base import RowsRefused, Store, StoreError, StoreLockedError, StoreUnavailable

if TYPE_CHECKING:
    from pixel_server.core.settings import Settings

BACKENDS: dict[str, str] = {
    "chdb": "pixel_server.storage.chdb_store:ChdbStore",
    "clickhouse": "pixel_server.storage.clickhouse_store:ClickHouseStore",
}


def open_store(settings: Settings) -> Store:
    """Open the configured backend (does not migrate)."""
    module_name, _, attr = BACKENDS[settings.storage_backend].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    store: Store = cls.from_settings(settings)
    return store


__all__ = [
    "BACKENDS",
    "RowsRefused",
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreUnavailable",
    "open_store",
]
