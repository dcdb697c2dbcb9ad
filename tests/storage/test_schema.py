"""The one schema, run by both backends: migrations, cluster DDL, retention by TTL, dedup."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pixel_server.storage.base import Store, load_migrations, render
from pixel_server.storage.chdb_store import ChdbStore

SCHEMA_DIR = Path(__file__).parents[2] / "pixel_server" / "storage" / "schema"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChdbStore]:
    st = ChdbStore(tmp_path / "chdb", "jp_test")
    yield st
    st.close()


def event_row(days_ago: float = 0, retention_days: int = 395, **over: Any) -> dict[str, Any]:
    ts = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    return {
        "event_id": str(uuid.uuid4()),
        "site_id": "s",
        "ad_id": "1",
        "name": "pageview",
        "ts": ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        "visitor_id": str(uuid.uuid4()),
        "url": "https://x.no/",
        "retention_days": retention_days,
        **over,
    }


def test_migrations_are_versioned_and_idempotent(store: ChdbStore) -> None:
    schema_files = sorted(p.name[:-4] for p in SCHEMA_DIR.glob("*.sql"))
    assert store.migrate() == schema_files
    assert schema_files[0] == "0001_init" and {"0002_grant", "0004_delivery_log", "0005_dedup"} <= set(
        schema_files
    )
    assert store.migrate() == []
    versions = store.query("SELECT version, name FROM ${db}.schema_migrations FINAL ORDER BY version")
    assert [f"{v['version']:04d}_{v['name']}" for v in versions] == schema_files
    for mig in load_migrations("jp_test"):  # every statement runs again without harm
        for stmt in mig.statements:
            store.execute(stmt)
    tables = {r["name"] for r in store.query("SELECT name FROM system.tables WHERE database = 'jp_test'")}
    assert {"events", "consent_log", "schema_migrations"} <= tables


def test_events_table_shape(store: ChdbStore) -> None:
    store.migrate()
    [t] = store.query(
        "SELECT engine, partition_key, sorting_key, create_table_query FROM system.tables "
        "WHERE database = 'jp_test' AND name = 'events'"
    )
    assert t["engine"] == "ReplacingMergeTree"
    assert t["partition_key"] == "toYYYYMM(ts)"
    assert t["sorting_key"] == "site_id, ad_id, toDate(ts), event_id"
    assert "TTL toDateTime(ts) + toIntervalDay(retention_days)" in t["create_table_query"]
    # the spool segment is deleted after the insert: ClickHouse must have fsynced the part
    assert "fsync_after_insert = 1" in t["create_table_query"]
    assert "fsync_part_directory = 1" in t["create_table_query"]


def test_ttl_deletes_by_each_rows_retention(store: ChdbStore) -> None:
    store.migrate()
    old_short = event_row(days_ago=40, retention_days=30)
    old_long = event_row(days_ago=40, retention_days=395)
    store.insert("events", [old_short, old_long, event_row()])
    store.execute("OPTIMIZE TABLE ${db}.events FINAL")  # TTL is applied on merge
    left = {r["event_id"] for r in store.query("SELECT event_id FROM ${db}.events")}
    assert old_short["event_id"] not in left and old_long["event_id"] in left and len(left) == 2


def test_replayed_event_id_counts_once(store: ChdbStore) -> None:
    store.migrate()
    row = event_row()
    store.insert("events", [row])
    store.insert("events", [{**row, "ts": row["ts"][:-3] + "999"}])  # a retry seconds later
    assert store.query("SELECT count() AS n FROM ${db}.events FINAL")[0]["n"] == 1


def test_values_are_bound_never_formatted(store: ChdbStore) -> None:
    store.migrate()
    store.insert("events", [event_row(site_id="it's; DROP TABLE x")])
    rows = store.query(
        "SELECT site_id FROM ${db}.events WHERE site_id = {s:String}", {"s": "it's; DROP TABLE x"}
    )
    assert rows == [{"site_id": "it's; DROP TABLE x"}]
    with pytest.raises(Exception, match="unknown table"):
        store.insert("system.users", [{}])


def test_cluster_ddl() -> None:
    statements = [s for m in load_migrations("jp", cluster="jobs") for s in m.statements]
    sql = "\n".join(statements)
    assert "CREATE DATABASE IF NOT EXISTS jp ON CLUSTER jobs" in sql
    assert "CREATE TABLE IF NOT EXISTS jp.events_local ON CLUSTER jobs" in sql
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/jp/{table}', '{replica}')" in sql
    )
    assert (
        "CREATE TABLE IF NOT EXISTS jp.events ON CLUSTER jobs AS jp.events_local "
        "ENGINE = Distributed(jobs, jp, events_local, sipHash64(event_id))" in sql
    )
    assert "Distributed(jobs, jp, consent_log_local, sipHash64(consent_id))" in sql
    assert (  # the dedup window goes on the tables that hold the parts, not the Distributed ones
        "ALTER TABLE jp.events_local ON CLUSTER jobs MODIFY SETTING non_replicated_deduplication_window"
        in sql
    )
    # report rollups (0006): the view reads the local events and writes the local rollup on each shard
    assert (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS jp.report_hourly_mv_local ON CLUSTER jobs\n"
        "TO jp.report_hourly_local" in sql
    )
    assert "FROM jp.events_local" in sql
    assert "Distributed(jobs, jp, report_hourly_local, sipHash64(site_id))" in sql
    single = render(
        "${db}.${table:events} ${on_cluster} ${engine:ReplacingMergeTree}\n-- distributed: events k", "jp"
    )
    assert single.strip() == "jp.events  ReplacingMergeTree"


@pytest.mark.clickhouse_server
@pytest.mark.skipif(
    not os.environ.get("CLICKHOUSE_URL"), reason="needs a ClickHouse server at CLICKHOUSE_URL"
)
def test_same_schema_on_a_clickhouse_server() -> None:
    from pixel_server.storage.clickhouse_store import ClickHouseStore

    st: Store = ClickHouseStore(os.environ["CLICKHOUSE_URL"], "jobpixel_test_" + uuid.uuid4().hex[:8])
    try:
        st.migrate()
        assert st.migrate() == []
        row = event_row()
        st.insert("events", [row, row])
        assert st.query("SELECT count() AS n FROM ${db}.events FINAL")[0]["n"] == 1
    finally:
        st.execute("DROP DATABASE IF EXISTS ${db}")
        st.close()


def consent_row(choice_id: str, row_id: str, action: str, **over: Any) -> dict[str, Any]:
    return {
        "choice_id": choice_id,
        "consent_id": "7f1c2b8e-1111-4a4a-9b9b-123456789abc",
        "site_id": "s",
        "ts": dt.datetime.now(dt.UTC).timestamp(),
        "action": action,
        "granted": ["necessary"],
        "denied": ["statistics", "marketing"],
        "revision": 1,
        "retention_days": 30,
        "row_id": row_id,
        **over,
    }


def test_consent_log_is_append_only_but_a_replayed_insert_collapses(store: ChdbStore) -> None:
    """grant: version 1 kept one row per choice_id, so a second body replaced the proof (issue #7)."""
    store.migrate()
    choice, row_a, row_b = (str(uuid.uuid4()) for _ in range(3))
    first = consent_row(choice, row_a, "accept_all", granted=["necessary", "statistics", "marketing"])
    store.insert("consent_log", [first])
    store.insert("consent_log", [consent_row(choice, row_b, "reject_all")])  # same choice_id, other write
    store.insert("consent_log", [first])  # the loader replays a segment
    store.execute("OPTIMIZE TABLE ${db}.consent_log FINAL")
    rows = store.query("SELECT action, toString(row_id) AS r FROM ${db}.consent_log ORDER BY action")
    assert rows == [{"action": "accept_all", "r": row_a}, {"action": "reject_all", "r": row_b}]
    [t] = store.query(
        "SELECT sorting_key FROM system.tables WHERE database = 'jp_test' AND name = 'consent_log'"
    )
    assert t["sorting_key"] == "site_id, consent_id, choice_id, row_id"
    cols = {r["name"] for r in store.query("SELECT name FROM system.columns WHERE database = 'jp_test'")}
    assert {"visitor_hash", "body_hash", "row_id", "consent_id", "choice_id", "grant_issued_at"} <= cols
