"""The outbox end to end: journal rows → consent checked at delivery → a local recording server standing
in for the channels → the delivery log in ClickHouse (chDB)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from pixel_server.forwarding.deliverylog import StoreDeliveryLog, deliveries
from pixel_server.forwarding.outbox import CONSUMER, Outbox
from pixel_server.storage.chdb_store import ChdbStore
from tests.forwarding.support import (
    LINKEDIN_RULE,
    SECRETS,
    FakeJournal,
    MemoryLog,
    Revocations,
    drive,
    event_row,
    forwarding_settings,
)
from tests.harness import DESKTOP_UA, TEST_CHANNELS, RecordingServer, run_async


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    st = ChdbStore(tmp_path_factory.mktemp("chdb") / "chdb", "jp_forward")
    st.migrate()
    yield st
    st.close()


@pytest.fixture
def channels() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


class Rig:
    """One outbox over a fake journal directory, a revocation index and a delivery log."""

    def __init__(
        self, tmp: Path, channels: RecordingServer, log: Any, only: tuple[str, ...] = (), **fwd: Any
    ) -> None:
        kw: dict[str, Any] = {"channels": only} if only else {}
        self.settings = forwarding_settings(tmp / "data", channels.url, **kw, **fwd)
        self.journal = FakeJournal(tmp / "journal")
        self.revocations = Revocations()
        self.log = log

    def outbox(self) -> Outbox:
        return Outbox(self.settings, self.journal.cursor(CONSUMER), self.revocations, self.log, fsync=True)

    def run(self, until: Any, outbox: Outbox | None = None, timeout: float = 10.0) -> Outbox:
        box = outbox or self.outbox()

        async def go() -> None:
            await drive(box, until, timeout)
            await box.stop()

        run_async(go())
        return box


def log_rows(store: ChdbStore, event_id: str) -> dict[str, dict[str, Any]]:
    return {r["channel"]: r for r in deliveries(store, event_id)}


# -- each channel receives exactly the documented request --------------------------------------------------
def _check_ga4(req: Any, row: dict[str, Any]) -> None:
    assert req.path == "/mp/collect"
    assert req.query == {
        "measurement_id": [TEST_CHANNELS["ga4"]["id"]],
        "api_secret": [SECRETS["GA4_API_SECRET"]],
    }
    body = req.json()
    assert body["client_id"] == "1234567890.1700000000"
    assert body["timestamp_micros"] == int(row["ts"] * 1_000_000)
    assert body["consent"] == {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}
    [ev] = body["events"]
    assert ev["name"] == "apply_complete" and ev["params"]["event_id"] == row["event_id"]


def _check_meta(req: Any, row: dict[str, Any]) -> None:
    assert req.path == f"/v22.0/{TEST_CHANNELS['meta']['id']}/events"
    assert req.query == {"access_token": [SECRETS["META_TOKEN"]]}
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    [ev] = json.loads(req.form()["data"][0])
    assert ev["event_name"] == "SubmitApplication"
    assert ev["event_id"] == row["event_id"]
    assert ev["event_time"] == int(row["ts"])
    assert ev["action_source"] == "website" and ev["event_source_url"] == row["url"]
    assert ev["user_data"]["client_user_agent"] == DESKTOP_UA


def _check_linkedin(req: Any, row: dict[str, Any]) -> None:
    assert req.path == "/rest/conversionEvents" and req.query == {}
    assert req.headers["authorization"] == f"Bearer {SECRETS['LINKEDIN_TOKEN']}"
    assert req.headers["x-restli-protocol-version"] == "2.0.0"
    assert req.headers["linkedin-version"] == "202510"
    body = req.json()
    assert body["conversion"] == f"urn:lla:llaPartnerConversion:{LINKEDIN_RULE}"
    assert body["conversionHappenedAt"] == int(row["ts"] * 1000)
    assert body["eventId"] == row["event_id"]


def _check_snapchat(req: Any, row: dict[str, Any]) -> None:
    assert req.path == f"/v3/{TEST_CHANNELS['snapchat']['id']}/events"
    assert req.query == {"access_token": [SECRETS["SNAP_TOKEN"]]}
    [ev] = req.json()["data"]
    assert ev["event_name"] == "SIGN_UP" and ev["event_id"] == row["event_id"]
    assert ev["event_time"] == int(row["ts"]) and ev["action_source"] == "WEB"


CHECKS = {"ga4": _check_ga4, "meta": _check_meta, "linkedin": _check_linkedin, "snapchat": _check_snapchat}


@pytest.mark.parametrize("channel", sorted(CHECKS))
def test_marketing_apply_complete_reaches_the_channel_as_documented(
    tmp_path: Path, channels: RecordingServer, store: ChdbStore, channel: str
) -> None:
    rig = Rig(tmp_path, channels, StoreDeliveryLog(store), only=(channel,))
    row = event_row("apply_complete")
    rig.journal.add(row)
    rig.run(lambda: len(channels.requests) >= 1)
    [req] = channels.requests
    assert req.method == "POST"
    for secret in SECRETS.values():  # each channel sees only its own secret
        assert (secret in req.raw_query + json.dumps(req.headers)) == (secret == SECRETS[_ENV[channel]])
    CHECKS[channel](req, row)
    logged = log_rows(store, row["event_id"])
    assert set(logged) == {channel}
    r = logged[channel]
    assert (r["status"], r["attempts"], r["http_status"]) == ("sent", 1, 200)
    assert (r["consent_id"], r["choice_id"]) == (row["consent_id"], row["choice_id"])
    assert r["first_attempt"] is not None and r["event_name"] == "apply_complete"


_ENV = {"ga4": "GA4_API_SECRET", "meta": "META_TOKEN", "linkedin": "LINKEDIN_TOKEN", "snapchat": "SNAP_TOKEN"}


def test_one_event_to_all_four_channels(tmp_path: Path, channels: RecordingServer, store: ChdbStore) -> None:
    rig = Rig(tmp_path, channels, StoreDeliveryLog(store))
    row = event_row("apply_complete")
    rig.journal.add(row)
    rig.run(lambda: len(channels.requests) >= 4)
    assert (
        sorted(r.path.split("/")[1] for r in channels.requests) == ["debug", "mp", "rest", "v22.0", "v3"][1:]
    )
    assert {r["status"] for r in log_rows(store, row["event_id"]).values()} == {"sent"}
    assert len(log_rows(store, row["event_id"])) == 4


# -- no consent, no request --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        {"marketing": 0},  # statistics only (marketing in a /collect body is ignored by ingest)
        {"marketing": 0, "props": {"marketing": "true"}},
        {"marketing": False},
        {"marketing": "1"},  # only the number 1 (or true) as put_rows writes it counts
        {"consent_id": ""},  # a row with no grant to trace never leaves
        {"choice_id": None},
        {"site_id": "test"},  # a site without forwarding
        {"name": "engagement"},  # not a forwarded event
    ],
)
def test_no_request_without_a_traceable_marketing_grant(
    tmp_path: Path, channels: RecordingServer, change: dict[str, Any]
) -> None:
    log = MemoryLog()
    rig = Rig(tmp_path, channels, log)
    rig.journal.add(event_row(**change))
    box = rig.run(lambda: True)
    assert channels.requests == []
    assert log.rows == []
    assert rig.journal.cursor(CONSUMER).pending() == []  # the segment is still consumed
    assert box.metrics.value("jobpixel_forward_queued_total", channel="meta") == 0


def test_withdrawal_before_delivery_sends_nothing(
    tmp_path: Path, channels: RecordingServer, store: ChdbStore
) -> None:
    rig = Rig(tmp_path, channels, StoreDeliveryLog(store))
    row = event_row()
    rig.revocations.withdraw(row["consent_id"])
    rig.journal.add(row)
    box = rig.run(lambda: True)
    assert channels.requests == []
    logged = log_rows(store, row["event_id"])
    assert {c: r["status"] for c, r in logged.items()} == dict.fromkeys(CHECKS, "withdrawn")
    assert all(r["attempts"] == 0 and r["consent_id"] == row["consent_id"] for r in logged.values())
    assert box.metrics.value("jobpixel_forward_dropped_total", channel="meta", reason="withdrawn") == 1


def test_a_withdrawal_before_the_grant_does_not_block_it(tmp_path: Path, channels: RecordingServer) -> None:
    """A consent withdrawn, then granted again: the new grant (issued after) still delivers."""
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    row = event_row()
    rig.revocations.withdraw(row["consent_id"], at=row["grant_issued_at"] - 10)
    rig.journal.add(row)
    rig.run(lambda: len(channels.requests) == 1)
    assert [r["status"] for r in rig.log.rows] == ["sent"]


def test_withdrawal_between_retries_stops_them(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("snapchat",))
    channels.fail(100, 503)
    row = event_row()
    rig.journal.add(row)
    box = rig.outbox()

    async def go() -> None:
        while len(channels.requests) < 2:
            await box.run_once()
            await asyncio.sleep(0.005)
        rig.revocations.withdraw(row["consent_id"])
        await drive(box, lambda: True)
        await box.stop()

    run_async(go())
    n = len(channels.requests)
    assert 2 <= n <= 3
    [logged] = rig.log.rows
    assert (logged["status"], logged["attempts"], logged["http_status"]) == ("withdrawn", n, 503)


# -- retries -----------------------------------------------------------------------------------------------
def test_five_failures_then_success_delivers_exactly_once(
    tmp_path: Path, channels: RecordingServer, store: ChdbStore
) -> None:
    rig = Rig(tmp_path, channels, StoreDeliveryLog(store), only=("meta",))
    channels.fail(5, 500)
    row = event_row()
    rig.journal.add(row)
    box = rig.run(lambda: len(channels.ok()) >= 1)
    assert [r.status for r in channels.requests] == [500] * 5 + [200]
    assert len({r.body for r in channels.requests}) == 1  # the same request each time
    [ok] = channels.ok()
    assert json.loads(ok.form()["data"][0])[0]["event_id"] == row["event_id"]
    r = log_rows(store, row["event_id"])["meta"]
    assert (r["status"], r["attempts"], r["http_status"]) == ("sent", 6, 200)
    assert r["first_attempt"] < r["last_attempt"]
    assert box.metrics.value("jobpixel_forward_retried_total", channel="meta") == 5
    assert box.metrics.value("jobpixel_forward_sent_total", channel="meta") == 1
    assert box.metrics.value("jobpixel_forward_latency_seconds_count", channel="meta") == 1


@pytest.mark.parametrize(("status", "headers"), [(429, {"Retry-After": "0"}), (502, {}), (504, {})])
def test_throttling_and_gateway_errors_are_retried(
    tmp_path: Path, channels: RecordingServer, status: int, headers: dict[str, str]
) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("linkedin",))
    channels.fail(2, status, **headers)
    rig.journal.add(event_row())
    rig.run(lambda: len(channels.ok()) == 1)
    assert [r.status for r in channels.requests] == [status, status, 200]
    assert [(r["status"], r["attempts"]) for r in rig.log.rows] == [("sent", 3)]


def test_timeouts_are_retried(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("ga4",), timeout_ms=200)
    channels.hang(1, seconds=1.0)
    rig.journal.add(event_row())
    rig.run(lambda: len(rig.log.rows) == 1)
    [logged] = rig.log.rows
    assert (logged["status"], logged["attempts"]) == ("sent", 2)


def test_a_client_error_is_final_and_keeps_the_channels_message(
    tmp_path: Path, channels: RecordingServer
) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    message = b'{"error":{"message":"Invalid OAuth access token meta-token-xyz","code":190}}'
    channels.fail(1, 400, message)
    rig.journal.add(event_row())
    box = rig.run(lambda: len(rig.log.rows) == 1)
    assert len(channels.requests) == 1
    [logged] = rig.log.rows
    assert (logged["status"], logged["attempts"], logged["http_status"]) == ("failed_final", 1, 400)
    assert "Invalid OAuth access token" in logged["message"]
    assert SECRETS["META_TOKEN"] not in logged["message"]  # a secret echoed back is not logged
    assert box.metrics.value("jobpixel_forward_dropped_total", channel="meta", reason="failed_final") == 1


def test_an_unreachable_channel_is_retried_not_dropped(tmp_path: Path, channels: RecordingServer) -> None:
    channels.close()  # nothing listens on that port any more
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    rig.journal.add(event_row())
    box = rig.outbox()

    async def go() -> None:
        for _ in range(4):
            await box.run_once()
            await asyncio.sleep(0.01)
        await box.stop()

    run_async(go())
    assert rig.log.rows == []
    [pending] = box.store.pending()
    assert pending.attempts >= 2 and pending.http_status == 0 and "connection" in pending.message


# -- age limits and batches --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("channel", "age_s"),
    [("ga4", 73 * 3600), ("meta", 7 * 86400 + 60), ("snapchat", 38 * 86400), ("linkedin", 91 * 86400)],
)
def test_too_old_is_dropped_without_a_request(
    tmp_path: Path, channels: RecordingServer, channel: str, age_s: float
) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=(channel,))
    rig.journal.add(event_row(age_s=age_s))
    box = rig.run(lambda: len(rig.log.rows) == 1)
    assert channels.requests == []
    assert [(r["status"], r["attempts"]) for r in rig.log.rows] == [("too_old", 0)]
    assert box.metrics.value("jobpixel_forward_dropped_total", channel=channel, reason="too_old") == 1


def test_a_stale_event_never_rides_in_a_meta_batch(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    fresh = [event_row(age_s=60), event_row(age_s=3600)]
    stale = event_row(age_s=7 * 86400 - 60)  # inside 7 days, but not by the time it would arrive
    rig.journal.add(fresh[0], stale, fresh[1])
    rig.run(lambda: len(rig.log.rows) == 3)
    [req] = channels.requests
    assert [e["event_id"] for e in json.loads(req.form()["data"][0])] == [
        fresh[1]["event_id"],
        fresh[0]["event_id"],
    ]
    assert {r["event_id"]: r["status"] for r in rig.log.rows} == {
        fresh[0]["event_id"]: "sent",
        fresh[1]["event_id"]: "sent",
        stale["event_id"]: "too_old",
    }


def test_ga4_batches_never_pass_25_events_or_mix_clients(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("ga4",))
    ts = round(time.time() - 5, 3)
    rows = [event_row("pageview", ts=ts) for _ in range(30)]
    other = event_row("pageview", ts=ts)
    other["channel_ids"] = {"ga_client_id": "999.888"}
    later = event_row("pageview", ts=ts + 1)  # timestamp_micros is per request: another instant, another one
    rig.journal.add(*rows, other, later)
    rig.run(lambda: len(rig.log.rows) == 32)
    sizes = sorted(
        (len(r.json()["events"]), r.json()["client_id"], r.json()["timestamp_micros"])
        for r in channels.requests
    )
    client, micros = "1234567890.1700000000", int(ts * 1_000_000)
    assert sizes == sorted(
        [
            (1, "999.888", micros),
            (1, client, micros + 1_000_000),
            (5, client, micros),
            (25, client, micros),
        ]
    )


def test_a_snap_invalid_answer_is_final(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("snapchat",))
    channels.body = b'{"status":"INVALID","reason":"pixel not found"}'
    rig.journal.add(event_row())
    rig.run(lambda: len(rig.log.rows) == 1)
    [logged] = rig.log.rows
    assert logged["status"] == "failed_final" and "pixel not found" in logged["message"]


def test_an_event_missing_the_channels_identifier_is_logged_not_sent(
    tmp_path: Path, channels: RecordingServer
) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("ga4",))
    rig.journal.add(event_row(channel_ids={}))
    rig.run(lambda: len(rig.log.rows) == 1)
    assert channels.requests == []
    [logged] = rig.log.rows
    assert logged["status"] == "failed_final" and "client id" in logged["message"]


# -- durability ------------------------------------------------------------------------------------------
def test_no_resend_after_success_across_restarts(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta", "linkedin"))
    row = event_row()
    rig.journal.add(row)
    rig.run(lambda: len(channels.requests) == 2)
    # a crash after the deliveries were recorded but before the journal commit: the segment comes back
    (rig.journal.directory / f"cursor.{CONSUMER}").unlink()
    assert len(rig.journal.cursor(CONSUMER).pending()) == 1
    rig.run(lambda: True)  # a new consumer, same data_dir
    # a client replaying the same event id in a later segment
    rig.journal.add(row)
    rig.run(lambda: True)
    assert len(channels.requests) == 2
    assert sorted(r["channel"] for r in rig.log.rows) == ["linkedin", "meta"]


def test_queued_deliveries_survive_a_restart_and_go_out_once(
    tmp_path: Path, channels: RecordingServer
) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    channels.fail(2, 500)
    rows = [event_row(), event_row()]
    rig.journal.add(*rows)
    box = rig.outbox()

    async def first_life() -> None:
        while len(channels.requests) < 2:
            await box.run_once()
            await asyncio.sleep(0.005)
        await box.stop()  # the process ends with both deliveries queued and the segment committed

    run_async(first_life())
    assert rig.journal.cursor(CONSUMER).pending() == []
    assert rig.log.rows == []
    box2 = rig.run(lambda: len(channels.ok()) == 1)
    [ok] = channels.ok()
    assert sorted(e["event_id"] for e in json.loads(ok.form()["data"][0])) == sorted(
        r["event_id"] for r in rows
    )
    assert [(r["status"], r["attempts"]) for r in rig.log.rows] == [("sent", 3), ("sent", 3)]
    rig.run(lambda: True)
    assert len(channels.ok()) == 1 and box2.status()["depth"] == 0


def test_delivery_log_rows_wait_while_the_log_is_down(tmp_path: Path, channels: RecordingServer) -> None:
    class DownLog(MemoryLog):
        down = True

        async def write(self, rows: Any) -> None:
            if self.down:
                raise OSError("journal full")
            await super().write(rows)

    log = DownLog()
    rig = Rig(tmp_path, channels, log, only=("meta",))
    rig.journal.add(event_row())
    box = rig.outbox()

    async def go() -> None:
        for _ in range(3):
            await box.run_once()
        await box.stop()

    run_async(go())
    assert len(channels.requests) == 1 and log.rows == []
    log.down = False
    rig.run(lambda: len(log.rows) == 1)  # after a restart: logged, not resent
    assert len(channels.requests) == 1
    assert log.rows[0]["status"] == "sent"


def test_a_torn_outbox_tail_is_cut(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    row = event_row()
    rig.journal.add(row)
    rig.run(lambda: len(rig.log.rows) == 1)
    path = rig.settings.data_dir / "outbox" / "outbox.jsonl"
    with path.open("ab") as fh:
        fh.write(b'{"q":"meta:shop:x","ch":"meta","ev":{"event_')  # a write the crash cut short
    rig.journal.add(event_row())
    rig.run(lambda: len(rig.log.rows) == 2)
    assert len(channels.requests) == 2
    assert all(line.startswith(b"{") and line.endswith(b"}") for line in path.read_bytes().splitlines())


def test_status_reports_depth_and_oldest_age(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    channels.fail(100, 503)
    rig.journal.add(event_row(age_s=120))
    box = rig.outbox()

    async def go() -> dict[str, Any]:
        await box.run_once()
        st = box.status()
        await box.stop()
        return st

    st = run_async(go())
    assert st["depth"] == 1 and 119 < st["oldest_age_s"] < 200
    assert box.metrics.value("jobpixel_forward_outbox_depth") == 1


def run_in_background_until_logged(rig: Rig, box: Outbox) -> None:
    """Start the outbox's loop, journal one event, wait (≤ 5 s) for a delivery-log row, stop."""

    async def go() -> None:
        await box.start()
        await rig.journal.append("events", [event_row()])
        box.nudge()
        deadline = time.monotonic() + 5
        while not rig.log.rows and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await box.stop()

    run_async(go())


def test_run_loop_delivers_in_the_background(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    box = rig.outbox()
    run_in_background_until_logged(rig, box)
    assert [r["status"] for r in rig.log.rows] == ["sent"]


def test_stop_during_a_delivery_log_flush_writes_each_row_once(
    tmp_path: Path, channels: RecordingServer
) -> None:
    """stop() cancels the loop, then flushes the delivery log itself: a flush the loop had started (rows
    written, not yet marked logged) must finish first, or its rows are written twice."""
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    box = rig.outbox()
    mark = box.store.logged

    def slow_mark(keys: Any) -> None:
        time.sleep(0.5)  # the loop is cancelled while this runs
        mark(keys)

    box.store.logged = slow_mark  # type: ignore[method-assign]
    run_in_background_until_logged(rig, box)
    assert [r["status"] for r in rig.log.rows] == ["sent"]


def test_meta_form_body_is_what_the_docs_show(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    rig.journal.add(event_row())
    rig.run(lambda: len(channels.requests) == 1)
    [req] = channels.requests
    assert set(parse_qs(req.body.decode())) == {"data"}


def test_deliveries_of_a_channel_turned_off_before_restart_end_final(
    tmp_path: Path, channels: RecordingServer
) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta", "snapchat"))
    channels.fail(2, 503)
    rig.journal.add(event_row())
    box = rig.outbox()

    async def first_life() -> None:
        while len(channels.requests) < 2:
            await box.run_once()
        await box.stop()

    run_async(first_life())
    channels.recover()
    rig.settings = forwarding_settings(tmp_path / "data", channels.url, channels=("snapchat",))
    rig.run(lambda: len(rig.log.rows) == 2)
    assert {r["channel"]: r["status"] for r in rig.log.rows} == {"meta": "failed_final", "snapchat": "sent"}
    assert all(not r.path.startswith("/v22.0") for r in channels.ok())


def test_outbox_file_compacts_and_keeps_recent_keys(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    rows = [event_row() for _ in range(5)]
    rig.journal.add(*rows)
    rig.run(lambda: len(rig.log.rows) == 5)
    path = rig.settings.data_dir / "outbox" / "outbox.jsonl"
    box = rig.outbox()
    run_async(box.open())  # compaction on open: only the finished keys remain, as tombstones
    lines = [json.loads(x) for x in path.read_bytes().splitlines()]
    assert sorted(x["k"] for x in lines) == sorted(f"meta:shop:{r['event_id']}" for r in rows)
    assert all(set(x) == {"k", "t"} for x in lines)  # nothing of the event is kept after delivery
    box.store.close()


def test_ga4_debug_validation_messages_are_final(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("ga4",), debug=True)
    channels.body = b'{"validationMessages":[{"fieldPath":"client_id","description":"bad client_id"}]}'
    rig.journal.add(event_row())
    rig.run(lambda: len(rig.log.rows) == 1)
    [req] = channels.requests
    assert req.path == "/debug/mp/collect"
    [logged] = rig.log.rows
    assert logged["status"] == "failed_final" and "bad client_id" in logged["message"]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_limit_per_channel(tmp_path: Path, channels: RecordingServer, concurrency: int) -> None:
    rig = Rig(
        tmp_path,
        channels,
        MemoryLog(),
        only=("ga4",),
        limits={"ga4": {"concurrency": concurrency, "rate_per_s": 1000}},
    )
    channels.hang(6, seconds=0.3)
    base = time.time() - 5
    rig.journal.add(*(event_row(ts=round(base + i, 3)) for i in range(6)))  # six instants: six requests
    rig.run(lambda: len(rig.log.rows) == 6)
    assert len(channels.requests) == 6
    assert channels.max_in_flight == concurrency


def test_rate_limit_per_channel(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(
        tmp_path, channels, MemoryLog(), only=("ga4",), limits={"ga4": {"concurrency": 1, "rate_per_s": 5}}
    )
    base = time.time() - 5
    rig.journal.add(*(event_row(ts=round(base + i, 3)) for i in range(6)))
    rig.run(lambda: len(rig.log.rows) == 6)
    gaps = [b - a for a, b in zip(channels.started, channels.started[1:], strict=False)]
    assert len(gaps) == 5 and min(gaps) > 0.15  # 5 per second, no burst beyond one


def test_production_wiring_logs_through_the_journal(tmp_path: Path, channels: RecordingServer) -> None:
    from pixel_server.forwarding.metrics import ForwardMetrics
    from pixel_server.forwarding.outbox import outbox_for

    journal = FakeJournal(tmp_path / "journal")
    off = forwarding_settings(tmp_path / "data", channels.url, channels=())
    assert outbox_for(off, journal, Revocations(), ForwardMetrics()) is None
    settings = forwarding_settings(tmp_path / "data", channels.url, channels=("meta",))
    box = outbox_for(settings, journal, Revocations(), ForwardMetrics())
    assert box is not None
    row = event_row()
    journal.add(row)

    async def go() -> None:
        await drive(box, lambda: len(channels.requests) == 1)
        await box.run_once()  # the delivery-log segment the outbox itself appended: consumed, not forwarded
        await box.stop()

    run_async(go())
    [logged] = [
        json.loads(line)
        for f in sorted((tmp_path / "journal").glob("*.delivery_log.jsonl"))
        for line in f.read_bytes().splitlines()
    ]
    assert (logged["event_id"], logged["status"], logged["choice_id"]) == (
        row["event_id"],
        "sent",
        row["choice_id"],
    )
    assert journal.cursor(CONSUMER).pending() == []
    assert len(channels.requests) == 1


def test_apply_events_get_the_ads_job_metadata(tmp_path: Path, channels: RecordingServer) -> None:
    rig = Rig(tmp_path, channels, MemoryLog(), only=("snapchat",))
    ads = {
        ("shop", "4711"): {"title": "Lagerarbeider", "category": "Lager", "location": "Bergen", "words": 300}
    }
    box = Outbox(
        rig.settings,
        rig.journal.cursor(CONSUMER),
        rig.revocations,
        rig.log,
        ads=lambda site, ad: ads.get((site, ad), {}),
    )
    rig.journal.add(event_row(job={}), event_row(job={}, ad_id="999"))
    rig.run(lambda: len(rig.log.rows) == 2, outbox=box)
    [req] = channels.requests
    first, second = req.json()["data"]
    assert first["custom_data"] == {
        "content_ids": ["4711"],
        "content_category": "Lager",
        "custom_fields": {"job_title": "Lagerarbeider", "job_location": "Bergen"},
    }
    assert second["custom_data"] == {"content_ids": ["999"]}  # an ad we know nothing about: its id only


def test_delivered_events_leave_the_outbox_file(tmp_path: Path, channels: RecordingServer) -> None:
    """After delivery only the key stays: the user agent and click ids are gone at the next compaction."""
    rig = Rig(tmp_path, channels, MemoryLog(), only=("meta",))
    box = rig.outbox()
    box.store.compact_every_s = 0
    rig.journal.add(event_row())
    rig.run(lambda: len(rig.log.rows) == 1, outbox=box)
    text = (rig.settings.data_dir / "outbox" / "outbox.jsonl").read_text()
    assert DESKTOP_UA not in text and "IwAR-click" not in text and "fb.1." not in text
    assert text.count("\n") == 1 and '"k"' in text
