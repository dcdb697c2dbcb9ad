"""The delivery log and ``jobpixel deliveries --event ID``: which consent let an event reach a channel."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pixel_server import cli
from pixel_server.core import settings as settings_mod
from pixel_server.forwarding.deliverylog import StoreDeliveryLog, deliveries
from pixel_server.storage.base import load_migrations
from pixel_server.storage.chdb_store import ChdbStore
from tests.harness import SIGNING_KEY, run_async


def row(event_id: str, channel: str = "meta", **over: Any) -> dict[str, Any]:
    now = round(time.time(), 3)
    return {
        "channel": channel,
        "site_id": "shop",
        "event_id": event_id,
        "event_name": "apply_complete",
        "consent_id": str(uuid.uuid4()),
        "choice_id": str(uuid.uuid4()),
        "status": "sent",
        "attempts": 1,
        "first_attempt": now,
        "last_attempt": now,
        "event_ts": now - 5,
        "ts": now,
        "http_status": 200,
        "message": '{"events_received":1}',
        "retention_days": 1095,
        **over,
    }


def test_table_shape_and_dedup(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb", "jp_dl")
    try:
        store.migrate()
        [t] = store.query(
            "SELECT engine, sorting_key, create_table_query FROM system.tables "
            "WHERE database = 'jp_dl' AND name = 'delivery_log'"
        )
        assert t["engine"] == "ReplacingMergeTree"
        assert t["sorting_key"] == "event_id, channel, site_id"
        assert "TTL toDateTime(ts) + toIntervalDay(retention_days)" in t["create_table_query"]
        event_id = str(uuid.uuid4())
        first = row(event_id)
        # the outbox re-writes a row it could not confirm as logged before a crash: one row remains
        run_async(StoreDeliveryLog(store).write([first, first, row(event_id, "snapchat")]))
        got = deliveries(store, event_id)
        assert [(r["channel"], r["status"]) for r in got] == [("meta", "sent"), ("snapchat", "sent")]
        assert got[0]["consent_id"] == first["consent_id"] and got[0]["choice_id"] == first["choice_id"]
        with pytest.raises(ValueError):
            deliveries(store, "1' OR 1=1 --")
    finally:
        store.close()


def test_cluster_ddl_has_a_distributed_delivery_log() -> None:
    sql = "\n".join(s for m in load_migrations("jp", cluster="jobs") for s in m.statements)
    assert "CREATE TABLE IF NOT EXISTS jp.delivery_log_local ON CLUSTER jobs" in sql
    assert "Distributed(jobs, jp, delivery_log_local, sipHash64(event_id))" in sql


def test_sent_rows_join_a_consent_that_granted_marketing_before_the_event(tmp_path: Path) -> None:
    """The operator's question, as SQL over the two logs: which consent let this event reach Meta?"""
    store = ChdbStore(tmp_path / "chdb", "jp_dl")
    try:
        store.migrate()
        now = time.time()
        consent_id, choice_id = str(uuid.uuid4()), str(uuid.uuid4())
        store.insert(
            "consent_log",
            [
                {
                    "choice_id": choice_id,
                    "consent_id": consent_id,
                    "site_id": "shop",
                    "ts": round(now - 60, 3),
                    "action": "accept_all",
                    "granted": ["necessary", "statistics", "marketing"],
                    "denied": [],
                    "revision": 1,
                    "lang": "nb",
                    "gpc": 0,
                    "layer": 1,
                    "ua_family": "Chrome",
                    "retention_days": 1095,
                }
            ],
        )
        good, orphan = str(uuid.uuid4()), str(uuid.uuid4())
        store.insert(
            "delivery_log",
            [row(good, consent_id=consent_id, choice_id=choice_id), row(orphan)],
        )
        joined = store.query(
            "SELECT d.event_id AS event_id, c.action AS action FROM ${db}.delivery_log AS d FINAL "
            "LEFT JOIN (SELECT * FROM ${db}.consent_log FINAL) AS c "
            "ON c.consent_id = d.consent_id AND c.choice_id = d.choice_id "
            "WHERE d.status = 'sent' AND has(c.granted, 'marketing') AND c.ts <= d.event_ts "
            "ORDER BY event_id"
        )
        assert [r["event_id"] for r in joined] == [good]  # the orphan has no consent row: it shows up missing
    finally:
        store.close()


def test_deliveries_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "jobpixel.toml"
    config.write_text(
        f'[server]\ndata_dir = "{data}"\n[partners.p]\nname = "P"\n'
        '[sites.shop]\npartner = "p"\norigins = ["https://jobs.example.no"]\n'
    )
    monkeypatch.setenv(settings_mod.SIGNING_KEYS_ENV, SIGNING_KEY)
    monkeypatch.setenv(settings_mod.HASH_KEY_ENV, "test-hash-key-0123456789abcdef")
    store = ChdbStore(data / "chdb", "jobpixel")
    event_id = str(uuid.uuid4())
    sent = row(event_id)
    try:
        store.migrate()
        store.insert(
            "delivery_log", [sent, row(event_id, "ga4", status="too_old", attempts=0, http_status=0)]
        )
    finally:
        store.close()
    assert cli.main(["deliveries", "--config", str(config), "--event", event_id]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"event {event_id}"
    assert lines[1].split()[:3] == ["channel", "site_id", "event_name"]
    assert lines[2].split()[:2] == ["ga4", "shop"] and "too_old" in lines[2]
    assert (
        lines[3].split()[:2] == ["meta", "shop"]
        and sent["consent_id"] in lines[3]
        and sent["choice_id"] in lines[3]
    )
    assert cli.main(["deliveries", "--config", str(config), "--event", event_id, "--json"]) == 0
    assert sent["choice_id"] in capsys.readouterr().out
    assert cli.main(["deliveries", "--config", str(config), "--event", str(uuid.uuid4())]) == 1
    assert "no deliveries" in capsys.readouterr().out
    assert cli.main(["deliveries", "--config", str(config), "--event", "nope"]) == 2
    assert "--event" in capsys.readouterr().err
