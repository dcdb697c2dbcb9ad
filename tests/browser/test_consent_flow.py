"""The consent flow end to end in Chromium: what reaches the network, the cookies and the consent log.

Every request the page makes is recorded (``page.on("request")``); requests to any host but the
partner site and the pixel server are answered by the ``third_party`` fixture with an empty script
and recorded there too, so a tag load is observed without the internet.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import ThirdParty
from tests.harness import TEST_CHANNELS, LiveServer

SHOP = "jobb/4711/banner_shop.html"
TEST = "jobb/4711/banner_test.html"
# the configured channels' script hosts (pixel_server.core.channels), for site "shop"
TAG_HOSTS = {
    "www.googletagmanager.com",
    "connect.facebook.net",
    "snap.licdn.com",
    "sc-static.net",
    "adsby.bidtheatre.com",
}
GPC_ON = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
CHANNEL_COOKIES = ["_ga", "_ga_TEST123", "_gcl_au", "_fbp", "_fbc", "li_fat_id", "_scid", "_scid_r"]


class Recorder:
    """Every request a page makes, in order."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        page.on("request", lambda r: self.urls.append(r.url))

    def hosts(self) -> set[str]:
        return {urllib.parse.urlsplit(u).netloc for u in self.urls}


def own_hosts(server: LiveServer) -> set[str]:
    return {urllib.parse.urlsplit(server.url).netloc, urllib.parse.urlsplit(server.partner.origin).netloc}


def cookies(context: BrowserContext) -> dict[str, str]:
    return {c["name"]: c["value"] for c in context.cookies()}


def consent_cookie(context: BrowserContext) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(urllib.parse.unquote(cookies(context)["jobpixel_consent"]))
    return value


def wait_until(page: Page, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll a condition on server-side state. Waits with page.wait_for_timeout, not time.sleep: the
    sync Playwright client must keep handling the routed requests while the test waits."""
    deadline = time.monotonic() + timeout
    while not (result := check()) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    return result


def rows(page: Page, server: LiveServer, n: int, **where: Any) -> list[dict[str, Any]]:
    """The consent-log rows, once there are at least n (or what there is after the timeout)."""
    wait_until(page, lambda: len(server.consent_rows(**where)) >= n)
    return server.consent_rows(**where)


def events(page: Page, server: LiveServer, n: int, **where: Any) -> list[dict[str, Any]]:
    """The stored events, once there are at least n (or what there is after the timeout)."""
    wait_until(page, lambda: len(server.events(**where)) >= n)
    return server.events(**where)


def open_page(page: Page, server: LiveServer, path: str = SHOP) -> None:
    page.goto(server.origin_page_url(path))
    expect(page.locator("dialog.jpb-1")).to_be_visible()


def choose(page: Page, label: str) -> None:
    """Click a banner button and wait until the pixel has heard the choice (POST /consent answered)."""
    with page.expect_event("console", predicate=lambda m: m.text == "jobpixel:consent", timeout=10_000):
        page.evaluate(
            "() => addEventListener('jobpixel:consent', () => console.log('jobpixel:consent'), {once: true})"
        )
        page.get_by_role("button", name=label, exact=True).click()


def third_party_after(tp: ThirdParty, mark: int) -> list[str]:
    return tp.requests[mark:]


def test_before_any_choice_nothing_leaves_the_page(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    rec = Recorder(page)
    open_page(page, pixel_server)
    page.wait_for_load_state("networkidle")
    assert rec.hosts() <= own_hosts(pixel_server)
    assert third_party.requests == []
    assert cookies(context) == {}
    assert pixel_server.events() == []
    assert pixel_server.consent_rows() == []
    # gated scripts stay inert
    assert page.evaluate("window.gatedStatistics") is None
    assert page.locator('script[type="text/plain"]').count() == 2


def test_reject_all_keeps_everything_off_on_this_and_later_pages(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    rec = Recorder(page)
    open_page(page, pixel_server)
    choose(page, "Avvis alle")
    expect(page.locator("dialog.jpb")).to_have_count(0)
    assert set(cookies(context)) == {"jobpixel_consent"}
    c = consent_cookie(context)
    assert (c["v"], c["s"], c["m"], c["rev"], c["gpc"]) == (1, 0, 0, 1, 0)
    (row,) = rows(page, pixel_server, 1)
    assert row["action"] == "reject_all"
    assert row["granted"] == ["necessary"] and row["denied"] == ["statistics", "marketing"]
    assert (row["layer"], row["revision"], row["lang"], row["gpc"]) == (1, 1, "nb", 0)
    assert str(row["consent_id"]) == c["id"]

    page.reload()
    page.wait_for_load_state("networkidle")
    page.goto(pixel_server.origin_page_url("jobb/4712/banner_shop.html"))
    page.wait_for_load_state("networkidle")
    expect(page.locator("dialog.jpb-1")).to_have_count(0)
    assert rec.hosts() <= own_hosts(pixel_server)
    assert third_party.requests == []
    assert set(cookies(context)) == {"jobpixel_consent"}
    assert pixel_server.events() == []
    assert len(pixel_server.consent_rows()) == 1


def test_statistics_only_stores_events_and_calls_no_third_party(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    rec = Recorder(page)
    open_page(page, pixel_server)
    page.get_by_role("button", name="Innstillinger").click()
    page.get_by_role("switch", name="Statistikk").check()
    choose(page, "Lagre valg")
    (row,) = rows(page, pixel_server, 1)
    assert (row["action"], row["layer"]) == ("custom", 2)
    assert row["granted"] == ["necessary", "statistics"] and row["denied"] == ["marketing"]
    assert set(cookies(context)) == {"jobpixel_consent", "jobpixel_vid"}
    assert page.evaluate("window.gatedStatistics") is True
    stored = events(page, pixel_server, 1, site_id="shop")
    assert [e["name"] for e in stored] == ["pageview"]
    page.reload()
    stored = events(page, pixel_server, 2, site_id="shop", name="pageview")
    assert len(stored) == 2 and len({e["visitor_id"] for e in stored}) == 1  # same token, same visitor
    page.wait_for_load_state("networkidle")
    assert third_party.requests == []
    assert rec.hosts() <= own_hosts(pixel_server)


def test_marketing_loads_the_configured_tags_and_withdrawal_stops_them(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server)
    choose(page, "Godta alle")
    wait_until(page, lambda: {urllib.parse.urlsplit(u).hostname for u in third_party.requests} >= TAG_HOSTS)
    assert third_party.hosts() >= TAG_HOSTS
    assert "https://www.googletagmanager.com/gtag/js?id=G-TEST123" in third_party.requests
    assert "https://gated.example.test/tag.js" in third_party.requests  # the gated marketing script
    # the vendors' init snippets ran
    assert page.evaluate("window._linkedin_partner_id") == TEST_CHANNELS["linkedin"]["id"]
    queued = page.evaluate("JSON.stringify(Array.from(window.fbq.queue, a => Array.from(a)))")
    assert ["init", TEST_CHANNELS["meta"]["id"]] in json.loads(queued)
    consent_updates = page.evaluate(
        "dataLayer.filter(a => a[0] == 'consent' && a[1] == 'update').map(a => a[2])"
    )
    assert consent_updates[-1] == {
        "analytics_storage": "granted",
        "ad_storage": "granted",
        "ad_user_data": "granted",
        "ad_personalization": "granted",
    }
    (row,) = rows(page, pixel_server, 1)
    assert row["action"] == "accept_all"
    assert row["granted"] == ["necessary", "statistics", "marketing"]

    # the tags set their cookies (the test stand-ins are empty scripts, so set them the way the tags do)
    for name in CHANNEL_COOKIES:
        page.evaluate(f"document.cookie = '{name}=x; path=/; max-age=3600'")
    assert set(CHANNEL_COOKIES) <= set(cookies(context))

    page.reload()  # a later page with marketing consent starts the tags again
    expect(page.locator("button.jpb-f")).to_be_visible()
    wait_until(page, lambda: len(third_party.requests) >= 2 * len(TAG_HOSTS) + 2)

    mark = len(third_party.requests)
    page.locator("button.jpb-f").click()
    expect(page.locator("dialog.jpb-2")).to_be_visible()
    choose(page, "Avvis alle")  # one click withdraws
    assert set(cookies(context)) == {"jobpixel_consent"}
    c = consent_cookie(context)
    assert (c["s"], c["m"]) == (0, 0)
    assert page.evaluate("window['ga-disable-G-TEST123']") is True
    last = page.evaluate("dataLayer.filter(a => a[0] == 'consent' && a[1] == 'update').map(a => a[2]).pop()")
    assert set(last.values()) == {"denied"}
    withdrawal = rows(page, pixel_server, 2)[-1]
    assert withdrawal["action"] == "withdraw"
    assert withdrawal["granted"] == ["necessary"] and withdrawal["layer"] == 2

    page.reload()
    page.goto(pixel_server.origin_page_url("jobb/4712/banner_shop.html"))
    page.wait_for_load_state("networkidle")
    assert third_party_after(third_party, mark) == []
    assert set(cookies(context)) == {"jobpixel_consent"}


def test_each_action_is_exactly_one_log_row(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server, TEST)
    choose(page, "Godta alle")
    page.get_by_role("link", name="Se/endre dine innstillinger").click()
    expect(page.locator("dialog.jpb-2")).to_be_visible()
    page.get_by_role("switch", name="Markedsføring").uncheck()
    choose(page, "Lagre valg")
    page.get_by_role("link", name="Se/endre dine innstillinger").click()
    page.get_by_role("switch", name="Markedsføring").check()
    choose(page, "Lagre valg")
    got = rows(page, pixel_server, 3)
    assert [(r["action"], r["layer"], r["granted"]) for r in got] == [
        ("accept_all", 1, ["necessary", "statistics", "marketing"]),
        ("withdraw", 2, ["necessary", "statistics"]),
        ("custom", 2, ["necessary", "statistics", "marketing"]),
    ]
    cid = consent_cookie(context)["id"]
    assert {str(r["consent_id"]) for r in got} == {cid}
    assert len({str(r["choice_id"]) for r in got}) == 3
    assert {r["site_id"] for r in got} == {"test"}
    assert {r["ua_family"] for r in got} == {"Chrome"}
    page.wait_for_timeout(500)  # nothing else trickles in
    assert len(pixel_server.consent_rows()) == 3


def test_a_revision_bump_logs_expired_and_asks_again(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server, TEST)
    choose(page, "Godta alle")
    first = consent_cookie(context)
    assert "jobpixel_vid" in cookies(context)
    pixel_server.restart(revision=2)
    page.reload()
    expect(page.locator("dialog.jpb-1")).to_be_visible()
    expired = rows(page, pixel_server, 2)[-1]
    assert expired["action"] == "expired" and expired["layer"] == 0  # no layer: the banner logged it itself
    assert expired["revision"] == 1 and expired["granted"] == ["necessary", "statistics", "marketing"]
    assert "jobpixel_vid" not in cookies(context)
    assert consent_cookie(context)["s"] == 0
    page.reload()  # ignored banner, another page: asked again, not logged again
    expect(page.locator("dialog.jpb-1")).to_be_visible()
    choose(page, "Avvis alle")
    got = rows(page, pixel_server, 3)
    assert [r["action"] for r in got] == ["accept_all", "expired", "reject_all"]
    assert got[-1]["revision"] == 2
    now = consent_cookie(context)
    assert (now["id"], now["first"], now["rev"]) == (first["id"], first["first"], 2)


@pytest.mark.parametrize("how", ["navigator", "header"])
def test_gpc_keeps_marketing_off_and_says_why(
    how: str, page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    if how == "navigator":
        context.add_init_script(
            "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
        )
    else:
        context.set_extra_http_headers({"Sec-GPC": "1"})
    open_page(page, pixel_server)
    if how == "navigator":
        expect(page.locator("dialog.jpb-1")).to_contain_text("Global Privacy Control")
        page.get_by_role("button", name="Innstillinger").click()
        expect(page.get_by_role("switch", name="Markedsføring")).to_be_disabled()
        expect(page.get_by_role("switch", name="Markedsføring")).not_to_be_checked()
    choose(page, "Godta alle")
    (row,) = rows(page, pixel_server, 1)
    assert row["gpc"] == 1
    assert row["granted"] == ["necessary", "statistics"] and "marketing" in row["denied"]
    c = consent_cookie(context)
    assert (c["s"], c["m"], c["gpc"]) == (1, 0, 1)
    page.reload()
    page.wait_for_load_state("networkidle")
    assert third_party.requests == []


def test_gpc_turned_on_after_marketing_consent_withdraws_it(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    context.add_cookies(pixel_server.grant(statistics=True, marketing=True, site="shop"))
    context.add_init_script(GPC_ON)
    page.goto(pixel_server.origin_page_url(SHOP))
    got = rows(page, pixel_server, 2)
    assert [(r["action"], r["gpc"], r["granted"]) for r in got][-1] == (
        "withdraw",
        1,
        ["necessary", "statistics"],
    )
    page.wait_for_load_state("networkidle")
    c = consent_cookie(context)
    assert (c["s"], c["m"], c["gpc"]) == (1, 0, 1)
    assert third_party.requests == []
    expect(page.locator("dialog")).to_have_count(0)


def test_withdrawal_ends_the_grant_at_once(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    """Issue #7: accept → events under the grant; withdraw → /collect refuses that grant at once."""
    open_page(page, pixel_server, TEST)
    choose(page, "Godta alle")
    grant = urllib.parse.unquote(cookies(context)["jobpixel_vid"])
    verified = pixel_server.state.grants.verify(grant)
    assert verified is not None and verified.marketing and verified.site == "test"
    stored = events(page, pixel_server, 1)
    for event in stored:
        assert (event["visitor_id"], event["consent_id"]) == (str(verified.visitor_id), verified.consent_id)
        assert event["choice_id"] == verified.choice_id and event["marketing"] == 1

    page.get_by_role("link", name="Se/endre dine innstillinger").click()
    expect(page.locator("dialog.jpb-2")).to_be_visible()
    # A withdrawal is in force in the page before its POST /consent is answered (it is sent after
    # the pixel is told): wait for that answer, or the request below races it.
    with page.expect_response(lambda r: r.url.endswith("/consent") and r.request.method == "POST"):
        choose(page, "Avvis alle")
    assert "jobpixel_vid" not in cookies(context)
    # the very next request with the old grant, straight after the banner's answer, no flush between
    body = {"site": "test", "name": "pageview", "url": pixel_server.origin_page_url(TEST), "token": grant}
    r = page.request.post(
        pixel_server.url + "/collect",
        data=json.dumps({**body, "event_id": "7f1c2b8e-1111-4a4a-9b9b-123456789abc"}),
        headers={"Content-Type": "text/plain", "Origin": pixel_server.partner.origin},
    )
    assert r.status == 403 and r.json() == {
        "error": "no_consent",
        "field": "token",
        "detail": "the grant was withdrawn",
    }
    withdrawal = rows(page, pixel_server, 2)[-1]
    assert withdrawal["action"] == "withdraw"
    # the banner sent the grant with the withdrawal: the row names the visitor by its keyed hash only
    from pixel_server.consent.log import visitor_hash

    assert withdrawal["visitor_hash"] == visitor_hash(
        pixel_server.state.settings.hash_key, verified.visitor_id
    )
    page.reload()
    page.wait_for_load_state("networkidle")
    assert len(pixel_server.events()) == len(stored)  # nothing measured after the withdrawal


def test_no_click_id_is_stored_for_a_statistics_only_visitor(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    """Issue #7 §2 in Chromium: every known click id in the URL, its fragment, the referrer, the SPA
    referrer after the page cleaned its URL with replaceState, and props; none is stored."""
    from pixel_server.core.clickids import CLICK_ID_KEYS

    ids = "&".join(f"{key}=zq{i:02d}q" for i, key in enumerate(CLICK_ID_KEYS))
    context.add_cookies(pixel_server.grant(statistics=True, marketing=False))  # type: ignore[arg-type]
    page.goto(
        pixel_server.origin_page_url(f"/jobb/4711/pixel_ad.html?utm_source=s&{ids}#{ids}"),
        referer=f"https://www.google.com/aclk?{ids}",
    )
    events(page, pixel_server, 1, name="pageview")
    page.evaluate("history.replaceState({}, '', location.pathname + '?utm_source=s')")  # the page cleans up
    page.evaluate("history.pushState({}, '', '/jobb/777/pixel_ad.html')")  # an SPA view
    landing = f"{pixel_server.partner.origin}/?{ids}"
    page.evaluate(f"jobpixel('track', 'custom_event', {{gclid: 'zqpq', landing: '{landing}'}})")
    events(page, pixel_server, 1, name="custom_event")
    events(page, pixel_server, 1, ad_id="777")
    stored = pixel_server.events()
    assert "zq" not in json.dumps(stored)
    assert all(e["click_ids"] == {} and e["marketing"] == 0 for e in stored)
    first = min(
        (e for e in stored if e["name"] == "pageview" and e["ad_id"] == "4711"), key=lambda e: e["ts"]
    )
    [second] = [e for e in stored if e["name"] == "pageview" and e["ad_id"] == "777"]
    assert first["url"] == pixel_server.origin_page_url("/jobb/4711/pixel_ad.html?utm_source=s")
    assert first["referrer"] == "https://www.google.com/aclk" and first["click_id_type"] == "gclid"
    assert second["referrer"] == pixel_server.origin_page_url("/jobb/4711/pixel_ad.html")
