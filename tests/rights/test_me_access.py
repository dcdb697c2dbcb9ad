"""``/me``: the grant is the key. Forged, tampered, another site's or expired grants get 401 and nothing
of anyone's — and ``DELETE`` with one erases nothing; a withdrawn grant still opens its own data.
CORS only for the site's origins; JSON with a format_version, or CSV; rate limited."""

from __future__ import annotations

import csv
import io
import time

import httpx

from tests.harness import make_grant
from tests.rights.conftest import RightsServer


def _swap_visitor(token: str, other: str) -> str:
    """A real grant with its visitor field replaced by another grant's (signature no longer matches)."""
    parts, other_parts = token.split("."), other.split(".")
    parts[1] = other_parts[1]
    return ".".join(parts)


def test_bad_grants_get_401_and_erase_nothing(rights_server: RightsServer) -> None:
    s = rights_server
    a, b = s.consent(), s.consent()
    shop = s.consent(site="shop")
    s.post_events(a["token"], 2)
    s.post_events(b["token"], 1)
    s.flush()
    ga = s.state.grants.verify(a["token"])
    assert ga is not None
    expired = make_grant(
        visitor_id=ga.visitor_id,
        consent_id=ga.consent_id,
        issued_at=time.time() - 400 * 86_400,
        expires_at=time.time() - 10,
    )
    bad = {
        "forged (another key)": make_grant("another-signing-key-0123456789", visitor_id=ga.visitor_id).token,
        "tampered (A's grant, B's visitor id)": _swap_visitor(a["token"], b["token"]),
        "another site's": shop["token"],
        "expired": expired.token,
        "garbage": "g1.x.y",
        "none": None,
    }
    for what, token in bad.items():
        for method in ("GET", "DELETE"):
            r = s.me(method, token)
            assert r.status_code == 401, (what, method, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "tables" not in r.json() and "erased" not in r.json()
    r = httpx.get(s.url + "/me?site=test", headers={"Authorization": f"Basic {a['token']}"})
    assert r.status_code == 401
    assert len(s.events(visitor_id=str(ga.visitor_id))) == 2  # nothing erased by any of them
    assert s.query("SELECT * FROM ${db}.erasure_log") == []
    assert s.collect_one(a["token"]).status_code == 204  # and nobody's grant was revoked
    assert s.me("GET", b["token"], site="shop").status_code == 401  # B's grant is for site test
    assert s.me("GET", a["token"], site="nope").status_code == 404


def test_a_withdrawn_grant_still_opens_and_erases_its_own_data(rights_server: RightsServer) -> None:
    s = rights_server
    a = s.consent()
    s.post_events(a["token"], 3)
    withdraw = {k: a[k] for k in ("site", "consent_id", "revision", "lang", "gpc", "layer")} | {
        "choice_id": __import__("uuid").uuid4().hex,
        "action": "withdraw",
        "granted": ["necessary"],
        "denied": ["statistics", "marketing"],
        "token": a["token"],
    }
    r = httpx.post(s.url + "/consent", json=withdraw, headers={"Origin": s.partner.origin})
    assert r.status_code == 200, r.text
    assert s.collect_one(a["token"]).status_code == 403  # withdrawn: nothing more is stored
    doc = s.me("GET", a["token"]).json()
    assert doc["format_version"] == 1
    tables = doc["tables"]
    assert len([e for e in tables["events"] + tables.get("journal.events", [])]) == 3
    assert [c["action"] for c in tables["consent_log"] + tables.get("journal.consent_log", [])].count(
        "withdraw"
    ) == 1
    assert all(e["ad_id"] == "4711" for e in tables["events"] + tables.get("journal.events", []))
    erased = s.me("DELETE", a["token"]).json()["erased"]
    assert erased.get("events", 0) + erased.get("journal.events", 0) == 3
    after = s.me("GET", a["token"]).json()["tables"]
    assert all(rows == [] for rows in after.values())


def test_export_as_csv_and_the_ads_they_touched(rights_server: RightsServer) -> None:
    s = rights_server
    a = s.consent()
    job = {"title": "Sykepleier", "category": "Helse", "location": "Oslo", "words": 600}
    s.post_events(a["token"], 1, job=job)
    s.flush()
    doc = s.me("GET", a["token"]).json()
    assert [(ad["ad_id"], ad["latest"]["title"]) for ad in doc["tables"]["ads"]] == [("4711", "Sykepleier")]
    r = s.me("GET", a["token"], Accept="text/csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["table", "row", "column", "value"]
    assert ["events", "0", "ad_id", "4711"] in rows
    assert ["consent_log", "0", "action", "custom"] in rows


def test_cors_only_for_the_sites_origins(rights_server: RightsServer) -> None:
    s = rights_server
    a = s.consent()
    ok = s.me("GET", a["token"], Origin=s.partner.origin)
    assert ok.headers["access-control-allow-origin"] == s.partner.origin
    other = s.me("GET", a["token"], Origin="https://evil.example")
    assert "access-control-allow-origin" not in other.headers
    pre = httpx.options(
        s.url + "/me?site=test",
        headers={"Origin": s.partner.origin, "Access-Control-Request-Method": "DELETE"},
    )
    assert pre.status_code == 204 and "DELETE" in pre.headers["access-control-allow-methods"]
    pre = httpx.options(
        s.url + "/me?site=test",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in pre.headers


def test_rate_limited(rights_server: RightsServer) -> None:
    s = rights_server
    a = s.consent()
    s.post_events(a["token"], 1)
    codes = [s.me("GET", a["token"]).status_code for _ in range(21)]
    assert codes[:20] == [200] * 20 and codes[20] == 429
    limited = s.me("DELETE", a["token"])  # the same budget; nothing erased
    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    assert len(s.events()) == 1
