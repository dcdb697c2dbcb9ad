"""Issue #7: the consent log is append-only proof, and its history opens only to the grant's holder."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from pixel_server.consent.log import visitor_hash
from tests.harness import DESKTOP_UA, LiveServer, make_grant

ALL = ["necessary", "statistics", "marketing"]


def body(**over: Any) -> dict[str, Any]:
    return {
        "site": "test",
        "consent_id": str(uuid.uuid4()),
        "choice_id": str(uuid.uuid4()),
        "action": "accept_all",
        "granted": ALL,
        "denied": [],
        **over,
    }


def post(server: LiveServer, doc: dict[str, Any]) -> httpx.Response:
    h = {"Origin": server.partner.origin, "User-Agent": DESKTOP_UA, "X-Forwarded-For": "203.0.113.7"}
    return httpx.post(server.url + "/consent", content=json.dumps(doc), headers=h)


REWRITES = [
    {"action": "reject_all", "granted": ["necessary"], "denied": ["statistics", "marketing"]},
    {"action": "withdraw", "granted": ["necessary"], "denied": ["statistics", "marketing"]},
    {"lang": "en"},
    {"revision": 1, "layer": 2},
]


@pytest.mark.parametrize("when", ["journal", "clickhouse", "after_restart"])
@pytest.mark.parametrize("change", REWRITES)
def test_same_choice_id_with_another_body_is_refused_and_never_replaces(
    pixel_server: LiveServer, when: str, change: dict[str, Any]
) -> None:
    first = body()
    assert post(pixel_server, first).status_code == 200
    if when == "clickhouse":
        pixel_server.flush()
    elif when == "after_restart":
        pixel_server.restart()  # an empty index: the log itself is asked
    r = post(pixel_server, {**first, **change})
    assert r.status_code == 409 and r.json()["error"] == "conflict" and r.json()["field"] == "choice_id"
    [row] = pixel_server.consent_rows(choice_id=first["choice_id"])
    assert row["action"] == "accept_all" and row["granted"] == ALL
    assert post(pixel_server, first).status_code == 200  # the exact retry is still fine, and one row
    assert len(pixel_server.consent_rows(choice_id=first["choice_id"])) == 1


def test_rows_hold_server_facts_and_a_keyed_visitor_hash_never_the_id_or_ip(pixel_server: LiveServer) -> None:
    doc = body()
    grant = pixel_server.state.grants.verify(post(pixel_server, doc).json()["token"])
    assert grant is not None
    [row] = pixel_server.consent_rows(choice_id=doc["choice_id"])
    key = pixel_server.state.settings.hash_key
    assert (
        row["visitor_hash"] == visitor_hash(key, grant.visitor_id) != visitor_hash("x" * 16, grant.visitor_id)
    )
    flat = json.dumps(row)
    assert str(grant.visitor_id) not in flat and grant.visitor_id.hex not in flat
    assert "203.0.113.7" not in flat and "127.0.0.1" not in flat
    assert row["ua_family"] == "Chrome" and row["row_id"] and row["body_hash"]


def history(server: LiveServer, cid: str, auth: str | None, site: str = "test") -> httpx.Response:
    headers = {"Origin": server.partner.origin} | ({"Authorization": auth} if auth is not None else {})
    return httpx.get(f"{server.url}/consent/{cid}", params={"site": site}, headers=headers)


def test_history_needs_the_grant_of_that_consent(pixel_server: LiveServer) -> None:
    doc = body()
    cid = doc["consent_id"]
    token = post(pixel_server, doc).json()["token"]
    other = post(pixel_server, body()).json()["token"]
    refused = [
        None,  # knowing the consent id is not enough
        "",
        f"Bearer {other}",  # another consent's grant
        f"Bearer {make_grant('some-other-key-0123456789', consent_id=cid).token}",  # forged
        f"Basic {token}",
        f"Bearer {token[:-3]}xyz",
    ]
    for auth in refused:
        r = history(pixel_server, cid, auth)
        assert r.status_code == 401 and r.json()["field"] == "authorization", auth
        assert r.headers["www-authenticate"] == "Bearer"
    ok = history(pixel_server, cid, f"Bearer {token}")
    assert ok.status_code == 200 and [h["action"] for h in ok.json()["history"]] == ["accept_all"]
    # withdrawn, the grant still proves the history is theirs
    post(pixel_server, body(consent_id=cid, action="withdraw", granted=["necessary"], token=token))
    again = history(pixel_server, cid, f"Bearer {token}")
    assert [h["action"] for h in again.json()["history"]] == ["withdraw", "accept_all"]


def test_history_preflight_allows_the_authorization_header(pixel_server: LiveServer) -> None:
    r = httpx.options(
        f"{pixel_server.url}/consent/{uuid.uuid4()}",
        headers={
            "Origin": pixel_server.partner.origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert r.status_code == 204 and "Authorization" in r.headers["access-control-allow-headers"]
