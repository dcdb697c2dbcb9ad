"""DELETE /me reaches every copy (issue #10 acceptance): ClickHouse — every table with a visitor-id or
consent-id column, found in ``system.columns`` so a new table cannot be forgotten — the journal (events
accepted and not loaded yet), the quarantine and the outbox (a delivery still queued). Another
visitor's rows stay, and still load."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from pixel_server.forwarding.base import Event
from pixel_server.forwarding.store import Delivery, OutboxStore, delivery_key
from pixel_server.rights.subject import Subject
from tests.harness import HASH_KEY
from tests.rights.conftest import RightsServer

SUBJECT_COLUMNS = ("visitor_id", "consent_id", "visitor_hash")


def subject_tables(server: RightsServer) -> dict[str, set[str]]:
    """Every table of the database with a subject column, straight from system.columns."""
    assert server.state.store is not None
    rows = server.state.store.query(
        "SELECT table, groupArray(name) AS cols FROM system.columns WHERE database = {db:String} "
        "GROUP BY table",
        {"db": server.state.store.database},
    )
    return {r["table"]: set(r["cols"]) for r in rows if set(r["cols"]) & set(SUBJECT_COLUMNS)}


def rows_of(server: RightsServer, visitor: str, consent: str) -> dict[str, int]:
    """Rows per subject table that carry this visitor id, consent id or visitor hash (no FINAL: any row)."""
    subject = Subject("test", {visitor}, {consent}, HASH_KEY)
    out = {}
    assert server.state.store is not None
    for table, cols in subject_tables(server).items():
        clause, params = subject.where(cols - {"site_id"})  # every site: nothing of theirs anywhere
        rows = server.state.store.query(f"SELECT count() AS n FROM ${{db}}.{table} WHERE {clause}", params)
        out[table] = int(rows[0]["n"])
    return out


def files_under(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.exists() for p in d.rglob("*") if p.is_file()]


def holding(paths: list[Path], needles: list[str]) -> list[str]:
    return [f"{p.name}: {n}" for p in paths for n in needles if n.encode() in p.read_bytes()]


def journal_events(server: RightsServer, visitor: str) -> list[dict[str, Any]]:
    out = []
    for p in sorted(server.settings.journal_dir.glob("*.events.jsonl")):
        for line in p.read_bytes().splitlines():
            if line.strip():
                row = orjson.loads(line)
                if row["visitor_id"] == visitor:
                    out.append(row)
    return out


def test_delete_me_erases_every_copy_and_nothing_of_anyone_else(rights_server: RightsServer) -> None:
    s = rights_server
    a = s.consent(statistics=True, marketing=True)  # the visitor who asks
    b = s.consent(statistics=True, marketing=True)  # someone else
    ga, gb = s.state.grants.verify(a["token"]), s.state.grants.verify(b["token"])
    assert ga is not None and gb is not None
    va, vb = str(ga.visitor_id), str(gb.visitor_id)
    a_ids = s.post_events(a["token"], 2)
    b_ids = s.post_events(b["token"], 2)
    s.flush()  # these are in ClickHouse ...
    a_ids += s.post_events(a["token"], 2)  # ... these only in the journal (the loader waits 60 s)
    b_ids += s.post_events(b["token"], 1)
    assert len(journal_events(s, va)) == 2 and len(journal_events(s, vb)) == 1

    # a row of each in the quarantine, as the loader writes it
    quarantine = s.settings.journal_dir / "quarantine"
    quarantine.mkdir()
    qa, qb = journal_events(s, va)[0], journal_events(s, vb)[0]
    (quarantine / "000000000001.events.jsonl").write_bytes(
        orjson.dumps(qa) + b"\n" + orjson.dumps(qb) + b"\n"
    )
    # a delivery of each still queued in the outbox, and one of A's already in the delivery log
    outbox = OutboxStore(s.settings.data_dir / "outbox")
    outbox.open()
    outbox.enqueue(
        [
            Delivery(delivery_key("meta", "test", r["event_id"]), "meta", Event.from_row(r), time.time())
            for r in (qa, qb)
        ]
    )
    outbox.close()
    assert s.state.store is not None
    s.state.store.insert(
        "delivery_log",
        [
            {
                "channel": "meta",
                "site_id": "test",
                "event_id": e,
                "event_name": "pageview",
                "consent_id": g.consent_id,
                "choice_id": g.choice_id,
                "status": "sent",
                "attempts": 1,
                "event_ts": time.time(),
                "ts": time.time(),
                "http_status": 200,
                "message": "",
                "retention_days": 1095,
            }
            for e, g in ((a_ids[0], ga), (b_ids[0], gb))
        ],
    )
    before_b = rows_of(s, vb, gb.consent_id)
    assert rows_of(s, va, ga.consent_id)["events"] == 2
    rollup = "SELECT uniqMerge(visitors) AS v, uniqExactMerge(pageviews) AS p FROM ${db}.report_hourly"
    assert s.state.store.query(rollup) == [{"v": 2, "p": 4}]  # the report rollups count A and B (no flush)

    r = s.me("DELETE", a["token"])
    assert r.status_code == 200, r.text
    erased = r.json()["erased"]
    assert erased["events"] == 2 and erased["journal.events"] == 2  # loaded, and still journaled
    assert erased["consent_log"] == 1 and erased["delivery_log"] == 1
    assert erased["quarantine.events"] == 1 and erased["outbox"] == 1

    # ClickHouse: every table with a subject column, found now — nothing of A's, all of B's
    left = rows_of(s, va, ga.consent_id)
    assert set(left) >= {"events", "consent_log", "delivery_log"}
    assert left == dict.fromkeys(left, 0), left
    assert rows_of(s, vb, gb.consent_id) == before_b
    # the files: journal (segments, quarantine), outbox — nothing of A's, B's still there
    data = s.settings.data_dir
    paths = files_under(s.settings.journal_dir, data / "outbox")
    assert holding(paths, [va, ga.consent_id, *a_ids]) == []
    assert holding(paths, [vb]) and (quarantine / "000000000001.events.jsonl").read_bytes().count(b"\n") == 1
    reopened = OutboxStore(data / "outbox")
    reopened.open()
    assert [d.event.event_id for d in reopened.pending()] == [qb["event_id"]]
    reopened.close()

    # B's journaled event still loads; nothing of A's does — in the rollups either
    s.flush()
    assert len(s.events(visitor_id=vb)) == 3
    assert s.events(visitor_id=va) == []
    assert s.query(rollup) == [{"v": 1, "p": 3}]
    # the erasure log: who asked and how much, none of the erased data
    log = s.query("SELECT * FROM ${db}.erasure_log")
    assert len(log) == 1 and log[0]["requested_by"] == "visitor" and log[0]["site_id"] == "test"
    assert log[0]["counts"]["events"] == 2
    assert not {va, ga.consent_id, *a_ids} & set(orjson.dumps(log[0]).decode().split('"'))
    # the grant is revoked: A's page cannot store anything more with it ...
    assert s.collect_one(a["token"]).status_code == 403
    # ... but it still opens /me (a withdrawal never locks the visitor out), which now finds nothing
    again = s.me("GET", a["token"])
    assert again.status_code == 200 and all(rows == [] for rows in again.json()["tables"].values())


def test_the_revocation_survives_a_restart(rights_server: RightsServer) -> None:
    s = rights_server
    a = s.consent()
    s.post_events(a["token"], 1)
    assert s.me("DELETE", a["token"]).status_code == 200
    s.restart()  # the consent log's rows are gone; the erasure log's consent hash revokes the grant now
    assert s.collect_one(a["token"]).status_code == 403
    b = s.consent()
    assert s.collect_one(b["token"]).status_code == 204  # other grants are untouched
