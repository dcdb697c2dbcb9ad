"""The events' stored ``channel`` column (migration 0008): the report's ``source`` dimension reads it instead
of evaluating the named-channel rule in every query. It must be the rule of ``reports/sql.py`` exactly,
for new events and for events stored before the migration."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pixel_server.reports import sql
from pixel_server.storage.base import load_migrations
from pixel_server.storage.chdb_store import ChdbStore

SCHEMA = Path(sql.__file__).parents[1] / "storage" / "schema"
MIGRATION = SCHEMA / "0008_source_channel.sql"
MIGRATION_0008_SHA256 = "6476e504065a5f3215377c4a45c87402ab118237136d89d4d064579a16def462"

# (click_id_type, utm_source, utm_medium, referrer_domain) → the channel; first match wins
CASES: list[tuple[tuple[str, str, str, str], str]] = [
    (("gclid", "finn", "", "facebook.com"), "Google"),  # the click id beats UTM and referrer
    (("wbraid", "", "", ""), "Google"),
    (("li_fat_id", "", "", ""), "LinkedIn"),
    (("fbclid", "", "", "google.com"), "Facebook"),
    (("ScCid", "", "", ""), "Snapchat"),
    (("", "Google", "cpc", "bing.com"), "Google"),  # UTM beats the referrer, case-insensitively
    (("", "lnkd", "", ""), "LinkedIn"),
    (("", "IG", "", ""), "Facebook"),
    (("", "igloo", "", ""), "Other campaign"),  # ^(…|ig)$ is anchored
    (("", "finn.no", "", ""), "Finn"),
    (("", "arbeidsplassen", "", ""), "NAV"),
    (("", "", "E-mail", ""), "Email"),
    (("", "", "newsletter", "google.com"), "Email"),
    (("", "partner", "", "google.com"), "Other campaign"),
    (("", "", "", "www.google.co.uk"), "Google"),
    (("", "", "", "no.linkedin.com"), "LinkedIn"),
    (("", "", "", "m.facebook.com"), "Facebook"),
    (("", "", "", "finn.no"), "Finn"),
    (("", "", "", "notfinn.no"), "Referral"),  # a domain match is whole labels
    (("", "", "", "arbeidsplassen.nav.no"), "NAV"),
    (("", "", "", "duckduckgo.com"), "DuckDuckGo"),
    (("", "", "", "ats.example"), "Referral"),
    (("", "", "", ""), "Direct"),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChdbStore]:
    st = ChdbStore(tmp_path / "chdb", "jp_channel")
    yield st
    st.close()


def _rows(cases: list[tuple[tuple[str, str, str, str], str]]) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.000")
    return [
        {
            "event_id": str(uuid.uuid4()),
            "site_id": "s",
            "ad_id": str(i),
            "name": "pageview",
            "ts": now,
            "visitor_id": str(uuid.uuid4()),
            "url": "https://jobs.example/",
            "click_id_type": click,
            "utm_source": source,
            "utm_medium": medium,
            "referrer_domain": domain,
            "retention_days": 30,
        }
        for i, ((click, source, medium, domain), _) in enumerate(cases)
    ]


def _channels(store: ChdbStore) -> list[str]:
    rows = store.query("SELECT ad_id, channel FROM ${db}.events ORDER BY toUInt32(ad_id)")
    return [r["channel"] for r in rows]


def _normalised(expr: str) -> str:
    """Whitespace runs outside string literals as one space, none just inside brackets."""
    parts = re.split(r"('(?:[^'\\]|\\.)*')", expr)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"\s+", " ", parts[i]).replace("( ", "(").replace(" )", ")")
    return "".join(parts).strip()


def test_the_newest_migration_stores_the_rule_of_reports_sql() -> None:
    """One rule: the expression of the newest migration that sets the column is the one
    ``sql.channel_expr()`` builds from ``CHANNELS``. Whoever changes the rule gets this failure and
    writes a new migration (0008 has run on deployed stores and never runs again: its text is pinned)."""
    newest: str | None = None
    for path in sorted(SCHEMA.glob("*.sql")):
        text = "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("--"))
        found = re.findall(r"\bchannel LowCardinality\(String\) MATERIALIZED (multiIf\(.*?\));", text, re.S)
        if found:
            assert len(set(map(_normalised, found))) == 1, path  # the table and its Distributed twin agree
            newest = found[0]
    assert newest is not None
    assert _normalised(newest) == _normalised(sql.channel_expr())
    assert hashlib.sha256(MIGRATION.read_bytes()).hexdigest() == MIGRATION_0008_SHA256, (
        "0008_source_channel.sql has run on deployed stores: change the rule in a new migration"
    )


def test_the_comparison_sees_a_changed_name() -> None:
    expr = sql.channel_expr()
    assert _normalised(expr.replace("'Bing'", "'B ing'")) != _normalised(expr)
    assert _normalised(expr.replace(", 'Direct')", ",\n    'Direct' )")) == _normalised(expr)


def test_new_events_get_their_channel(store: ChdbStore) -> None:
    store.migrate()
    store.insert("events", _rows(CASES))
    assert _channels(store) == [want for _, want in CASES]
    # the same rule as the report query evaluates it over the raw columns
    direct = store.query(
        f"SELECT ad_id, {sql.channel_expr()} AS c FROM ${{db}}.events ORDER BY toUInt32(ad_id)"
    )
    assert [r["c"] for r in direct] == [want for _, want in CASES]


def test_a_client_cannot_set_the_channel(store: ChdbStore) -> None:
    store.migrate()
    [row] = _rows([(("", "", "", ""), "Direct")])
    store.insert("events", [{**row, "channel": "Google"}])  # as a loader chunk would carry it
    assert _channels(store) == ["Direct"]  # computed from the row, whatever the row says


def test_events_stored_before_the_migration_get_it_too(store: ChdbStore) -> None:
    for mig in load_migrations("jp_channel"):
        if mig.version < 8:
            for stmt in mig.statements:
                store.execute(stmt)
    store.insert("events", _rows(CASES))
    for mig in load_migrations("jp_channel"):
        if mig.version == 8:
            for stmt in mig.statements:
                store.execute(stmt)
    assert _channels(store) == [want for _, want in CASES]
    # and the mutation wrote it into the parts: reading it no longer evaluates the rule
    store.execute("OPTIMIZE TABLE ${db}.events FINAL")
    [col] = store.query(
        "SELECT sum(data_compressed_bytes) AS b FROM system.parts_columns "
        "WHERE database = 'jp_channel' AND table = 'events' AND column = 'channel' AND active"
    )
    assert int(col["b"]) > 0
