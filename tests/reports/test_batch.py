"""``engine.run_queries``: the dashboard's queries in one GROUPING SETS statement answer exactly what each
query answers alone (``run_query``) — numbers, the privacy floor and its "(other)" row, order, meta —
on the hand-computed fixture, with and without the rollup."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pixel_server.core.settings import Site
from pixel_server.dashboards import panels
from pixel_server.reports import engine, rollup, sql
from pixel_server.reports.query import Query, parse_query
from tests.reports.conftest import ReportsServer
from tests.reports.fixture import post_fixture

ALL = ["visitors", "pageviews", "time_on_ad", "scroll_depth", "activity", "readers", "read_rate"]
ALL += ["apply_clicks", "applications", "apply_rate", "conversion_rate"]

BATCHES: list[list[dict[str, Any]]] = [
    # the site page: totals, ads, sources (folds LinkedIn and Finn), campaigns, devices
    [
        {"metrics": ALL},
        {"metrics": ALL, "dimensions": ["ad", "title", "category", "location"]},
        {"metrics": ALL, "dimensions": ["source"]},
        {"metrics": ALL, "dimensions": ["utm_campaign"]},
        {"metrics": ALL, "dimensions": ["device"]},
    ],
    # an ad page: its totals and its sources
    [
        {"metrics": ALL, "filters": [["is", "ad", ["4711"]]]},
        {"metrics": ALL, "dimensions": ["source"], "filters": [["is", "ad", ["4711"]]]},
    ],
    # one dimension in two breakdowns, the same breakdown twice, a different range in the same call
    [
        {"metrics": ALL, "dimensions": ["ad"], "order_by": [["ad", "asc"]]},
        {"metrics": ALL, "dimensions": ["ad", "source"]},
        {"metrics": ["visitors"], "dimensions": ["ad"], "order_by": [["ad", "asc"]]},
        {"metrics": ALL, "dimensions": ["browser", "os"]},
        {"metrics": ALL, "date_range": "7d"},
        {"metrics": ALL, "dimensions": ["referrer_domain"], "date_range": "7d"},
    ],
    # filters on a source field (attribution)
    [
        {"metrics": ALL, "filters": [["contains", "source", ["goo", "finn"]]]},
        {"metrics": ALL, "dimensions": ["title"], "filters": [["contains", "source", ["goo", "finn"]]]},
    ],
    # the same dimensions in another order: one set, each row once (twice would defeat the floor's
    # "fold the next smallest too", which counts the rows under k)
    [
        {"metrics": ALL, "dimensions": ["ad", "source"]},
        {"metrics": ALL, "dimensions": ["source", "ad"]},
        {"metrics": ["visitors"], "dimensions": ["source"]},
    ],
    # totals only
    [{"metrics": ALL}, {"metrics": ["visitors"], "date_range": "today"}],
]


def _query(site: Site, body: dict[str, Any]) -> Query:
    return parse_query({"site": "test", "date_range": "today", **body}, site.timezone)


@pytest.fixture
def fixture_server(reports_server: ReportsServer) -> ReportsServer:
    post_fixture(reports_server)
    return reports_server


@pytest.mark.parametrize("use_rollup", [True, False])
def test_a_batch_answers_what_each_query_answers_alone(
    fixture_server: ReportsServer, use_rollup: bool
) -> None:
    store = fixture_server.state.store
    assert store is not None
    site = fixture_server.settings.sites["test"]
    statements: list[str] = []
    real_query = store.query

    def counting(sql_text: str, params: Any = None) -> Any:
        statements.append(sql_text)
        return real_query(sql_text, params)

    try:
        engine.USE_ROLLUP = use_rollup
        for batch in BATCHES:
            queries = [_query(site, b) for b in batch]
            store.query = counting  # type: ignore[method-assign, assignment]
            try:
                alone = [engine.run_query(store, site, q) for q in queries]
                n_alone = len(statements)
                statements.clear()
                together = engine.run_queries(store, site, queries)
                n_together = len(statements)
                statements.clear()
            finally:
                del store.query
            assert [r.body() for r in together] == [r.body() for r in alone], batch
            assert [r.columns for r in together] == [r.columns for r in alone]
            # it did batch: one statement fewer per raw query that shares its range and filters
            raw = Counter((q.range, q.filters) for q in queries if not (use_rollup and rollup.serves(q)))
            assert n_together == n_alone - sum(n - 1 for n in raw.values()), batch
        # the fixture's fold is there: the batch kept the floor
        site_page = engine.run_queries(store, site, [_query(site, b) for b in BATCHES[0]])
        assert site_page[2].meta["folded_rows"] == 2 and site_page[2].results[-1]["dimensions"] == ["(other)"]
    finally:
        engine.USE_ROLLUP = True


def test_split_sets_reads_the_standard_grouping_bits() -> None:
    sets = [(), ("ad", "title"), ("source",), ("ad",)]
    assert sql.set_dimensions(sets) == ["ad", "title", "source"]
    rows = [
        {"g0": "", "g1": "", "g2": "", "_set": 0b111, "_k": 9},
        {"g0": "4711", "g1": "Kokk", "g2": "", "_set": 0b001, "_k": 5},
        {"g0": "", "g1": "", "g2": "Google", "_set": 0b110, "_k": 3},
        {"g0": "4711", "g1": "", "g2": "", "_set": 0b011, "_k": 5},
    ]
    assert sql.split_sets(rows, sets) == [
        [{"_k": 9}],
        [{"_k": 5, "d0": "4711", "d1": "Kokk"}],
        [{"_k": 3, "d0": "Google"}],
        [{"_k": 5, "d0": "4711"}],
    ]


def test_the_site_page_uses_one_statement_for_its_raw_tables(fixture_server: ReportsServer) -> None:
    store = fixture_server.state.store
    assert store is not None
    site = fixture_server.settings.sites["test"]
    pr = panels.page_range({"range": "today"}, site.timezone)
    batched = panels.site_panels(store, site, pr)
    assert batched["tiles"][0]["value"] == 11  # visitors, the fixture's V1–V11
    for name in ("ads", "sources", "campaigns", "devices"):
        assert batched[name].body() == panels.table(store, site, pr, name).body(), name


COUNTS = ["visitors", "pageviews", "apply_clicks", "applications", "apply_rate", "conversion_rate"]


@pytest.mark.parametrize(
    "body",
    [
        {"dimensions": ["source"]},
        {"dimensions": ["utm_campaign"]},
        {"dimensions": ["ad", "title"]},
        {"dimensions": ["device"], "filters": [["is", "category", ["Helse"]]]},
        {"dimensions": ["referrer_domain"], "filters": [["contains", "source", ["goo"]]]},
        {},
    ],
)
def test_without_engagement_metrics_the_fold_is_skipped_with_the_same_numbers(
    fixture_server: ReportsServer, body: dict[str, Any]
) -> None:
    """Counts need neither each pageview's engagement nor the ads' words: their statement reads one row
    per event (no fold, no grouping by unit) and joins the ads only for title/category/location — and
    answers what the full statement answers for them, floor and "(other)" row included."""
    store = fixture_server.state.store
    assert store is not None
    site = fixture_server.settings.sites["test"]
    try:
        engine.USE_ROLLUP = False
        counts = engine.run_query(store, site, _query(site, {"metrics": COUNTS, **body}))
        full = engine.run_query(store, site, _query(site, {"metrics": [*COUNTS, "read_rate"], **body}))
    finally:
        engine.USE_ROLLUP = True
    assert counts.results == [
        {"dimensions": r["dimensions"], "metrics": r["metrics"][: len(COUNTS)]} for r in full.results
    ]
    assert counts.meta == full.meta
    q = _query(site, {"metrics": COUNTS, **body})
    text = sql.breakdown(q.dimensions, q.filters, metrics=q.metrics)
    assert "GROUP BY unit" not in text and "engagement" not in text
    assert ("JOIN ad_meta" in text) == bool(
        {"title", "category"} & {*q.dimensions, *(f.dimension for f in q.filters)}
    )
    assert "GROUP BY unit" in sql.breakdown(q.dimensions, q.filters, metrics=[*COUNTS, "time_on_ad"])
