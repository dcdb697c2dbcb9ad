"""A ClickHouse server (or cluster) through clickhouse-connect, at ``CLICKHOUSE_URL``.

The same SQL as the embedded store. On a cluster (``storage.cluster``) the
schema is created ON CLUSTER with Replicated tables behind Distributed ones;
inserts and reads go to the Distributed tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import clickhouse_connect

from pixel_server.storage.base import (
    READ_SETTINGS,
    StoreBase,
    StoreError,
    StoreUnavailable,
    check_table,
    insert_error,
    parse_jsonl,
)

if TYPE_CHECKING:
    from pixel_server.core.settings import Settings

# Explicit timeouts: a store that hangs must look unavailable to the loader (which retries), never
# stall it forever. The read timeout covers a large insert on a busy server.
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60


class ClickHouseStore(StoreBase):
    def __init__(self, url: str, database: str = "jobpixel", cluster: str | None = None) -> None:
        self.database = database
        self.cluster = cluster
        # On a cluster the spool segment is deleted after the insert returns, so the insert must
        # return only once the rows are on a majority of replicas, not queued by Distributed.
        # (Not exercised here: no ClickHouse cluster can run on these machines.)
        self._insert_settings: dict[str, object] = (
            {"distributed_foreground_insert": 1, "insert_quorum": "auto"} if cluster else {}
        )
        try:
            self._client = clickhouse_connect.get_client(
                dsn=url,
                database="default",
                autogenerate_session_id=False,
                connect_timeout=CONNECT_TIMEOUT_S,
                send_receive_timeout=READ_TIMEOUT_S,
            )
        except Exception as exc:
            raise StoreUnavailable(f"cannot reach ClickHouse at CLICKHOUSE_URL: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> ClickHouseStore:
        assert settings.clickhouse_url is not None
        return cls(settings.clickhouse_url, settings.database, settings.cluster)

    def insert_jsonl(self, table: str, data: bytes, dedup_token: str | None = None) -> None:
        if not data:
            return
        settings = dict(self._insert_settings)
        if dedup_token is not None:
            settings["insert_deduplication_token"] = dedup_token  # sent as a bound query setting
        try:
            self._client.raw_insert(
                f"{self.database}.{check_table(table)}",
                insert_block=data,
                settings=settings,
                fmt="JSONEachRow",
            )
        except Exception as exc:
            raise insert_error(table, exc) from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        sql = sql.replace("${db}", self.database)
        try:
            data = self._client.raw_query(
                sql, parameters=dict(params or {}), settings=READ_SETTINGS, fmt="JSONEachRow"
            )
        except Exception as exc:
            raise StoreError(f"query failed: {exc}") from exc
        return parse_jsonl(data)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        sql = sql.replace("${db}", self.database)
        try:
            self._client.command(sql, parameters=dict(params or {}))
        except Exception as exc:
            raise StoreError(f"statement failed: {exc}") from exc

    def ping(self) -> None:
        if not self._client.ping():
            raise StoreUnavailable("ClickHouse did not answer ping")

    def close(self) -> None:
        self._client.close()
