"""Report days are the site's calendar days: the same instants fall on different days in Oslo and UTC.

Rows go straight into the store here (``/collect`` stamps the server's clock, which a test cannot move to
a day boundary); the queries run through the real API."""

from __future__ import annotations

import datetime as dt
import uuid

from tests.reports.conftest import ReportsServer


def _pageview(ts: dt.datetime, visitor: str) -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),
        "site_id": "test",
        "ad_id": "1",
        "name": "pageview",
        "ts": ts.timestamp(),
        "visitor_id": visitor,
        "url": "https://x.test/jobb/1",
        "hostname": "x.test",
        "path": "/jobb/1",
        "retention_days": 3650,
    }


def test_days_follow_the_site_time_zone(reports_server: ReportsServer) -> None:
    before = dt.datetime(2026, 3, 1, 22, 30, tzinfo=dt.UTC)  # 23:30 in Oslo, 1 March
    after = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC)  # 00:30 in Oslo, 2 March (UTC: still 1 March)
    rows = [_pageview(before, str(uuid.uuid4())) for _ in range(3)]
    rows += [_pageview(after, str(uuid.uuid4())) for _ in range(4)]
    assert reports_server.state.store is not None
    reports_server.state.store.insert("events", rows)

    body = {
        "site": "test",
        "date_range": ["2026-03-01", "2026-03-02"],
        "metrics": ["visitors"],
        "dimensions": ["time:day"],
    }
    r = reports_server.api("/api/v1/query", body)
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [
        {"dimensions": ["2026-03-01"], "metrics": [3]},
        {"dimensions": ["2026-03-02"], "metrics": [4]},
    ]
    assert r.json()["meta"]["time_labels"] == ["2026-03-01", "2026-03-02"]
    one_day = {**body, "date_range": ["2026-03-02", "2026-03-02"], "dimensions": []}
    assert reports_server.api("/api/v1/query", one_day).json()["results"][0]["metrics"] == [4]
    hours = {**one_day, "dimensions": ["time:hour"]}
    assert reports_server.api("/api/v1/query", hours).json()["results"] == [
        {"dimensions": ["2026-03-02 00:00"], "metrics": [4]}
    ]
