"""Forwarding through the real server: real ``/consent`` and ``/collect``, the real journal, the outbox as
its consumer, the revocation index, the delivery log in chDB. Only the channels are stood in for, one
local recording server each (``[forwarding.endpoints]``)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest

from tests.forwarding.support import LINKEDIN_RULE, SECRETS, ForwardingServer, event_row
from tests.harness import DESKTOP_UA, OPS, TEST_CHANNELS, PartnerSite, Recorded, RecordingServer

CHANNELS = ("ga4", "meta", "linkedin", "snapchat")
CHANNEL_IDS = {
    "ga_client_id": "1234567890.1700000000",
    "fbp": "fb.1.1558571054389.1098115397",
    "fbc": "fb.1.1554763741205.AbCdEfGh",
    "scid": "scid-5d1c6a2e",
    "li_fat_id": "li-cookie-7",
}
JOB = {"title": "Selger", "category": "Salg", "location": "Oslo", "employer": "Acme AS"}


@pytest.fixture(scope="module")
def recorders() -> Iterator[dict[str, RecordingServer]]:
    recs = {name: RecordingServer() for name in CHANNELS}
    yield recs
    for rec in recs.values():
        rec.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, recorders: dict[str, RecordingServer]
) -> Iterator[ForwardingServer]:
    partner = PartnerSite()
    srv = ForwardingServer(tmp_path_factory.mktemp("live"), partner, recorders, timeout_ms=5000)
    srv.start()
    yield srv
    srv.stop()
    partner.close()


@pytest.fixture(autouse=True)
def healthy(recorders: dict[str, RecordingServer]) -> None:
    for rec in recorders.values():
        rec.recover()


# -- helpers --------------------------------------------------------------------------------------------
def collect(
    server: ForwardingServer, grant: dict[str, Any], name: str = "apply_complete", **body: Any
) -> str:
    event_id = str(uuid.uuid4())
    doc = {
        "site": "shop",
        "ad": "4711",
        "name": name,
        "url": server.partner.origin + "/jobb/4711/takk?fbclid=IwAR-click&ScCid=sc-click-9",
        "event_id": event_id,
        "token": grant["token"],
        "channel_ids": CHANNEL_IDS,
        **body,
    }
    r = httpx.post(
        server.url + "/collect",
        content=json.dumps(doc),
        headers={"Content-Type": "text/plain", "Origin": server.partner.origin, "User-Agent": DESKTOP_UA},
    )
    assert r.status_code == 204, r.text
    return event_id


def event_ids(channel: str, req: Recorded) -> list[str]:
    """The event ids one channel request carries."""
    if channel == "ga4":
        return [e["params"]["event_id"] for e in req.json()["events"]]
    if channel == "meta":
        return [e["event_id"] for e in json.loads(req.form()["data"][0])]
    if channel == "snapchat":
        return [e["event_id"] for e in req.json()["data"]]
    body = req.json()
    return [e["eventId"] for e in body.get("elements", [body])]


def carrying(rec: RecordingServer, channel: str, event_id: str) -> list[Recorded]:
    return [r for r in list(rec.requests) if event_id in event_ids(channel, r)]


def ch_array(ids: Iterable[str]) -> str:
    """An Array(String) query parameter as chDB takes it (the ids are UUIDs: nothing to escape)."""
    return "[" + ",".join(f"'{uuid.UUID(i)}'" for i in ids) + "]"


def log_rows(server: ForwardingServer, *event_ids_: str) -> list[dict[str, Any]]:
    return server.query(
        "SELECT channel, toString(event_id) AS event_id, event_name, toString(consent_id) AS consent_id,"
        " toString(choice_id) AS choice_id, status, attempts, http_status, message"
        " FROM ${db}.delivery_log FINAL WHERE has({ids:Array(String)}, toString(event_id))"
        " ORDER BY channel, event_id",
        {"ids": ch_array(event_ids_)},
    )


def wait_for(
    server: ForwardingServer, done: Callable[[], bool], timeout: float = 20.0, flush: bool = True
) -> None:
    """Seal the journal (the loader's flush) until ``done()``: the outbox takes sealed segments."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        if flush:
            server.flush()
        time.sleep(0.1)


def wait_logged(server: ForwardingServer, n: int, *ids: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal rows
        rows = log_rows(server, *ids)
        return len(rows) >= n

    wait_for(server, enough)
    return rows


def event_time(server: ForwardingServer, event_id: str) -> float:
    """The event's server time exactly as journaled (epoch seconds, milliseconds kept)."""
    [row] = server.query(
        "SELECT toUnixTimestamp64Milli(ts) AS ms FROM ${db}.events WHERE event_id = {e:UUID}", {"e": event_id}
    )
    return int(row["ms"]) / 1000


def marketing_visit(server: ForwardingServer) -> tuple[dict[str, Any], str, str]:
    """A visitor who accepted everything views the ad (with its JobPosting) and applies."""
    grant = server.consent("shop", statistics=True, marketing=True)
    view = collect(
        server, grant, "pageview", url=server.partner.origin + "/jobb/4711?fbclid=IwAR-click", job=JOB
    )
    apply = collect(server, grant)
    return grant, view, apply


# -- the documented request, per channel ----------------------------------------------------------------
def test_marketing_visitor_apply_complete_reaches_each_channel_as_documented(
    server: ForwardingServer, recorders: dict[str, RecordingServer]
) -> None:
    grant, view, apply = marketing_visit(server)
    wait_for(server, lambda: all(carrying(recorders[c], c, apply) for c in CHANNELS))
    wait_logged(server, len(CHANNELS), apply)
    ts = event_time(server, apply)
    url = server.partner.origin + "/jobb/4711/takk?fbclid=IwAR-click&ScCid=sc-click-9"

    [ga] = carrying(recorders["ga4"], "ga4", apply)
    assert (ga.method, ga.path) == ("POST", "/mp/collect")
    assert ga.query == {
        "measurement_id": [TEST_CHANNELS["ga4"]["id"]],
        "api_secret": [SECRETS["GA4_API_SECRET"]],
    }
    assert ga.headers["content-type"] == "application/json" and "authorization" not in ga.headers
    assert ga.json() == {
        "client_id": CHANNEL_IDS["ga_client_id"],
        "timestamp_micros": int(ts * 1_000_000),
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"},
        "events": [
            {
                "name": "apply_complete",
                "params": {
                    "job_id": "4711",
                    "job_title": "Selger",
                    "job_category": "Salg",
                    "job_location": "Oslo",
                    "job_employer": "Acme AS",
                    "event_id": apply,
                },
            }
        ],
    }

    [meta] = carrying(recorders["meta"], "meta", apply)
    assert (meta.method, meta.path) == ("POST", f"/v22.0/{TEST_CHANNELS['meta']['id']}/events")
    assert meta.query == {"access_token": [SECRETS["META_TOKEN"]]}
    assert meta.headers["content-type"] == "application/x-www-form-urlencoded"
    meta_events = {e["event_id"]: e for e in json.loads(meta.form()["data"][0])}
    assert set(meta_events) <= {view, apply}  # one visitor's events may share a request (≤ 1,000)
    assert meta_events[apply] == {
        "event_name": "SubmitApplication",
        "event_time": int(ts),
        "event_id": apply,
        "action_source": "website",
        "event_source_url": url,
        "user_data": {
            "client_user_agent": DESKTOP_UA,
            "fbp": CHANNEL_IDS["fbp"],
            "fbc": CHANNEL_IDS["fbc"],
        },
        "custom_data": {"content_ids": ["4711"], "content_name": "Selger", "content_category": "Salg"},
    }

    [li] = carrying(recorders["linkedin"], "linkedin", apply)
    assert (li.method, li.path, li.raw_query) == ("POST", "/rest/conversionEvents", "")
    assert li.headers["authorization"] == f"Bearer {SECRETS['LINKEDIN_TOKEN']}"
    assert li.headers["linkedin-version"] == "202510"
    assert li.headers["x-restli-protocol-version"] == "2.0.0"
    assert li.json() == {
        "conversion": f"urn:lla:llaPartnerConversion:{LINKEDIN_RULE}",
        "conversionHappenedAt": int(ts * 1000),
        "user": {"userIds": [{"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": "li-cookie-7"}]},
        "eventId": apply,
    }

    [snap] = carrying(recorders["snapchat"], "snapchat", apply)
    assert (snap.method, snap.path) == ("POST", f"/v3/{TEST_CHANNELS['snapchat']['id']}/events")
    assert snap.query == {"access_token": [SECRETS["SNAP_TOKEN"]]}
    assert snap.headers["content-type"] == "application/json"
    snap_events = {e["event_id"]: e for e in snap.json()["data"]}
    assert set(snap_events) <= {view, apply}
    assert snap_events[apply] == {
        "event_name": "SIGN_UP",
        "event_time": int(ts),
        "event_id": apply,
        "action_source": "WEB",
        "event_source_url": url,
        "user_data": {
            "client_user_agent": DESKTOP_UA,
            "sc_cookie1": CHANNEL_IDS["scid"],
            "sc_click_id": "sc-click-9",
        },
        "custom_data": {
            "content_ids": ["4711"],
            "content_category": "Salg",
            "custom_fields": {
                "job_title": "Selger",
                "job_location": "Oslo",
                "job_employer": "Acme AS",
            },
        },
    }
    # the page view went where the channel documents page views (LinkedIn: conversions only)
    assert carrying(recorders["meta"], "meta", view) and carrying(recorders["snapchat"], "snapchat", view)
    assert not carrying(recorders["linkedin"], "linkedin", view)
    # nothing identifying of ours: no visitor id, no IP, no grant token anywhere
    visitor = server.events(event_id=apply)[0]["visitor_id"]
    for name in CHANNELS:
        for r in carrying(recorders[name], name, apply):
            wire = r.raw_query + r.body.decode() + json.dumps(r.headers)
            assert visitor not in wire and grant["token"] not in wire
            assert "client_ip_address" not in wire and "ip_override" not in wire and "sha256" not in wire
    rows = log_rows(server, apply)
    assert {r["channel"]: r["status"] for r in rows} == dict.fromkeys(CHANNELS, "sent")
    assert {(r["consent_id"], r["choice_id"]) for r in rows} == {(grant["consent_id"], grant["choice_id"])}


def test_statistics_only_visitor_sends_nothing_even_when_the_body_says_marketing(
    server: ForwardingServer, recorders: dict[str, RecordingServer]
) -> None:
    for rec in recorders.values():
        rec.clear()
    stats_only = server.consent("shop", statistics=True, marketing=False)
    quiet = [
        collect(server, stats_only, "pageview", marketing=True, job=JOB),
        collect(server, stats_only, marketing=True),
        collect(server, stats_only, "apply_click", marketing=True),
    ]
    # a marketing visitor after them: once that one arrived everywhere, the outbox has read the others
    _, _, sentinel = marketing_visit(server)
    wait_for(server, lambda: all(carrying(recorders[c], c, sentinel) for c in CHANNELS))
    wait_logged(server, len(CHANNELS), sentinel)
    for name in CHANNELS:
        for r in recorders[name].requests:
            assert not set(event_ids(name, r)) & set(quiet)
    assert log_rows(server, *quiet) == []  # never became deliveries
    stored = server.events(event_id=quiet[1])
    assert stored and stored[0]["marketing"] == 0 and stored[0]["click_ids"] == {}


def test_withdrawal_before_delivery_sends_nothing_and_counts_withdrawn(
    server: ForwardingServer, recorders: dict[str, RecordingServer]
) -> None:
    before = {
        c: server_metric(server, "jobpixel_forward_dropped_total", channel=c, reason="withdrawn")
        for c in CHANNELS
    }
    grant = server.consent("shop", statistics=True, marketing=True)
    event_id = collect(server, grant)
    # the journal holds it, not yet sealed: the visitor withdraws marketing before any delivery
    withdraw = {
        "consent_id": grant["consent_id"],
        "choice_id": str(uuid.uuid4()),
        "action": "withdraw",
        "granted": ["necessary", "statistics"],
        "denied": ["marketing"],
        "token": grant["token"],
    }
    r = httpx.post(
        server.url + "/consent",
        content=json.dumps(
            {**{k: grant[k] for k in ("site", "revision", "lang", "gpc", "layer")}, **withdraw}
        ),
        headers={"Content-Type": "text/plain", "Origin": server.partner.origin, "User-Agent": DESKTOP_UA},
    )
    assert r.status_code == 200, r.text
    rows = wait_logged(server, len(CHANNELS), event_id)
    assert {r["channel"]: (r["status"], r["attempts"]) for r in rows} == dict.fromkeys(
        CHANNELS, ("withdrawn", 0)
    )
    for name in CHANNELS:
        assert carrying(recorders[name], name, event_id) == []
        wait_metric(
            server, "jobpixel_forward_dropped_total", before[name] + 1, channel=name, reason="withdrawn"
        )


def test_a_channel_failing_five_times_receives_the_event_once_after_recovery(
    server: ForwardingServer, recorders: dict[str, RecordingServer]
) -> None:
    meta = recorders["meta"]
    meta.fail(5, 500)
    grant = server.consent("shop", statistics=True, marketing=True)
    event_id = collect(server, grant)
    wait_for(server, lambda: len([r for r in carrying(meta, "meta", event_id) if r.status == 200]) >= 1)
    rows = wait_logged(server, len(CHANNELS), event_id)
    time.sleep(1.5)  # a second request would come within the retry cap (1 s)
    got = carrying(meta, "meta", event_id)
    assert [r.status for r in got] == [500] * 5 + [200]
    [row] = [r for r in rows if r["channel"] == "meta"]
    assert (row["status"], row["attempts"], row["http_status"]) == ("sent", 6, 200)
    wait_metric(server, "jobpixel_forward_retried_total", 5, at_least=True, channel="meta")


def test_an_event_older_than_a_channels_limit_is_too_old_there_and_sent_elsewhere(
    server: ForwardingServer, recorders: dict[str, RecordingServer]
) -> None:
    # four days in the journal (a server that was down, a channel that was away): past GA4's 72 h,
    # within Meta's 7 days. Written by the journal exactly as put_rows writes it.
    row = event_row("apply_complete", age_s=4 * 86_400)
    server.run(server.state.journal.append("events", [row]))
    rows = wait_logged(server, len(CHANNELS), row["event_id"])
    by = {r["channel"]: r for r in rows}
    assert by["ga4"]["status"] == "too_old" and by["ga4"]["attempts"] == 0
    assert carrying(recorders["ga4"], "ga4", row["event_id"]) == []
    assert {by[c]["status"] for c in ("meta", "linkedin", "snapchat")} == {"sent"}
    [meta] = carrying(recorders["meta"], "meta", row["event_id"])
    assert json.loads(meta.form()["data"][0])[0]["event_time"] == int(row["ts"])
    wait_metric(server, "jobpixel_forward_dropped_total", 1, at_least=True, channel="ga4", reason="too_old")


def test_every_sent_delivery_joins_a_consent_row_that_granted_marketing_before_the_event(
    server: ForwardingServer, recorders: dict[str, RecordingServer]
) -> None:
    ids = []
    for _ in range(3):
        _, view, apply = marketing_visit(server)
        ids += [view, apply]
    # and one event whose grant no consent-log row backs (journaled by hand): the join must flag it
    forged = event_row("apply_complete")
    server.run(server.state.journal.append("events", [forged]))
    ids.append(forged["event_id"])
    # applies: 4 channels; views: GA4 (job_view), Meta, Snap; the forged one: 4
    wait_logged(server, 3 * len(CHANNELS) + 3 * 3 + len(CHANNELS), *ids)
    proof = server.query(
        """
        SELECT d.channel AS channel, toString(d.event_id) AS event_id,
               countIf(has(c.granted, 'marketing') AND c.ts <= d.event_ts) AS proofs
        FROM (SELECT * FROM ${db}.delivery_log FINAL
              WHERE status = 'sent' AND has({ids:Array(String)}, toString(event_id))) AS d
        LEFT JOIN ${db}.consent_log AS c
          ON c.consent_id = d.consent_id AND c.choice_id = d.choice_id
        GROUP BY channel, event_id
        """,
        {"ids": ch_array(ids)},
    )
    proven = {(p["channel"], p["event_id"]): int(p["proofs"]) for p in proof}
    assert len(proven) == 3 * len(CHANNELS) + 3 * 3 + len(CHANNELS)
    for (channel, event_id), n in proven.items():
        assert (n == 0) == (event_id == forged["event_id"]), (channel, event_id, n)


def test_readyz_and_metrics_show_the_outbox(
    server: ForwardingServer, recorders: dict[str, RecordingServer]
) -> None:
    snap = recorders["snapchat"]
    snap.fail(10_000, 503)
    grant = server.consent("shop", statistics=True, marketing=True)
    event_id = collect(server, grant)
    wait_for(server, lambda: len(carrying(snap, "snapchat", event_id)) >= 2)
    # the delivery process reports its state every REPORT_S (forwarding/child.py)
    wait_for(
        server,
        lambda: (
            (o := httpx.get(server.url + "/readyz", headers=OPS).json()["outbox"])["depth"] >= 1
            and o["oldest_age_s"] > 0
        ),
        flush=False,
    )
    series = (
        'jobpixel_forward_queued_total{channel="snapchat"}',
        'jobpixel_forward_sent_total{channel="meta"}',
        'jobpixel_forward_retried_total{channel="snapchat"}',
        'jobpixel_forward_latency_seconds_count{channel="meta"}',
        "jobpixel_forward_outbox_depth",
        "jobpixel_forward_outbox_oldest_seconds",
    )
    wait_for(
        server,
        lambda: all(s in httpx.get(server.url + "/metrics", headers=OPS).text for s in series),
        flush=False,
    )
    snap.recover()
    wait_logged(server, len(CHANNELS), event_id)
    wait_for(
        server,
        lambda: httpx.get(server.url + "/readyz", headers=OPS).json()["outbox"]["depth"] == 0,
        flush=False,
    )


def server_metric(server: ForwardingServer, name: str, **labels: str) -> float:
    value = server.state.metrics.registry.get_sample_value(name, labels)
    return float(value) if value is not None else 0.0


def wait_metric(
    server: ForwardingServer, name: str, want: float, at_least: bool = False, **labels: str
) -> None:
    """The delivery process reports its metrics every second (forwarding/child.py): wait for them."""
    deadline = time.monotonic() + 5.0
    while (got := server_metric(server, name, **labels)) != want and not (at_least and got >= want):
        assert time.monotonic() < deadline, f"{name}{labels} = {got}, not {want}"
        time.sleep(0.05)


def journal_row(server: ForwardingServer, event_id: str) -> dict[str, Any]:
    for path in sorted((server.data_dir / "journal").glob("*.events.jsonl")):
        for line in path.read_bytes().splitlines():
            if event_id.encode() in line:
                row: dict[str, Any] = json.loads(line)
                return row
    raise AssertionError(f"{event_id} not in the journal")


def test_channel_ids_and_user_agent_reach_the_journal_only_under_marketing(server: ForwardingServer) -> None:
    marketing = collect(server, server.consent("shop", statistics=True, marketing=True))
    stats_only = collect(server, server.consent("shop", statistics=True, marketing=False), marketing=True)
    row = journal_row(server, marketing)  # the open segment: not sealed until the next flush
    assert row["channel_ids"] == CHANNEL_IDS and row["user_agent"] == DESKTOP_UA
    row = journal_row(server, stats_only)
    assert "channel_ids" not in row and "user_agent" not in row and row["marketing"] == 0
    # never columns of `events`: ClickHouse skips them, the event is stored
    assert server.events(event_id=marketing) and "channel_ids" not in server.events(event_id=marketing)[0]


@pytest.mark.parametrize(
    ("channel_ids", "field"),
    [
        ("fb.1.2", "channel_ids"),
        ({"fbp": 7}, "channel_ids.fbp"),
        ({"scid": "x" * 201}, "channel_ids.scid"),
    ],
)
def test_bad_channel_ids_are_a_400_naming_the_field(
    server: ForwardingServer, channel_ids: Any, field: str
) -> None:
    grant = server.consent("shop", statistics=True, marketing=True)
    doc = {
        "site": "shop",
        "name": "pageview",
        "url": server.partner.origin + "/jobb/4711",
        "event_id": str(uuid.uuid4()),
        "token": grant["token"],
        "channel_ids": channel_ids,
    }
    r = httpx.post(
        server.url + "/collect",
        content=json.dumps(doc),
        headers={"Content-Type": "text/plain", "Origin": server.partner.origin, "User-Agent": DESKTOP_UA},
    )
    assert r.status_code == 400 and r.json()["field"] == field


def test_erasure_drops_the_subjects_queued_deliveries_and_spares_the_others(
    server: ForwardingServer, recorders: dict[str, RecordingServer]
) -> None:
    """rights × forwarding: ``DELETE /me`` on a server that forwards reaches the running outbox —
    the subject's queued deliveries are gone from memory and from the file, another visitor's stay."""
    snap = recorders["snapchat"]
    snap.fail(10_000, 503)
    mine, theirs = (server.consent("shop", statistics=True, marketing=True) for _ in range(2))
    my_event, their_event = collect(server, mine), collect(server, theirs)
    wait_for(server, lambda: carrying(snap, "snapchat", my_event) and carrying(snap, "snapchat", their_event))
    r = httpx.delete(
        server.url + "/me",
        params={"site": "shop"},
        headers={"Authorization": f"Bearer {mine['token']}", "Origin": server.partner.origin},
    )
    assert r.status_code == 200, r.text
    assert r.json()["erased"]["outbox"] >= 1, r.json()
    # one more retry round of the other visitor's delivery: anything in flight at the erasure is over
    seen = len(carrying(snap, "snapchat", their_event))
    wait_for(server, lambda: len(carrying(snap, "snapchat", their_event)) > seen, flush=False)
    tried = len(carrying(snap, "snapchat", my_event))
    snap.recover()
    wait_logged(server, len(CHANNELS), their_event)
    assert [x.status for x in carrying(snap, "snapchat", their_event)][-1] == 200
    assert len(carrying(snap, "snapchat", my_event)) == tried  # never again, let alone delivered
    files = [p for p in (server.data_dir / "outbox").rglob("*") if p.is_file()]
    outbox = b"".join(p.read_bytes() for p in files)
    assert files, "no outbox file where the outbox keeps it"
    assert mine["consent_id"].encode() not in outbox and my_event.encode() not in outbox
