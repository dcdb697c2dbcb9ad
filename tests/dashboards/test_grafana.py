"""The operators' Grafana dashboard: every SQL panel, with grafana-clickhouse-datasource's macros and
the dashboard's template variables expanded, runs on chDB against the real schema; every PromQL panel
names a metric the server exports."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from pixel_server.core.metrics import Metrics
from pixel_server.forwarding.metrics import ForwardMetrics
from pixel_server.storage.chdb_store import ChdbStore

DASHBOARDS = sorted((Path(str(resources.files("pixel_server.dashboards"))) / "grafana").glob("*.json"))
FROM = dt.datetime(2026, 11, 30, 0, 0, tzinfo=dt.UTC)
TO = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)
INTERVAL_S = 300


def expand(sql: str, variables: dict[str, list[str]]) -> str:
    """The plugin's macros (pkg/macros/macros.go) and Grafana's variable formats, as Grafana sends them."""

    def dt_(t: dt.datetime) -> str:
        return f"toDateTime({int(t.timestamp())})"

    def dt64(t: dt.datetime) -> str:
        return f"fromUnixTimestamp64Milli({int(t.timestamp() * 1000)})"

    def d(t: dt.datetime) -> str:
        return f"toDate('{t:%Y-%m-%d}')"

    macros = {
        "timeFilter": lambda c: f"{c} >= {dt_(FROM)} AND {c} <= {dt_(TO)}",
        "timeFilter_ms": lambda c: f"{c} >= {dt64(FROM)} AND {c} <= {dt64(TO)}",
        "dateFilter": lambda c: f"{c} >= {d(FROM)} AND {c} <= {d(TO)}",
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {INTERVAL_S} second)",
        "timeInterval_ms": lambda c: (
            f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {INTERVAL_S * 1000} millisecond)"
        ),
    }
    for name, fn in macros.items():
        sql = re.sub(rf"\$__{name}\(([^()]*)\)", lambda m, fn=fn: fn(m.group(1).strip()), sql)
    sql = sql.replace("$__fromTime_ms", dt64(FROM)).replace("$__toTime_ms", dt64(TO))
    sql = sql.replace("$__fromTime", dt_(FROM)).replace("$__toTime", dt_(TO))
    sql = sql.replace("$__interval_s", str(INTERVAL_S))
    for var, values in variables.items():
        sql = sql.replace(f"${{{var}:singlequote}}", ",".join(f"'{v}'" for v in values))
        sql = sql.replace(f"${{{var}}}", ",".join(values)).replace(f"${var}", ",".join(values))
    assert "$" not in sql, f"unexpanded macro or variable in: {sql}"
    return sql


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = ChdbStore(tmp_path_factory.mktemp("grafana") / "chdb", "jobpixel")
    s.migrate()
    at = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC).timestamp()
    s.insert(
        "events",
        [
            {
                "event_id": str(uuid.uuid4()),
                "site_id": "test",
                "ad_id": "4711",
                "name": name,
                "ts": at,
                "visitor_id": str(uuid.uuid4()),
                "url": "https://x/",
                "retention_days": 3650,
            }
            for name in ("pageview", "pageview", "apply_click", "apply_complete")
        ],
    )
    s.insert(
        "consent_log",
        [
            {
                "choice_id": str(uuid.uuid4()),
                "consent_id": str(uuid.uuid4()),
                "site_id": "test",
                "ts": at,
                "action": "accept_all",
                "granted": ["necessary", "statistics", "marketing"],
                "denied": [],
                "retention_days": 3650,
            },
        ],
    )
    s.insert(
        "ads",
        [
            {
                "site_id": "test",
                "ad_id": "4711",
                "first_seen": at,
                "last_seen": at,
                "latest": {
                    "ts": at,
                    "title": "Sykepleier",
                    "category": "",
                    "location": "",
                    "employer": "",
                    "employment_type": "",
                    "date_posted": "",
                    "valid_through": "",
                    "words": 1,
                },
            }
        ],
    )
    yield s
    s.close()


def panels() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in DASHBOARDS:
        doc = json.loads(path.read_text(encoding="utf-8"))
        out += [(f"{path.name}:{p['title']}", p) for p in doc["panels"]]
    return out


def test_there_are_dashboards() -> None:
    titles = " ".join(t for t, _ in panels()).lower()
    for topic in ("ingest", "drops", "consent rates", "journal", "outbox", "top ads"):
        assert topic in titles


@pytest.mark.parametrize(("title", "panel"), panels(), ids=[t for t, _ in panels()])
def test_panel_runs(title: str, panel: dict[str, Any], store: ChdbStore) -> None:
    kind = panel["datasource"]["type"]
    for target in panel["targets"]:
        if kind == "grafana-clickhouse-datasource":
            sql = expand(target["rawSql"], {"database": ["jobpixel"], "site": ["test", "shop"]})
            rows = store.query(sql)
            assert rows, f"{title}: no rows over the fixture"
        else:
            assert kind == "prometheus"
            metrics = Metrics()
            ForwardMetrics(metrics.registry)
            exported = metrics.render().decode()
            for name in re.findall(r"\b(jobpixel_[a-z_]+)", target["expr"]):
                assert re.search(rf"^# TYPE {name}\b", exported, re.M), name


def test_site_variable_query_runs(store: ChdbStore) -> None:
    doc = json.loads(DASHBOARDS[0].read_text(encoding="utf-8"))
    [site] = [v for v in doc["templating"]["list"] if v["name"] == "site"]
    assert store.query(expand(site["query"], {"database": ["jobpixel"]})) == [{"site_id": "test"}]
