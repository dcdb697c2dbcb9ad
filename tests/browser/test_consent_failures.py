"""The banner when ``POST /consent`` fails, hangs or answers nonsense, and the cookies it leaves.

The rules (ARCHITECTURE.md, "Pixel ↔ banner in the page"):

- a grant (any category turned on) holds only once the consent log has it: the cookie, the
  visitor id, the tags, Consent Mode and ``jobpixel:consent`` wait for a 2xx with the contract's
  JSON body; a failure keeps the previous choice, says so in the layer, and a retry works;
- a denial holds at once, whatever the POST does (it still goes out, ``keepalive``, to be logged);
- ``jobpixel_vid`` never outlives the consent that let it be written;
- nothing the banner does surfaces as an error on the host page.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Error, Page, Route, expect

from tests.browser.conftest import ThirdParty
from tests.browser.test_banner_a11y import serious
from tests.browser.test_consent_flow import (
    GPC_ON,
    SHOP,
    TAG_HOSTS,
    TEST,
    choose,
    consent_cookie,
    cookies,
    events,
    open_page,
    rows,
    wait_until,
)
from tests.harness import LiveServer

FAILED = "Valget ditt ble ikke lagret"  # texts/nb.json "failed"
CONSENT_UPDATES = "dataLayer.filter(a => a[0] == 'consent' && a[1] == 'update').map(a => a[2])"
ALL_DENIED = dict.fromkeys(
    ("analytics_storage", "ad_storage", "ad_user_data", "ad_personalization"), "denied"
)
STATISTICS_ONLY = {**ALL_DENIED, "analytics_storage": "granted"}


def count_announcements(page: Page) -> None:
    """Record every ``jobpixel:consent`` the banner dispatches in ``window.__told`` (details)."""
    page.evaluate(
        "() => { window.__told = [];"
        " addEventListener('jobpixel:consent', e => window.__told.push(e.detail)) }"
    )


def told(page: Page) -> list[dict[str, bool]]:
    result: list[dict[str, bool]] = page.evaluate("window.__told")
    return result


def tag_hosts(tp: ThirdParty) -> set[str]:
    return {urllib.parse.urlsplit(u).hostname or "" for u in tp.requests}


def fail_consent(failure: str) -> Any:
    def handle(route: Route) -> None:
        if failure == "503":
            route.fulfill(status=503, content_type="application/json", body='{"error":"unavailable"}')
        else:
            route.abort("connectionreset")

    return handle


def assert_nothing_granted(page: Page, context: BrowserContext, server: LiveServer, tp: ThirdParty) -> None:
    page.wait_for_timeout(300)  # anything the failed answer could still set off
    assert cookies(context) == {}
    assert tp.requests == []
    assert told(page) == []
    assert page.evaluate(CONSENT_UPDATES) == []
    assert page.evaluate("window.gatedStatistics") is None
    assert server.consent_rows() == []
    assert server.events() == []


# -- 1. a grant needs the consent log's answer ----------------------------------------------------


@pytest.mark.parametrize("failure", ["503", "abort"])
def test_a_grant_the_consent_log_did_not_take_is_not_applied_and_can_be_retried(
    failure: str, page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    page.route("**/consent", fail_consent(failure))
    open_page(page, pixel_server)
    count_announcements(page)
    page.get_by_role("button", name="Godta alle", exact=True).click()
    assert_nothing_granted(page, context, pixel_server, third_party)
    layer = page.locator("dialog.jpb-1")
    expect(layer.get_by_role("status")).to_contain_text(FAILED)  # told, in the layer still open
    expect(layer).to_be_visible()
    assert serious(page, "dialog.jpb-1") == []  # the message is readable

    page.unroute("**/consent")
    choose(page, "Godta alle")  # the retry goes through
    expect(page.locator("dialog.jpb")).to_have_count(0)
    wait_until(page, lambda: tag_hosts(third_party) >= TAG_HOSTS)
    (row,) = rows(page, pixel_server, 1)
    assert row["action"] == "accept_all"
    c = consent_cookie(context)
    assert (c["s"], c["m"]) == (1, 1)
    assert "jobpixel_vid" in cookies(context)
    assert len(events(page, pixel_server, 1, name="pageview")) == 1


def test_a_retry_after_a_lost_answer_is_logged_once(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    """The server logged the grant but its answer never arrived: the retry carries the same choice_id."""
    sent: list[dict[str, Any]] = []

    def lose_answer(route: Route) -> None:
        sent.append(route.request.post_data_json)
        route.fetch()  # the server has it
        route.fulfill(status=502, body="")

    page.route("**/consent", lose_answer)
    open_page(page, pixel_server)
    page.get_by_role("button", name="Godta alle", exact=True).click()
    expect(page.locator("dialog.jpb-1").get_by_role("status")).to_contain_text(FAILED)
    assert cookies(context) == {}
    page.unroute("**/consent")
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/consent") else None)
    choose(page, "Godta alle")
    assert len(sent) == 2
    assert [(b["consent_id"], b["choice_id"]) for b in sent[1:]] == [
        (sent[0]["consent_id"], sent[0]["choice_id"])
    ]
    page.wait_for_timeout(300)
    (row,) = rows(page, pixel_server, 1)
    assert row["action"] == "accept_all"
    c = consent_cookie(context)
    assert (c["s"], c["m"]) == (1, 1)


def test_a_failed_upgrade_keeps_the_previous_choice(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    context.add_cookies(pixel_server.grant(statistics=True, site="shop"))  # type: ignore[arg-type]
    page.goto(pixel_server.origin_page_url(SHOP))
    events(page, pixel_server, 1, name="pageview")
    before = cookies(context)
    page.route("**/consent", fail_consent("503"))
    count_announcements(page)
    page.get_by_role("button", name="Personvernvalg").click()
    layer = page.locator("dialog.jpb-2")
    layer.get_by_role("switch", name="Markedsføring").check()
    layer.get_by_role("button", name="Lagre valg").click()
    page.wait_for_timeout(300)
    assert cookies(context) == before  # statistics only, same visitor id
    assert told(page) == []
    assert third_party.requests == []
    assert page.evaluate(CONSENT_UPDATES)[-1] == STATISTICS_ONLY
    page.evaluate("jobpixel('track', 'still_counted')")  # statistics holds as before
    assert len(events(page, pixel_server, 1, name="still_counted")) == 1
    assert len(pixel_server.consent_rows()) == 1  # the grant() row only
    expect(layer.get_by_role("status")).to_contain_text(FAILED)


# -- 2. a withdrawal holds at once ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["reject-all", "marketing-off"])
def test_withdrawal_takes_effect_while_the_consent_post_is_still_in_flight(
    how: str, page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    context.add_cookies(pixel_server.grant(statistics=True, marketing=True, site="shop"))  # type: ignore[arg-type]
    page.goto(pixel_server.origin_page_url(SHOP))
    wait_until(page, lambda: tag_hosts(third_party) >= TAG_HOSTS)
    events(page, pixel_server, 1, name="pageview")
    held: list[Route] = []
    page.route("**/consent", lambda route: held.append(route))  # answered only at the end of the test
    collects: list[str] = []
    page.on("request", lambda r: collects.append(r.url) if r.url.endswith("/collect") else None)
    count_announcements(page)

    page.get_by_role("button", name="Personvernvalg").click()
    layer = page.locator("dialog.jpb-2")
    if how == "reject-all":
        layer.get_by_role("button", name="Avvis alle").click()
    else:
        layer.get_by_role("switch", name="Markedsføring").uncheck()
        layer.get_by_role("button", name="Lagre valg").click()
    page.wait_for_function("window.__told.length > 0")

    stat = how == "marketing-off"
    assert told(page) == [{"statistics": stat, "marketing": False}]
    assert page.evaluate(CONSENT_UPDATES)[-1] == (STATISTICS_ONLY if stat else ALL_DENIED)
    assert page.evaluate("window['ga-disable-G-TEST123']") is True
    expect(page.locator("dialog.jpb")).to_have_count(0)
    c = consent_cookie(context)
    assert (c["s"], c["m"]) == (int(stat), 0)
    assert ("jobpixel_vid" in cookies(context)) is stat
    wait_until(page, lambda: held)
    (post,) = held
    assert post.request.post_data_json["action"] == "withdraw"
    assert len(pixel_server.consent_rows()) == 1  # not logged yet: the POST is held

    mark, sent = len(third_party.requests), len(collects)
    page.evaluate("jobpixel('track', 'after_withdrawal')")
    page.click("#apply")
    if stat:  # statistics kept: the pixel goes on
        assert len(events(page, pixel_server, 1, name="after_withdrawal")) == 1
    else:  # the pixel stopped
        page.wait_for_timeout(300)
        assert len(collects) == sent
    assert third_party.requests[mark:] == []

    post.continue_()  # the server logs it after all
    assert rows(page, pixel_server, 2)[-1]["action"] == "withdraw"
    page.wait_for_timeout(200)
    assert page.evaluate(CONSENT_UPDATES)[-1] == (STATISTICS_ONLY if stat else ALL_DENIED)
    assert consent_cookie(context)["m"] == 0


# -- 4. a statistics-only return visit --------------------------------------------------------------


def test_statistics_only_is_applied_again_on_a_later_page(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server, TEST)  # site "test": no float button
    page.get_by_role("button", name="Innstillinger").click()
    page.get_by_role("switch", name="Statistikk").check()
    choose(page, "Lagre valg")
    page.goto(pixel_server.origin_page_url(TEST.replace("4711", "4712")))
    page.wait_for_function("window.gatedStatistics === true")
    assert page.evaluate(CONSENT_UPDATES) == [STATISTICS_ONLY]
    page.wait_for_load_state("networkidle")
    expect(page.locator("dialog.jpb, button.jpb-f")).to_have_count(0)  # applied, not asked
    assert third_party.requests == []
    assert len(pixel_server.consent_rows()) == 1


# -- 5. the visitor id and the consent ----------------------------------------------------------------


def test_the_visitor_id_cookie_expires_with_the_consent(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server, TEST)
    choose(page, "Godta alle")
    exp = consent_cookie(context)["exp"] / 1000
    jar = {c["name"]: c for c in context.cookies()}
    assert abs(jar["jobpixel_vid"]["expires"] - exp) < 5  # not the token's 13 months
    assert abs(jar["jobpixel_consent"]["expires"] - exp) < 5


def no_consent(server: LiveServer) -> list[dict[str, Any]]:
    return []


def statistics_off(server: LiveServer) -> list[dict[str, Any]]:
    return server.grant(statistics=False)[:1]


def stale_revision_nothing_granted(server: LiveServer) -> list[dict[str, Any]]:
    jar = server.grant(statistics=False)[:1]
    jar[0]["value"] = jar[0]["value"].replace("%22rev%22%3A1", "%22rev%22%3A0")
    return jar


@pytest.mark.parametrize("consent", [no_consent, statistics_off, stale_revision_nothing_granted])
def test_a_visitor_id_without_statistics_consent_is_deleted(
    consent: Any, page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    token = pixel_server.consent()["token"]
    jar = consent(pixel_server)
    rows_before = len(pixel_server.consent_rows())
    jar.append({"name": "jobpixel_vid", "value": token, "url": pixel_server.partner.origin})
    context.add_cookies(jar)  # type: ignore[arg-type]
    page.goto(pixel_server.origin_page_url(TEST))
    assert wait_until(page, lambda: "jobpixel_vid" not in cookies(context))
    page.wait_for_load_state("networkidle")
    assert pixel_server.events() == []
    assert len(pixel_server.consent_rows()) == rows_before  # nothing to log


# -- 6. errors stay inside the banner -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/html", "<html>502 Bad Gateway</html>"), ("application/json", "null"), ("application/json", "{}")],
    ids=["html", "null", "no-granted"],
)
def test_a_2xx_answer_off_the_contract_changes_nothing_and_throws_nothing(
    content_type: str,
    body: str,
    page: Page,
    context: BrowserContext,
    pixel_server: LiveServer,
    third_party: ThirdParty,
) -> None:
    errors: list[Error] = []
    page.on("pageerror", lambda e: errors.append(e))
    page.route("**/consent", lambda route: route.fulfill(status=200, content_type=content_type, body=body))
    open_page(page, pixel_server)
    count_announcements(page)
    page.get_by_role("button", name="Godta alle", exact=True).click()
    assert_nothing_granted(page, context, pixel_server, third_party)
    assert errors == []
    expect(page.locator("dialog.jpb-1").get_by_role("status")).to_contain_text(FAILED)


def test_banner_errors_never_reach_the_host_page(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    """A browser without modal dialogs, a GPC withdrawal whose log is down: the host page hears nothing."""
    errors: list[Error] = []
    page.on("pageerror", lambda e: errors.append(e))
    context.add_cookies(pixel_server.grant(statistics=True, marketing=True, site="shop"))  # type: ignore[arg-type]
    context.add_init_script(GPC_ON)
    page.add_init_script("HTMLDialogElement.prototype.showModal = undefined")
    page.route("**/consent", lambda route: route.fulfill(status=200, content_type="text/html", body="<html>"))
    page.goto(pixel_server.origin_page_url(SHOP))
    page.wait_for_function("window.__jpbanner && window.__jpbanner.state.cfg")
    page.wait_for_timeout(300)
    c = consent_cookie(context)
    assert (c["s"], c["m"], c["gpc"]) == (1, 0, 1)  # GPC withdrew marketing at once
    page.get_by_role("button", name="Personvernvalg").click()  # showModal throws in here
    page.evaluate("jobpixel('settings')")
    page.wait_for_timeout(300)
    assert third_party.requests == []
    assert errors == []
