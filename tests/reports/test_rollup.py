"""The hourly rollup (migration 0006, reports/rollup.py): it answers what it serves with the raw path's
numbers, under the same privacy floor; a replayed journal chunk and a backfill count each event once."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pixel_server.core.settings import Site
from pixel_server.reports import engine, rollup
from pixel_server.reports.query import parse_query
from pixel_server.storage.base import load_migrations
from pixel_server.storage.chdb_store import ChdbStore
from tests.reports.conftest import ReportsServer
from tests.reports.fixture import post_fixture

COUNTS = ["visitors", "pageviews", "apply_clicks", "applications", "apply_rate", "conversion_rate"]

# (query body, whether the rollup serves it); every one is run both ways and must agree
QUERIES: list[tuple[dict[str, Any], bool]] = [
    ({"metrics": COUNTS}, True),
    ({"metrics": COUNTS, "dimensions": ["ad"]}, True),
    ({"metrics": COUNTS, "dimensions": ["title", "category", "location"]}, True),
    ({"metrics": ["visitors", "applications"], "dimensions": ["time:day"]}, True),
    ({"metrics": ["visitors", "pageviews"], "dimensions": ["time:hour"]}, True),
    ({"metrics": COUNTS, "dimensions": ["device"]}, True),
    ({"metrics": COUNTS, "dimensions": ["ad", "device"], "order_by": [["ad", "asc"]]}, True),
    ({"metrics": COUNTS, "filters": [["is", "ad", ["4711"]]]}, True),
    ({"metrics": COUNTS, "dimensions": ["ad"], "filters": [["is_not", "title", ["Kokk"]]]}, True),
    ({"metrics": ["visitors"], "dimensions": ["ad"], "filters": [["contains", "location", ["osl"]]]}, True),
    ({"metrics": ["visitors"], "dimensions": ["time:week"], "date_range": "30d"}, True),
    ({"metrics": ["visitors"], "dimensions": ["time:month"], "date_range": "12mo"}, True),
    # not served: per-pageview engagement, first-touch sources, realtime, browser
    ({"metrics": ["visitors", "time_on_ad"]}, False),
    ({"metrics": ["read_rate"], "dimensions": ["ad"]}, False),
    ({"metrics": COUNTS, "dimensions": ["source"]}, False),
    ({"metrics": COUNTS, "filters": [["is", "utm_campaign", ["vinter"]]]}, False),
    ({"metrics": ["visitors"], "date_range": "realtime"}, False),
    ({"metrics": ["visitors"], "dimensions": ["browser"]}, False),
]


def _site(server: ReportsServer) -> Site:
    return server.settings.sites["test"]


def _both(server: ReportsServer, body: dict[str, Any]) -> tuple[engine.Report, engine.Report]:
    store = server.state.store
    assert store is not None
    site = _site(server)
    q = parse_query({"site": "test", "date_range": "today", **body}, site.timezone)
    try:
        engine.USE_ROLLUP = True
        fast = engine.run_query(store, site, q)
        engine.USE_ROLLUP = False
        raw = engine.run_query(store, site, q)
    finally:
        engine.USE_ROLLUP = True
    return fast, raw


def test_rollup_equals_raw_for_the_fixture(reports_server: ReportsServer) -> None:
    post_fixture(reports_server)
    for body, served in QUERIES:
        fast, raw = _both(reports_server, body)
        assert fast.meta.pop("rollup") is served, body
        assert raw.meta.pop("rollup") is False
        assert fast.results == raw.results, body
        assert fast.meta == raw.meta, body


def test_rollup_answers_the_hand_computed_numbers(reports_server: ReportsServer) -> None:
    post_fixture(reports_server)
    fast, _ = _both(reports_server, {"metrics": COUNTS})
    assert fast.meta["rollup"] is True
    assert fast.results == [{"dimensions": [], "metrics": [11, 12, 3, 2, 27.3, 18.2]}]
    # k = 3: 4713 (1 visitor) alone under k → 4712 (3) folded with it; (other) = 4 visitors, shown
    fast, _ = _both(reports_server, {"metrics": ["visitors", "pageviews"], "dimensions": ["ad"]})
    assert fast.meta["rollup"] is True and fast.meta["folded_rows"] == 2 and fast.meta["other_row"]
    assert fast.results == [
        {"dimensions": ["4711"], "metrics": [7, 8]},
        {"dimensions": ["(other)"], "metrics": [4, 4]},
    ]
    # the API says which path answered
    r = reports_server.api("/api/v1/query", {"site": "test", "date_range": "today", "metrics": COUNTS})
    assert r.json()["meta"]["rollup"] is True
    assert r.json()["results"][0]["metrics"] == [11, 12, 3, 2, 27.3, 18.2]


def test_served_only_for_whole_hours_in_whole_hour_zones() -> None:
    body = {"site": "s", "date_range": ["2026-03-01", "2026-03-31"], "metrics": ["visitors"]}
    assert rollup.serves(parse_query(body, "Europe/Oslo"))  # across the change to summer time
    assert rollup.serves(parse_query(body, "America/New_York"))
    assert not rollup.serves(parse_query(body, "Asia/Kolkata"))  # +05:30
    assert not rollup.serves(parse_query(body, "Australia/Eucla"))  # +08:45


# -- storage: replay and backfill, on a bare store ------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChdbStore]:
    st = ChdbStore(tmp_path / "chdb", "jp_rollup")
    yield st
    st.close()


def _event(name: str, visitor: str, ts: dt.datetime, ad: str = "1", **over: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "site_id": "s",
        "ad_id": ad,
        "name": name,
        "ts": ts.timestamp(),
        "visitor_id": visitor,
        "url": "https://x.test/jobb/1",
        "device": "desktop",
        "retention_days": 3650,
        **over,
    }


def _counts(store: ChdbStore, table: str = "report_hourly") -> dict[str, int]:
    [row] = store.query(
        "SELECT uniqMerge(visitors) AS visitors, uniqExactMerge(pageviews) AS pageviews, "
        f"uniqMerge(clickers) AS clickers, uniqMerge(appliers) AS appliers FROM ${{db}}.{table} "
        "WHERE site_id = 's'"
    )
    return {k: int(v) for k, v in row.items()}


def _rows(store: ChdbStore, table: str) -> int:
    [r] = store.query(
        "SELECT sum(rows) AS n FROM system.parts "
        "WHERE database = 'jp_rollup' AND table = {t:String} AND active",
        {"t": table},
    )
    return int(r["n"] or 0)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


T0 = dt.datetime(2026, 3, 1, 22, 30, tzinfo=dt.UTC)


def test_a_replayed_journal_chunk_counts_once_in_the_rollup(store: ChdbStore) -> None:
    store.migrate()
    v1, v2 = str(uuid.uuid4()), str(uuid.uuid4())
    chunk = _jsonl(
        [
            _event("pageview", v1, T0),
            _event("pageview", v2, T0),
            _event("pageview", v2, T0 + dt.timedelta(minutes=1)),
            _event("apply_click", v2, T0 + dt.timedelta(minutes=2)),
        ]
    )
    store.insert_jsonl("events", chunk, dedup_token="node1:seg7:events:0-400")
    before = {t: _rows(store, t) for t in ("events", "report_hourly", "report_hourly_site")}
    assert before["report_hourly"] > 0 and before["report_hourly_site"] > 0
    # the loader crashed between the insert and its cursor commit: the same chunk, the same token
    store.insert_jsonl("events", chunk, dedup_token="node1:seg7:events:0-400")
    after = {t: _rows(store, t) for t in ("events", "report_hourly", "report_hourly_site")}
    assert after == before  # ClickHouse dropped the block, and the views' blocks with it
    expected = {"visitors": 2, "pageviews": 3, "clickers": 1, "appliers": 0}
    assert _counts(store) == expected
    assert _counts(store, "report_hourly_site") == expected
    # a client sending the same events again (a new chunk): the rows land, the sets do not change
    store.insert_jsonl("events", chunk, dedup_token="node1:seg8:events:0-400")
    assert _rows(store, "report_hourly") > before["report_hourly"]
    assert _counts(store) == expected
    assert _counts(store, "report_hourly_site") == expected


def test_migrate_backfills_events_stored_before_the_rollup(store: ChdbStore) -> None:
    # the schema as it was before 0006, with events in it
    for mig in load_migrations("jp_rollup"):
        if mig.version < 6:
            for stmt in mig.statements:
                store.execute(stmt)
    store.execute(
        "CREATE TABLE jp_rollup.schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    store.execute(
        "INSERT INTO jp_rollup.schema_migrations (version, name) VALUES (1, 'init'), (2, 'grant'), "
        "(3, 'ads'), (4, 'delivery_log'), (5, 'dedup')"
    )
    visitors = [str(uuid.uuid4()) for _ in range(4)]
    old = [_event("pageview", v, T0 - dt.timedelta(days=d)) for d, v in enumerate(visitors)]
    old.append(_event("apply_complete", visitors[0], T0, ad="2"))
    store.insert("events", old)
    assert store.migrate() == ["0006_rollup", "0007_rights", "0008_source_channel"]  # the later ones too
    assert _counts(store) == {"visitors": 4, "pageviews": 4, "clickers": 0, "appliers": 1}
    # new events reach it through the view; running the backfill again counts nothing twice
    store.insert("events", [_event("pageview", visitors[1], T0)])
    for mig in load_migrations("jp_rollup"):
        if mig.version == 6:
            for stmt in mig.statements:
                store.execute(stmt)
    assert _counts(store) == {"visitors": 4, "pageviews": 5, "clickers": 0, "appliers": 1}
    assert _counts(store, "report_hourly_site") == {
        "visitors": 4,
        "pageviews": 5,
        "clickers": 0,
        "appliers": 1,
    }


def test_rebuild_forgets_deleted_events(store: ChdbStore) -> None:
    store.migrate()
    keep, erase = str(uuid.uuid4()), str(uuid.uuid4())
    store.insert(
        "events",
        [
            _event("pageview", keep, T0),
            _event("pageview", erase, T0 + dt.timedelta(minutes=40)),  # the next UTC hour
            _event("apply_click", erase, T0 + dt.timedelta(minutes=41)),
            _event("pageview", erase, T0 - dt.timedelta(days=3)),  # outside the rebuilt hours: stays
        ],
    )
    assert _counts(store) == {"visitors": 2, "pageviews": 3, "clickers": 1, "appliers": 0}
    # an erasure removes the visitor's events of that evening; the rollup still counts them ...
    store.execute(
        "ALTER TABLE ${db}.events DELETE WHERE visitor_id = {v:UUID} AND ts >= {t:DateTime64(3, 'UTC')} "
        "SETTINGS mutations_sync = 2",
        {"v": erase, "t": (T0 - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")},
    )
    assert _counts(store)["clickers"] == 1
    # ... until the hours they were in are rebuilt from what is left
    rollup.rebuild(store, "s", T0 - dt.timedelta(minutes=5), T0 + dt.timedelta(minutes=45))
    for table in ("report_hourly", "report_hourly_site"):
        assert _counts(store, table) == {"visitors": 2, "pageviews": 2, "clickers": 0, "appliers": 0}
    [n] = store.query(
        "SELECT uniqMerge(visitors) AS v FROM ${db}.report_hourly WHERE hour >= {t:DateTime('UTC')}",
        {"t": (T0 - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")},
    )
    assert n["v"] == 1


def test_only_the_states_a_query_reads_are_merged() -> None:
    every = rollup.breakdown(("device",), ())
    assert all(c in every for c in ("r.pageviews", "r.clickers", "r.appliers"))
    chart = rollup.breakdown(("time:day",), (), metrics=["visitors", "applications"])
    assert "r.pageviews" not in chart and "r.clickers" not in chart and "r.appliers" in chart
    rates = rollup.breakdown(("device",), (), metrics=["visitors", "apply_rate"])
    assert "r.clickers" in rates and "r.appliers" not in rates
