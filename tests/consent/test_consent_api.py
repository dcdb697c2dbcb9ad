"""``POST /consent`` and ``GET /consent/{id}``: the consent log as proof, and the token it unlocks."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import httpx
import pytest

from pixel_server.consent.api import consent_rates
from tests.harness import DESKTOP_UA, LiveServer


def choice(**fields: Any) -> dict[str, Any]:
    return {
        "site": "test",
        "consent_id": str(uuid.uuid4()),
        "choice_id": str(uuid.uuid4()),
        "action": "custom",
        "granted": ["necessary", "statistics"],
        "denied": ["marketing"],
        "revision": 1,
        "lang": "nb",
        "gpc": False,
        "layer": 2,
        **fields,
    }


def post(server: LiveServer, body: Any, **headers: str) -> httpx.Response:
    h = {"Content-Type": "text/plain", "Origin": server.partner.origin, "User-Agent": DESKTOP_UA, **headers}
    return httpx.post(server.url + "/consent", content=json.dumps(body), headers=h)


def test_choice_is_logged_with_every_field(pixel_server: LiveServer) -> None:
    body = choice()
    r = post(pixel_server, body)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == pixel_server.partner.origin
    assert r.json()["token"] and r.json()["token_expires"] > 0
    [row] = pixel_server.consent_rows()
    assert row["choice_id"] == body["choice_id"] and row["consent_id"] == body["consent_id"]
    assert (row["site_id"], row["action"], row["revision"], row["lang"], row["gpc"], row["layer"]) == (
        "test",
        "custom",
        1,
        "nb",
        0,
        2,
    )
    assert row["granted"] == ["necessary", "statistics"] and row["denied"] == ["marketing"]
    assert row["ua_family"] == "Chrome"
    assert row["ts"].endswith("Z")


def test_token_only_with_statistics(pixel_server: LiveServer) -> None:
    r = post(
        pixel_server, choice(action="reject_all", granted=["necessary"], denied=["statistics", "marketing"])
    )
    assert r.status_code == 200 and r.json()["token"] is None


def test_visitor_id_kept_only_from_a_grant_of_the_same_consent(pixel_server: LiveServer) -> None:
    grants = pixel_server.state.grants
    cid = str(uuid.uuid4())
    first = post(pixel_server, choice(consent_id=cid)).json()
    vid = grants.verify(first["token"]).visitor_id  # type: ignore[union-attr]
    again = post(pixel_server, choice(consent_id=cid, token=first["token"])).json()
    assert again["token"] != first["token"]  # a new grant, for the new choice
    assert grants.verify(again["token"]).visitor_id == vid  # type: ignore[union-attr]
    for token in (first["token"], "forged.token.value-forged-forged"):  # another consent's grant, a forgery
        fresh = post(pixel_server, choice(token=token)).json()
        assert fresh["token"] and grants.verify(fresh["token"]).visitor_id != vid  # type: ignore[union-attr]


def test_retried_choice_is_one_row(pixel_server: LiveServer) -> None:
    body = choice()
    first = post(pixel_server, body)
    again = post(pixel_server, body)
    assert first.status_code == again.status_code == 200
    pixel_server.flush()
    assert post(pixel_server, body).status_code == 200  # once it is in ClickHouse, too
    assert len(pixel_server.consent_rows()) == 1
    # the retry's grant is as of the logged choice, not of now
    grants = pixel_server.state.grants
    assert grants.verify(again.json()["token"]).issued_at == grants.verify(first.json()["token"]).issued_at  # type: ignore[union-attr]


@pytest.mark.parametrize("how", ["header", "body"])
def test_gpc_keeps_marketing_off(pixel_server: LiveServer, how: str) -> None:
    body = choice(action="accept_all", granted=["necessary", "statistics", "marketing"], denied=[])
    if how == "body":
        body["gpc"] = True
    r = post(pixel_server, body, **({"Sec-GPC": "1"} if how == "header" else {}))
    assert r.json()["granted"] == ["necessary", "statistics"]
    [row] = pixel_server.consent_rows()
    assert row["gpc"] == 1 and row["denied"] == ["marketing"] and "marketing" not in row["granted"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "maybe"}, "action"),
        ({"consent_id": "x"}, "consent_id"),
        ({"choice_id": None}, "choice_id"),
        ({"granted": ["cookies"]}, "granted"),
        ({"granted": "statistics"}, "granted"),
        ({"granted": ["statistics"], "denied": ["statistics"]}, "denied"),
        ({"denied": ["necessary"]}, "denied"),
        ({"revision": 0}, "revision"),
        ({"lang": "de"}, "lang"),
        ({"gpc": "1"}, "gpc"),
        ({"layer": 3}, "layer"),
        ({"layer": 1.0}, "layer"),  # accepted once, then ClickHouse refused the whole spool segment
        ({"layer": True}, "layer"),
        ({"revision": 1.0}, "revision"),
        ({"layer": 0}, "layer"),
        ({"action": "expired", "layer": 1}, "layer"),
        ({"site": ""}, "site"),
    ],
)
def test_bad_choices_name_the_field(pixel_server: LiveServer, fields: dict[str, Any], field: str) -> None:
    r = post(pixel_server, choice(**fields))
    assert r.status_code == 400 and r.json()["field"] == field, r.text
    assert pixel_server.consent_rows() == []


def test_unknown_site_and_foreign_origin_are_403(pixel_server: LiveServer) -> None:
    assert post(pixel_server, choice(site="nope")).status_code == 403
    r = post(pixel_server, choice(), Origin="https://evil.example")
    assert r.status_code == 403 and r.json()["error"] == "bad_origin"


def test_history_newest_first(pixel_server: LiveServer) -> None:
    cid = str(uuid.uuid4())
    post(
        pixel_server,
        choice(
            consent_id=cid, action="accept_all", granted=["necessary", "statistics", "marketing"], denied=[]
        ),
    )
    post(
        pixel_server,
        choice(consent_id=cid, action="withdraw", granted=["necessary"], denied=["statistics", "marketing"]),
    )
    grant = post(pixel_server, choice(consent_id=cid)).json()["token"]
    r = httpx.get(
        f"{pixel_server.url}/consent/{cid}",
        params={"site": "test"},
        headers={"Origin": pixel_server.partner.origin, "Authorization": f"Bearer {grant}"},
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == pixel_server.partner.origin
    hist = r.json()["history"]
    assert [h["action"] for h in hist] == ["custom", "withdraw", "accept_all"]
    assert hist[1]["denied"] == ["statistics", "marketing"] and hist[1]["gpc"] is False
    assert httpx.get(f"{pixel_server.url}/consent/not-a-uuid", params={"site": "test"}).status_code == 400
    other = httpx.get(
        f"{pixel_server.url}/consent/{cid}",
        params={"site": "shop"},
        headers={"Authorization": f"Bearer {grant}"},
    )
    assert other.status_code == 401  # a consent id is per site, and so is its grant


def test_consent_rates_per_day_and_category(pixel_server: LiveServer) -> None:
    post(
        pixel_server, choice(action="accept_all", granted=["necessary", "statistics", "marketing"], denied=[])
    )
    post(pixel_server, choice(action="reject_all", granted=["necessary"], denied=["statistics", "marketing"]))
    post(pixel_server, choice())
    pixel_server.flush()
    assert pixel_server.state.store is not None
    now = dt.datetime.now(dt.UTC)
    rates = consent_rates(
        pixel_server.state.store, "test", now - dt.timedelta(days=1), now + dt.timedelta(days=1)
    )
    by_cat = {r["category"]: (r["granted"], r["denied"]) for r in rates}
    assert by_cat == {"statistics": (2, 1), "marketing": (1, 2)}
