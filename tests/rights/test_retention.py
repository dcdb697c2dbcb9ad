"""Retention: the live TTL of every table is the configured one (changed at migrate time), a row past
its TTL is gone after ``OPTIMIZE … FINAL``, and the journal and quarantine keep nothing longer."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pixel_server.core.journal import Journal
from pixel_server.core.settings import Settings
from pixel_server.rights.retention import RULES, apply_ttl, live_ttl, sweep, ttl_expression
from pixel_server.storage import Store
from pixel_server.web.app import open_and_migrate
from tests.harness import make_settings

DAY = 86_400


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[tuple[Settings, Store]]:
    settings = make_settings(tmp_path / "data", retention_days=30, consent_log_days=400)
    store = open_and_migrate(settings)
    yield settings, store
    store.close()


def _norm(s: str | None) -> str:
    return "".join((s or "").split())


def test_live_ttl_matches_the_configuration_and_follows_it(
    configured: tuple[Settings, Store], tmp_path: Path
) -> None:
    settings, store = configured
    for table in RULES:
        have = live_ttl(store, table)
        assert _norm(have) == _norm(ttl_expression(settings, table)), table
    assert "site_id = 'test', 30" in (live_ttl(store, "events") or "")
    assert "site_id = 'test', 400" in (live_ttl(store, "consent_log") or "")
    assert "site_id = 'test', 30" in (live_ttl(store, "ads") or "")
    assert apply_ttl(store, settings) == []  # nothing to change: no ALTER, no mutation
    store.close()

    longer = make_settings(tmp_path / "data", retention_days=60, consent_log_days=400)
    store2 = open_and_migrate(longer)  # the migrate at start applies the new value
    try:
        assert "site_id = 'test', 60" in (live_ttl(store2, "events") or "")
        assert "site_id = 'test', 400" in (live_ttl(store2, "delivery_log") or "")
        assert apply_ttl(store2, longer) == []
    finally:
        store2.close()


def test_rows_past_their_ttl_are_gone_after_optimize_final(configured: tuple[Settings, Store]) -> None:
    settings, store = configured
    now = time.time()
    old_event, new_event = now - 31 * DAY, now - 29 * DAY  # retention_days = 30
    old_log, new_log = now - 401 * DAY, now - 399 * DAY  # consent_log_days = 400
    for table in RULES:  # hold the rows until the test forces the merge (else a background one may)
        store.execute(f"SYSTEM STOP TTL MERGES ${{db}}.{table}")
    for site in ("test", "shop"):
        store.insert(
            "events",
            [
                {
                    "event_id": str(uuid.uuid4()),
                    "site_id": site,
                    "ts": t,
                    "visitor_id": str(uuid.uuid4()),
                    "name": "pageview",
                }
                for t in (old_event, new_event)
            ],
        )
        store.insert(
            "ads",
            [
                {"site_id": site, "ad_id": str(int(t)), "first_seen": t, "last_seen": t}
                for t in (old_event, new_event)
            ],
        )
        for table in ("consent_log", "delivery_log"):
            store.insert(
                table,
                [
                    {"site_id": site, "ts": t, "consent_id": str(uuid.uuid4()), "event_id": str(uuid.uuid4())}
                    for t in (old_log, new_log)
                ],
            )
        store.insert("erasure_log", [{"site_id": site, "ts": t} for t in (old_log, new_log)])
    for table in RULES:
        assert store.query(f"SELECT count() AS n FROM ${{db}}.{table}")[0]["n"] == 4, table
        store.execute(f"SYSTEM START TTL MERGES ${{db}}.{table}")
        store.execute(f"OPTIMIZE TABLE ${{db}}.{table} FINAL")
        left = store.query(f"SELECT count() AS n FROM ${{db}}.{table}")[0]["n"]
        assert left == 2, (table, left)  # per site: the one inside its retention


def test_journal_and_quarantine_keep_nothing_past_retention(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", retention_days=30, consent_log_days=400)
    now = time.time()
    journal = Journal(settings.journal_dir, ("loader",))
    old = {"event_id": str(uuid.uuid4()), "site_id": "test", "ts": now - 31 * DAY}
    new = {"event_id": str(uuid.uuid4()), "site_id": "test", "ts": now - 29 * DAY}
    consent = {"consent_id": str(uuid.uuid4()), "site_id": "test", "ts": now - 31 * DAY}  # 400 days: kept
    seg = settings.journal_dir / "000000000001.events.jsonl"  # journaled a month ago, never loaded
    seg.write_bytes(orjson.dumps(old) + b"\n")
    (settings.journal_dir / "000000000001.consent_log.jsonl").write_bytes(orjson.dumps(consent) + b"\n")
    (settings.journal_dir / "000000000002.events.jsonl").write_bytes(orjson.dumps(new) + b"\n")
    journal.close()
    for p in settings.journal_dir.glob("000000000001.*"):
        os.utime(p, (now - 31 * DAY, now - 31 * DAY))
    for p in settings.journal_dir.glob("000000000002.*"):
        os.utime(p, (now - 29 * DAY, now - 29 * DAY))
    quarantine = settings.journal_dir / "quarantine"
    quarantine.mkdir()
    (quarantine / "000000000000.events.jsonl").write_bytes(
        orjson.dumps(old) + b"\n" + orjson.dumps(new) + b"\n"
    )
    size = seg.stat().st_size

    journal = Journal(settings.journal_dir, ("loader",))
    try:
        counts = sweep(journal, quarantine, settings, now)
    finally:
        journal.close()
    assert counts == {"journal.events": 1, "quarantine.events": 1}
    assert seg.stat().st_size == size  # blanked in place: byte ranges (dedup tokens) unchanged
    assert seg.read_bytes().strip() == b""
    assert new["event_id"].encode() in (settings.journal_dir / "000000000002.events.jsonl").read_bytes()
    assert old["event_id"].encode() not in (quarantine / "000000000000.events.jsonl").read_bytes()
    assert new["event_id"].encode() in (quarantine / "000000000000.events.jsonl").read_bytes()
    assert (
        consent["consent_id"].encode()
        in (settings.journal_dir / "000000000001.consent_log.jsonl").read_bytes()
    )
