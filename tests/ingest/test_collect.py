"""``POST /collect`` over real HTTP against the real server on chDB."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from pixel_server.core.grant import Grants
from tests.harness import DESKTOP_UA, OPS, SIGNING_KEY, LiveServer, make_grant


def event(pixel_server: LiveServer, token: str, **fields: Any) -> dict[str, Any]:
    return {
        "site": "test",
        "ad": "4711",
        "name": "pageview",
        "url": pixel_server.partner.origin + "/jobb/4711?utm_source=finn&utm_medium=cpc&gclid=G123",
        "referrer": "https://www.finn.no/job/fulltime",
        "event_id": str(uuid.uuid4()),
        "client_ts": int(time.time() * 1000),
        "token": token,
        **fields,
    }


def post(pixel_server: LiveServer, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {
        "Content-Type": "text/plain;charset=UTF-8",
        "Origin": pixel_server.partner.origin,
        "User-Agent": DESKTOP_UA,
    }
    return httpx.post(pixel_server.url + "/collect", content=raw, headers={**h, **(headers or {})})


@pytest.fixture
def token(pixel_server: LiveServer) -> str:
    tok: str = pixel_server.consent()["token"]
    return tok


def test_accepted_event_is_queryable_with_enrichment(pixel_server: LiveServer, token: str) -> None:
    ev = event(pixel_server, token, props={"department": "kirurgi", "grade": 3})
    r = post(pixel_server, ev)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == pixel_server.partner.origin
    [row] = pixel_server.events()
    assert row["event_id"] == ev["event_id"]
    assert (row["site_id"], row["ad_id"], row["name"]) == ("test", "4711", "pageview")
    # no marketing consent: the click id's value is not kept, not in the URL either
    assert row["url"] == pixel_server.partner.origin + "/jobb/4711?utm_source=finn&utm_medium=cpc"
    assert row["referrer"] == ev["referrer"]
    assert row["referrer_domain"] == "finn.no"
    assert (row["utm_source"], row["utm_medium"]) == ("finn", "cpc")
    assert row["click_id_type"] == "gclid"
    assert row["click_ids"] == {}  # no marketing consent: the click id itself is not kept
    assert (row["browser"], row["os"], row["device"]) == ("Chrome", "Linux", "desktop")
    assert row["props"] == {"department": "kirurgi", "grade": "3"}
    grant = Grants((SIGNING_KEY,)).verify(token)
    assert grant is not None and row["visitor_id"] == str(grant.visitor_id)
    assert (row["consent_id"], row["choice_id"]) == (grant.consent_id, grant.choice_id)
    assert row["ts"].endswith("Z")
    assert "ip" not in " ".join(row).lower()  # no column could hold an address


@pytest.fixture
def marketing_token(pixel_server: LiveServer) -> str:
    tok: str = pixel_server.consent(marketing=True)["token"]
    return tok


def test_click_ids_kept_only_with_marketing_consent(pixel_server: LiveServer, marketing_token: str) -> None:
    assert post(pixel_server, event(pixel_server, marketing_token)).status_code == 204
    [row] = pixel_server.events()
    assert row["click_ids"] == {"gclid": "G123"} and row["marketing"] == 1
    assert row["url"].endswith("&gclid=G123")


def test_sec_gpc_keeps_marketing_off(pixel_server: LiveServer, marketing_token: str) -> None:
    r = post(pixel_server, event(pixel_server, marketing_token), {"Sec-GPC": "1"})
    assert r.status_code == 204
    [row] = pixel_server.events()
    assert row["marketing"] == 0 and row["click_ids"] == {} and "G123" not in row["url"]


def test_same_batch_posted_twice_is_counted_once(pixel_server: LiveServer, token: str) -> None:
    batch = [event(pixel_server, token, name=n) for n in ("pageview", "engagement", "apply_click")]
    assert post(pixel_server, batch).status_code == 204
    pixel_server.flush()
    assert post(pixel_server, batch).status_code == 204  # a retry after the first was stored
    assert post(pixel_server, batch).status_code == 204  # and one still in the spool
    rows = pixel_server.events()
    assert sorted(r["event_id"] for r in rows) == sorted(e["event_id"] for e in batch)
    counts = pixel_server.query(
        "SELECT name, count() AS n FROM ${db}.events FINAL GROUP BY name ORDER BY name"
    )
    assert counts == [
        {"name": "apply_click", "n": 1},
        {"name": "engagement", "n": 1},
        {"name": "pageview", "n": 1},
    ]


LONG = "x" * 2001


@pytest.mark.parametrize(
    ("mutate", "status", "error", "field"),
    [
        (lambda e: {**e, "url": "https://x.test/" + LONG}, 400, "invalid", "url"),
        (lambda e: {**e, "referrer": "https://x.test/" + LONG}, 400, "invalid", "referrer"),
        (lambda e: {**e, "name": "n" * 65}, 400, "invalid", "name"),
        (lambda e: {**e, "name": "has space"}, 400, "invalid", "name"),
        (lambda e: {**e, "ad": "a" * 65}, 400, "invalid", "ad"),
        (lambda e: {**e, "props": {f"k{i}": "v" for i in range(21)}}, 400, "invalid", "props"),
        (lambda e: {**e, "props": {"k" * 65: "v"}}, 400, "invalid", "props." + "k" * 64),
        (lambda e: {**e, "props": {"k": "v" * 501}}, 400, "invalid", "props.k"),
        (lambda e: {**e, "props": {"k": {"nested": 1}}}, 400, "invalid", "props.k"),
        (lambda e: {**e, "props": []}, 400, "invalid", "props"),
        (lambda e: {**e, "event_id": "not-a-uuid"}, 400, "invalid", "event_id"),
        (lambda e: {k: v for k, v in e.items() if k != "event_id"}, 400, "invalid", "event_id"),
        (lambda e: {k: v for k, v in e.items() if k != "url"}, 400, "invalid", "url"),
        (lambda e: {k: v for k, v in e.items() if k != "name"}, 400, "invalid", "name"),
        (lambda e: {**e, "url": "javascript:alert(1)"}, 400, "invalid", "url"),
        (lambda e: {**e, "url": "http://[x/"}, 400, "invalid", "url"),  # urlsplit raises: was a 500
        (lambda e: {**e, "url": "http:///no-host"}, 400, "invalid", "url"),
        (lambda e: {**e, "referrer": "http://[x/"}, 400, "invalid", "referrer"),
        (lambda e: {**e, "referrer": "http://a\uff03b@c/"}, 400, "invalid", "referrer"),  # NFKC look-alike
        (lambda e: {**e, "engaged_ms": -1}, 400, "invalid", "engaged_ms"),
        (lambda e: {**e, "engaged_ms": "12"}, 400, "invalid", "engaged_ms"),
        (lambda e: {**e, "scroll": 101}, 400, "invalid", "scroll"),
        (lambda e: {**e, "pageview_id": "nope"}, 400, "invalid", "pageview_id"),
        (lambda e: {**e, "site": "nope"}, 403, "unknown_site", "site"),
        (lambda e: {k: v for k, v in e.items() if k != "token"}, 403, "no_consent", "token"),
        (lambda e: {**e, "token": e["token"][:-2] + "xx"}, 403, "no_consent", "token"),
    ],
)
def test_every_limit_answers_its_4xx_naming_the_field(
    pixel_server: LiveServer, token: str, mutate: Any, status: int, error: str, field: str
) -> None:
    r = post(pixel_server, mutate(event(pixel_server, token)))
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert r.json()["field"] == field
    assert r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "error", "field"),
    [
        (b"{not json", {}, 400, "invalid", "body"),
        (b"42", {}, 400, "invalid", "body"),
        (b"[]", {}, 400, "invalid", "body"),
        (b"[1]", {}, 400, "invalid", "events[0]"),
        (b"x" * (64 * 1024 + 1), {}, 413, "too_large", "body"),
        (
            b"{}",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
            "content-type",
        ),
        (
            b"{}",
            {"Content-Type": "multipart/form-data; boundary=x"},
            415,
            "unsupported_media_type",
            "content-type",
        ),
    ],
)
def test_malformed_bodies(
    pixel_server: LiveServer, body: bytes, headers: dict[str, str], status: int, error: str, field: str
) -> None:
    r = post(pixel_server, body, headers)
    assert r.status_code == status
    assert (r.json()["error"], r.json()["field"]) == (error, field)


def test_batch_limit_and_field_path_in_batch(pixel_server: LiveServer, token: str) -> None:
    too_many = [event(pixel_server, token) for _ in range(51)]
    r = post(pixel_server, too_many)
    assert r.status_code == 400 and "at most 50" in r.json()["detail"]
    fifty = [event(pixel_server, token) for _ in range(50)]
    assert post(pixel_server, fifty).status_code == 204
    bad = [event(pixel_server, token) for _ in range(3)]
    bad[2]["url"] = "nope"
    r = post(pixel_server, bad)
    assert r.status_code == 400 and r.json()["field"] == "events[2].url"
    assert len(pixel_server.events()) == 50  # the bad batch stored nothing; the good one is intact


def test_origin_not_allowed_is_403(pixel_server: LiveServer, token: str) -> None:
    r = post(pixel_server, event(pixel_server, token), {"Origin": "https://evil.example"})
    assert r.status_code == 403 and (r.json()["error"], r.json()["field"]) == ("bad_origin", "origin")
    assert "https://evil.example" in r.json()["detail"]
    assert "access-control-allow-origin" not in r.headers


def test_no_origin_is_refused_even_with_the_sites_page_url(pixel_server: LiveServer, token: str) -> None:
    """door: non-browser clients are not our users; a browser sends Origin with every POST."""
    r = httpx.post(
        pixel_server.url + "/collect",
        content=json.dumps(event(pixel_server, token)),  # the page URL is on the site's origin
        headers={"Content-Type": "text/plain", "User-Agent": DESKTOP_UA},
    )
    assert r.status_code == 403 and (r.json()["error"], r.json()["field"]) == ("bad_origin", "origin")
    assert "no Origin header" in r.json()["detail"]
    assert pixel_server.events() == []
    metrics = httpx.get(pixel_server.url + "/metrics", headers=OPS).text
    assert 'jobpixel_events_dropped_total{reason="bad_origin"} 1.0' in metrics


def test_expired_token_is_refused(pixel_server: LiveServer) -> None:
    old = make_grant(issued_at=time.time() - 183 * 86_400, expires_at=time.time() - 86_400).token
    r = post(pixel_server, event(pixel_server, old))
    assert r.status_code == 403 and r.json()["error"] == "no_consent"


def test_token_signed_with_unknown_key_is_refused(pixel_server: LiveServer) -> None:
    forged = make_grant("some-other-key-0123456789").token
    assert post(pixel_server, event(pixel_server, forged)).status_code == 403


@pytest.mark.parametrize(
    "ua",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/130.0.0.0 Safari/537.36",
        "curl/8.5.0",
        "",
    ],
)
def test_bots_are_dropped_and_counted(pixel_server: LiveServer, token: str, ua: str) -> None:
    r = post(pixel_server, event(pixel_server, token), {"User-Agent": ua})
    assert r.status_code == 200 and r.json() == {"accepted": 0, "dropped": {"bot": 1}}
    assert pixel_server.events() == []
    metrics = httpx.get(pixel_server.url + "/metrics", headers=OPS).text
    assert 'jobpixel_events_dropped_total{reason="bot"} 1.0' in metrics


def test_rejections_are_counted_by_reason(pixel_server: LiveServer, token: str) -> None:
    post(pixel_server, event(pixel_server, token, url="nope"))
    post(pixel_server, event(pixel_server, token, site="nope"))
    post(pixel_server, event(pixel_server, token))
    text = httpx.get(pixel_server.url + "/metrics", headers=OPS).text
    assert 'jobpixel_events_dropped_total{reason="invalid"} 1.0' in text
    assert 'jobpixel_events_dropped_total{reason="unknown_site"} 1.0' in text
    assert 'jobpixel_events_accepted_total{site="test"} 1.0' in text


def test_preflight_for_allowed_origin_only(pixel_server: LiveServer) -> None:
    ok = httpx.options(
        pixel_server.url + "/collect",
        headers={"Origin": pixel_server.partner.origin, "Access-Control-Request-Method": "POST"},
    )
    assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == pixel_server.partner.origin
    no = httpx.options(pixel_server.url + "/collect", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in no.headers
