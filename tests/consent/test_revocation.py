"""Issue #7: a withdrawal ends the grant at once, on this node, across restarts and crashes."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixel_server.consent.revocation import Revocations, revokes
from tests.harness import DESKTOP_UA, LiveServer, PartnerSite, make_grant
from tests.storage.test_durability import ORIGIN, Proc, write_config
from tests.storage.test_store_outage import StoreDownServer

ALL = ["necessary", "statistics", "marketing"]


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for pr in started:
        if pr.p.poll() is None:
            pr.kill(signal.SIGKILL)


def choose(
    url: str, origin: str, consent_id: str, action: str, granted: list[str], **extra: Any
) -> httpx.Response:
    body = {
        "site": extra.pop("site", "test"),
        "consent_id": consent_id,
        "choice_id": str(uuid.uuid4()),
        "action": action,
        "granted": granted,
        "denied": [c for c in ALL if c not in granted],
        "layer": 0 if action == "expired" else 1,
        **extra,
    }
    return httpx.post(
        url + "/consent", content=json.dumps(body), headers={"Origin": origin, "User-Agent": DESKTOP_UA}
    )


def collect(url: str, origin: str, token: str, site: str = "test") -> httpx.Response:
    ev = {
        "site": site,
        "name": "pageview",
        "url": origin + "/jobb/1",
        "event_id": str(uuid.uuid4()),
        "token": token,
    }
    headers = {"Content-Type": "text/plain", "Origin": origin, "User-Agent": DESKTOP_UA}
    return httpx.post(url + "/collect", content=json.dumps(ev), headers=headers)


@pytest.mark.parametrize(
    ("action", "granted"),
    [
        ("withdraw", ["necessary"]),
        ("reject_all", ["necessary"]),
        ("expired", ["necessary"]),
        (
            "withdraw",
            ["necessary", "statistics"],
        ),  # marketing taken back: the old grant ends, a new one holds
    ],
)
def test_a_revoking_choice_ends_every_earlier_grant_at_once(
    pixel_server: LiveServer, action: str, granted: list[str]
) -> None:
    url, origin = pixel_server.url, pixel_server.partner.origin
    cid = str(uuid.uuid4())
    first = choose(url, origin, cid, "accept_all", ALL).json()["token"]
    second = choose(url, origin, cid, "accept_all", ALL).json()["token"]  # another tab
    assert collect(url, origin, first).status_code == 204
    back = choose(url, origin, cid, action, granted, token=second)
    assert back.status_code == 200
    for old in (first, second):  # no flush, no wait: the very next request
        r = collect(url, origin, old)
        assert r.status_code == 403 and r.json()["error"] == "no_consent", r.text
    if "statistics" in granted:
        fresh = back.json()["token"]
        assert collect(url, origin, fresh).status_code == 204
        row = pixel_server.events()[-1]
        assert row["marketing"] == 0 and row["choice_id"] == pixel_server.state.grants.verify(fresh).choice_id  # type: ignore[union-attr]
    else:
        assert back.json()["token"] is None
    assert (
        collect(url, origin, choose(url, origin, cid, "accept_all", ALL).json()["token"]).status_code == 204
    )


def test_a_replayed_accept_after_a_withdrawal_grants_nothing(pixel_server: LiveServer) -> None:
    url, origin = pixel_server.url, pixel_server.partner.origin
    cid = str(uuid.uuid4())
    accept = {
        "site": "test",
        "consent_id": cid,
        "choice_id": str(uuid.uuid4()),
        "action": "accept_all",
        "granted": ALL,
        "denied": [],
    }
    h = {"Origin": origin, "User-Agent": DESKTOP_UA}
    assert httpx.post(url + "/consent", content=json.dumps(accept), headers=h).json()["token"]
    choose(url, origin, cid, "withdraw", ["necessary"])
    replay = httpx.post(url + "/consent", content=json.dumps(accept), headers=h)
    assert replay.status_code == 200 and replay.json()["token"] is None  # the retry is as of the old choice


def test_revocations_survive_a_restart(pixel_server: LiveServer) -> None:
    url, origin = pixel_server.url, pixel_server.partner.origin
    cid = str(uuid.uuid4())
    token = choose(url, origin, cid, "accept_all", ALL).json()["token"]
    choose(url, origin, cid, "withdraw", ["necessary"])
    pixel_server.restart()
    assert len(pixel_server.state.revocations) >= 1 and pixel_server.state.revocations.history_loaded
    r = collect(pixel_server.url, origin, token)
    assert r.status_code == 403 and r.json()["detail"] == "the grant was withdrawn"


def test_revocation_written_just_before_sigkill_holds_after_restart(
    tmp_path: Path, procs: list[Proc]
) -> None:  # noqa: F811
    from tests.harness import free_port

    port = free_port()
    server = Proc(write_config(tmp_path, port, flush_interval_ms=60_000), port)  # nothing reaches ClickHouse
    procs.append(server)
    server.wait_ready()
    cid = str(uuid.uuid4())
    token = choose(server.url, ORIGIN, cid, "accept_all", ALL, site="s").json()["token"]
    assert collect(server.url, ORIGIN, token, "s").status_code == 204
    assert choose(server.url, ORIGIN, cid, "withdraw", ["necessary"], site="s").status_code == 200
    server.kill(signal.SIGKILL)  # the withdrawal is only in the journal

    restarted = Proc(write_config(tmp_path, port, flush_interval_ms=60_000), port)
    procs.append(restarted)
    restarted.wait_ready()
    r = collect(restarted.url, ORIGIN, token, "s")
    assert r.status_code == 403 and r.json()["error"] == "no_consent"


def test_store_away_at_start_judges_only_what_it_can(tmp_path: Path, partner_site: PartnerSite) -> None:
    """Journal revocations hold; a grant from before the start is 503 (unknown), never accepted."""
    server = StoreDownServer(tmp_path / "data", partner_site)
    server.start()
    url, origin = server.url, partner_site.origin
    try:
        kept = choose(url, origin, str(uuid.uuid4()), "accept_all", ALL).json()["token"]
        cid = str(uuid.uuid4())
        withdrawn = choose(url, origin, cid, "accept_all", ALL).json()["token"]
        choose(url, origin, cid, "withdraw", ["necessary"])
        server.restart()
        assert collect(url, origin, withdrawn).status_code == 403  # from the journal
        r = collect(url, origin, kept)
        assert r.status_code == 503 and r.json()["error"] == "unavailable"  # cannot tell: not a yes
        fresh = choose(url, origin, str(uuid.uuid4()), "accept_all", ALL).json()["token"]
        assert collect(url, origin, fresh).status_code == 204  # issued since the start: judged here
    finally:
        server.stop()


def test_revocation_index_rules() -> None:
    rev = Revocations(started_at=time.time())
    g = make_grant(issued_at=time.time() - 10)
    assert not rev.is_revoked(g) and not rev.can_judge(g)
    rev.record(g.consent_id, g.issued_at)  # the choice that issued it is not before it
    assert not rev.is_revoked(g)
    rev.record(g.consent_id, g.issued_at + 0.001)
    assert rev.is_revoked(g)
    rev.record(g.consent_id, g.issued_at - 5)  # an older point never moves the latest back
    assert rev.is_revoked(g)
    assert revokes("custom", ["necessary", "statistics"]) and not revokes("accept_all", ALL)
    assert revokes("withdraw", ALL) and revokes("expired", ["necessary"])


def test_a_withdrawal_logged_by_another_node_holds_after_a_reload(pixel_server: LiveServer) -> None:
    """On a cluster the nodes share the consent log: what another node wrote arrives by reload_recent."""
    from pixel_server.consent.revocation import reload_recent

    url, origin = pixel_server.url, pixel_server.partner.origin
    cid = str(uuid.uuid4())
    token = choose(url, origin, cid, "accept_all", ALL).json()["token"]
    assert collect(url, origin, token).status_code == 204
    state = pixel_server.state
    assert state.store is not None
    state.store.insert(  # the other node's loader
        "consent_log",
        [
            {
                "choice_id": str(uuid.uuid4()),
                "consent_id": cid,
                "site_id": "test",
                "ts": time.time(),
                "action": "withdraw",
                "granted": ["necessary"],
                "denied": ["statistics", "marketing"],
                "revision": 1,
                "retention_days": 30,
                "row_id": str(uuid.uuid4()),
            }
        ],
    )
    assert collect(url, origin, token).status_code == 204  # not known here yet
    reload_recent(state.revocations, state.store)
    assert collect(url, origin, token).status_code == 403
