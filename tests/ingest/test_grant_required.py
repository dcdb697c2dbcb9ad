"""Issue #7: ``/collect`` stores what the verified grant allows, and no click id without marketing."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from pixel_server.core.clickids import CLICK_ID_KEYS
from tests.harness import DESKTOP_UA, LiveServer, make_grant


def post(server: LiveServer, events: Any, **headers: str) -> httpx.Response:
    h = {"Content-Type": "text/plain", "Origin": server.partner.origin, "User-Agent": DESKTOP_UA, **headers}
    return httpx.post(server.url + "/collect", content=json.dumps(events), headers=h)


def event(server: LiveServer, token: str, **fields: Any) -> dict[str, Any]:
    return {
        "site": "test",
        "name": "pageview",
        "url": server.partner.origin + "/jobb/1",
        "event_id": str(uuid.uuid4()),
        "token": token,
        **fields,
    }


def test_statistics_only_visitor_claiming_marketing_stores_no_click_id(pixel_server: LiveServer) -> None:
    token = pixel_server.consent(statistics=True, marketing=False)["token"]
    url = pixel_server.partner.origin + "/jobb/1?utm_source=google&gclid=G-SECRET"
    assert post(pixel_server, event(pixel_server, token, url=url, marketing=True)).status_code == 204
    [row] = pixel_server.events()
    assert row["marketing"] == 0 and row["click_ids"] == {}
    assert "G-SECRET" not in json.dumps(row)


def test_grant_for_another_site_is_no_consent(pixel_server: LiveServer) -> None:
    shop = pixel_server.consent(site="shop")["token"]
    r = post(pixel_server, event(pixel_server, shop))
    assert r.status_code == 403 and r.json()["error"] == "no_consent"
    test = pixel_server.consent(site="test")["token"]
    mixed = [event(pixel_server, test), event(pixel_server, test, site="shop")]  # one grant, two sites
    r = post(pixel_server, mixed)
    assert r.status_code == 403 and r.json()["field"] == "events[1].token"
    assert pixel_server.events() == []


@pytest.mark.parametrize(
    ("over", "detail"),
    [
        ({"categories": {"marketing"}}, "the grant does not include statistics"),
        ({"categories": set()}, "the grant does not include statistics"),
        ({"issued_at": time.time() - 200 * 86_400, "expires_at": time.time() - 1}, "no valid grant"),
        ({"site": "nope"}, "a grant for another site"),
    ],
)
def test_a_grant_that_does_not_cover_the_event_is_no_consent(
    pixel_server: LiveServer, over: dict[str, Any], detail: str
) -> None:
    token = make_grant(**over).token
    r = post(pixel_server, event(pixel_server, token))
    assert r.status_code == 403 and r.json()["error"] == "no_consent"
    assert r.json()["detail"].startswith(detail)


def test_a_grant_for_an_older_revision_is_no_consent(pixel_server: LiveServer) -> None:
    token = pixel_server.consent()["token"]
    assert post(pixel_server, event(pixel_server, token)).status_code == 204
    pixel_server.restart(revision=2)  # the operator changed the banner: everyone must choose again
    r = post(pixel_server, event(pixel_server, token))
    assert r.status_code == 403 and "older banner revision" in r.json()["detail"]
    # a choice claiming the old revision is logged (what the visitor saw) but grants nothing
    assert pixel_server.consent(revision=1)["token"] is None
    newer = httpx.post(
        pixel_server.url + "/consent",
        content=json.dumps(
            {**pixel_server.consent(revision=2), "choice_id": str(uuid.uuid4()), "revision": 3}
        ),
        headers={"Origin": pixel_server.partner.origin},
    )
    assert newer.status_code == 400 and newer.json()["field"] == "revision"
    assert (
        post(pixel_server, event(pixel_server, pixel_server.consent(revision=2)["token"])).status_code == 204
    )


def every_click_id(tag: str) -> str:
    return "&".join(f"{key}={tag}{i:02d}X" for i, key in enumerate(CLICK_ID_KEYS))


def test_every_click_id_everywhere_is_stripped_without_marketing(pixel_server: LiveServer) -> None:
    """url, referrer (the previous URL after an SPA replaceState), fragment and props."""
    token = pixel_server.consent(statistics=True, marketing=False)["token"]
    origin = pixel_server.partner.origin
    landing = f"{origin}/jobb/1?utm_source=s&{every_click_id('url')}#{every_click_id('frag')}"
    upper = f"{origin}/jobb/1?" + every_click_id("up").upper()
    evs = [
        event(
            pixel_server, token, url=landing, referrer=f"https://www.google.com/aclk?{every_click_id('ref')}"
        ),
        # SPA: the page replaced its URL, and the next view names the full previous URL as its referrer
        event(pixel_server, token, url=f"{origin}/jobb/2", referrer=landing),
        event(pixel_server, token, url=upper),
        *(
            event(
                pixel_server,
                token,
                name="custom",
                props={
                    **{key: f"prop{i:02d}X" for i, key in enumerate(CLICK_ID_KEYS) if i % 2 == half},
                    "landing": f"{origin}/jobb/1?utm_source=s&gclid=lpgX&_gl=lpgX#gclid=lpgX",
                    "note": f"from ?gclid=noteX and {every_click_id('note')}",
                    "dept": "kirurgi",
                },
            )
            for half in (0, 1)  # at most 20 props an event
        ),
    ]
    r = post(pixel_server, evs)
    assert r.status_code == 204, r.text
    rows = pixel_server.events()
    assert len(rows) == 5
    stored = json.dumps(rows)
    assert 'X"' not in stored and "X&" not in stored and "X#" not in stored  # no click-id value at all
    assert "lpgX" not in stored
    for tag in ("url", "frag", "ref", "up", "prop", "note"):
        assert f"{tag}00" not in stored.lower()
    for row in rows:
        assert row["click_ids"] == {} and row["marketing"] == 0 and "#" not in row["url"]
        assert "?" not in row["referrer"] and "#" not in row["referrer"]
    by_name = {r["url"]: r for r in rows}
    assert by_name[f"{origin}/jobb/1?utm_source=s"]["utm_source"] == "s"
    assert by_name[f"{origin}/jobb/2"]["referrer"] == f"{origin}/jobb/1"
    for custom in [r for r in rows if r["name"] == "custom"]:
        assert custom["props"] == {"landing": f"{origin}/jobb/1?utm_source=s", "dept": "kirurgi"}


def test_click_ids_kept_behind_a_marketing_grant(pixel_server: LiveServer) -> None:
    token = pixel_server.consent(statistics=True, marketing=True)["token"]
    url = pixel_server.partner.origin + "/jobb/1?msclkid=M1&ttclid=T1&_gl=1*x&q=secret#frag"
    assert post(pixel_server, event(pixel_server, token, url=url, props={"gclid": "G1"})).status_code == 204
    [row] = pixel_server.events()
    assert row["marketing"] == 1 and row["click_ids"] == {"_gl": "1*x", "msclkid": "M1", "ttclid": "T1"}
    assert row["url"] == pixel_server.partner.origin + "/jobb/1?msclkid=M1&ttclid=T1&_gl=1%2Ax"
    assert row["props"] == {"gclid": "G1"}


def test_per_site_allow_list_of_query_parameters(pixel_server: LiveServer) -> None:
    pixel_server.restart(keep_query=["lang"])
    token = pixel_server.consent()["token"]
    url = pixel_server.partner.origin + "/jobb/1?lang=nn&utm_source=s&email=a@b.no"
    assert post(pixel_server, event(pixel_server, token, url=url)).status_code == 204
    [row] = pixel_server.events()
    assert row["url"] == pixel_server.partner.origin + "/jobb/1?lang=nn"
    assert row["utm_source"] == "s"  # UTM is read into its columns whatever the allow-list keeps in url
