"""The banner as a visitor sees it: layers, languages, disclosures, reopening, crawlers, layout."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from pixel_server.core.channels import REGISTRY
from tests.browser.conftest import ThirdParty
from tests.harness import DESKTOP_UA, TEST_CHANNELS, LiveServer

SHOP = "jobb/4711/banner_shop.html"
TEST = "jobb/4711/banner_test.html"
LAYER1 = "dialog.jpb-1"
LAYER2 = "dialog.jpb-2"


def open_page(page: Page, server: LiveServer, path: str = SHOP) -> None:
    page.goto(server.origin_page_url(path))
    expect(page.locator(LAYER1)).to_be_visible()


def choose(page: Page, label: str) -> None:
    """Click a banner button; return once the pixel was told (after POST /consent answered)."""
    page.evaluate(
        "() => { window.__told = false; addEventListener('jobpixel:consent', () => (window.__told = true)) }"
    )
    page.get_by_role("button", name=label, exact=True).click()
    page.wait_for_function("window.__told")


def consent_cookie(context: BrowserContext) -> dict[str, Any]:
    raw = {c["name"]: c["value"] for c in context.cookies()}["jobpixel_consent"]
    value: dict[str, Any] = json.loads(urllib.parse.unquote(raw))
    return value


def style(page: Page, selector: str, *props: str) -> list[str]:
    return list(
        page.eval_on_selector(
            selector, "(e, ps) => { const s = getComputedStyle(e); return ps.map(p => s[p]) }", props
        )
    )


def test_first_layer_offers_accept_and_reject_with_equal_prominence(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server)
    dialog = page.get_by_role("dialog", name="Personvern og informasjonskapsler")
    expect(dialog).to_be_visible()
    accept = dialog.get_by_role("button", name="Godta alle", exact=True)
    reject = dialog.get_by_role("button", name="Avvis alle", exact=True)
    expect(dialog.get_by_role("button", name="Innstillinger")).to_be_visible()
    props = (
        "fontSize",
        "fontWeight",
        "color",
        "backgroundColor",
        "borderTopWidth",
        "borderTopColor",
        "paddingTop",
    )
    a = accept.evaluate("(e, ps) => [e.tagName, ...ps.map(p => getComputedStyle(e)[p])]", props)
    r = reject.evaluate("(e, ps) => [e.tagName, ...ps.map(p => getComputedStyle(e)[p])]", props)
    assert a == r
    ab, rb = accept.bounding_box(), reject.bounding_box()
    assert ab and rb
    assert abs(ab["width"] - rb["width"]) < 1 and abs(ab["height"] - rb["height"]) < 1
    assert abs(ab["y"] - rb["y"]) < 1  # side by side
    # no pre-ticked boxes: the first layer has none, the second has only the locked "necessary" one on
    expect(dialog.get_by_role("checkbox")).to_have_count(0)
    dialog.get_by_role("button", name="Innstillinger").click()
    expect(page.get_by_role("switch", name="Statistikk")).not_to_be_checked()
    expect(page.get_by_role("switch", name="Markedsføring")).not_to_be_checked()
    expect(page.get_by_role("switch", name="Teknisk nødvendig")).to_be_checked()
    expect(page.get_by_role("switch", name="Teknisk nødvendig")).to_be_disabled()


def test_banner_is_a_fixed_overlay_without_layout_shift(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    page.add_init_script(
        "window.__cls = 0;"
        "new PerformanceObserver(l => l.getEntries().forEach(e => { window.__cls += e.value }))"
        ".observe({type: 'layout-shift', buffered: true})"
    )
    page.goto(pixel_server.origin_page_url(SHOP))
    heading = page.get_by_role("heading", name="Utvikler søkes")
    before = heading.bounding_box()
    expect(page.locator(LAYER1)).to_be_visible()
    assert style(page, LAYER1, "position") == ["fixed"]
    assert heading.bounding_box() == before
    page.wait_for_timeout(300)
    assert page.evaluate("window.__cls") == 0


@pytest.mark.parametrize(
    ("path", "title", "accept", "lang"),
    [
        (TEST, "Personvern og informasjonskapsler", "Godta alle", "nb"),
        ("jobb/4711/banner_nn.html", "Personvern og informasjonskapslar", "Godta alle", "nn"),
        ("jobb/4711/banner_en.html", "Privacy and cookies", "Accept all", "en"),
    ],
)
def test_language_from_data_lang_or_the_page(
    path: str,
    title: str,
    accept: str,
    lang: str,
    page: Page,
    pixel_server: LiveServer,
    third_party: ThirdParty,
) -> None:
    open_page(page, pixel_server, path)
    expect(page.get_by_role("dialog", name=title)).to_be_visible()
    choose(page, accept)
    rows = pixel_server.consent_rows()
    assert [r["lang"] for r in rows] == [lang]


def test_site_can_override_texts(page: Page, pixel_server: LiveServer, third_party: ThirdParty) -> None:
    pixel_server.restart(texts={"nb": {"title": "Vi tar personvern på alvor"}})
    open_page(page, pixel_server, TEST)
    expect(page.get_by_role("dialog", name="Vi tar personvern på alvor")).to_be_visible()
    expect(page.get_by_role("button", name="Godta alle")).to_be_visible()  # the rest stays default


def test_second_layer_discloses_every_channel(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server)
    page.get_by_role("button", name="Innstillinger").click()
    layer = page.get_by_role("dialog", name="Dine personvernvalg")
    expect(layer).to_be_visible()
    expect(layer.get_by_role("link", name="Personvernerklæring", exact=True)).to_have_attribute(
        "href", pixel_server.partner.origin + "/personvern.html"
    )
    layer.get_by_text("Annonsepartnere (5)").click()
    for channel in TEST_CHANNELS:
        spec = REGISTRY[channel]
        entry = layer.locator("dl", has_text=spec.name)
        expect(entry).to_contain_text(spec.purpose_nb)
        expect(entry).to_contain_text("Behandler: " + spec.processor)
        expect(entry).to_contain_text("Hvor: " + spec.location)
        expect(entry.get_by_role("link")).to_have_attribute("href", spec.privacy_url)
        for cookie in spec.cookies:
            name = cookie.name.format(tail="TEST123")
            # shown as a browser keeps it: Chrome caps every cookie at 400 days (issue #11)
            expect(entry).to_contain_text(f"{name} ({min(cookie.days, 400)} dager)")
        if not spec.cookies:
            expect(entry).to_contain_text("ingen på dette nettstedet")
    # nothing was loaded by reading about it
    assert third_party.requests == []


def test_reopen_from_link_api_and_float_button_shows_the_current_choice(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server)
    expect(page.locator("button.jpb-f")).to_have_count(0)  # not while the banner asks
    page.get_by_role("button", name="Innstillinger").click()
    page.get_by_role("switch", name="Statistikk").check()
    choose(page, "Lagre valg")
    expect(page.locator(LAYER2)).to_have_count(0)

    float_button = page.get_by_role("button", name="Personvernvalg")
    expect(float_button).to_be_visible()
    float_button.click()
    expect(page.get_by_role("switch", name="Statistikk")).to_be_checked()
    expect(page.get_by_role("switch", name="Markedsføring")).not_to_be_checked()
    page.keyboard.press("Escape")
    expect(page.locator(LAYER2)).to_have_count(0)
    expect(float_button).to_be_focused()  # focus returned

    page.evaluate("jobpixel('settings')")
    expect(page.locator(LAYER2)).to_be_visible()
    page.get_by_role("button", name="Lukk").click()
    page.get_by_role("link", name="Se/endre dine innstillinger").click()
    expect(page.locator(LAYER2)).to_be_visible()

    # a later page (the banner applies the stored choice) still opens settings on request
    page.reload()
    page.get_by_role("link", name="Se/endre dine innstillinger").click()
    expect(page.get_by_role("switch", name="Statistikk")).to_be_checked()
    assert len(pixel_server.consent_rows()) == 1


def test_no_float_button_unless_configured(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server, TEST)
    choose(page, "Avvis alle")
    page.wait_for_timeout(200)
    expect(page.locator("button.jpb-f")).to_have_count(0)


def test_visitor_sees_their_consent_history(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server, TEST)
    choose(page, "Godta alle")
    page.get_by_role("link", name="Se/endre dine innstillinger").click()
    page.get_by_role("switch", name="Markedsføring").uncheck()
    choose(page, "Lagre valg")
    page.get_by_role("link", name="Se/endre dine innstillinger").click()
    layer = page.locator(LAYER2)
    expect(layer).to_contain_text("Samtykke-ID: " + consent_cookie(context)["id"])
    layer.get_by_role("button", name="Vis samtykkehistorikk").click()
    items = layer.locator("ol li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("Trakk tilbake — Teknisk nødvendig, Statistikk")  # newest first
    expect(items.nth(1)).to_contain_text("Godta alle — Teknisk nødvendig, Statistikk, Markedsføring")


def test_hidden_from_crawlers(browser: Browser, pixel_server: LiveServer) -> None:
    ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    context = browser.new_context(user_agent=ua)
    page = context.new_page()
    try:
        loaded = []
        page.on("response", lambda r: loaded.append(r.url) if r.url.endswith("/b.js") else None)
        page.goto(pixel_server.origin_page_url(SHOP))
        page.wait_for_load_state("networkidle")
        assert loaded  # the banner script came, and chose to stay hidden
        expect(page.locator("dialog")).to_have_count(0)
        assert page.evaluate("window.__jpbanner.state.cfg") is None
    finally:
        context.close()


@pytest.mark.parametrize("ua", [DESKTOP_UA, "Mozilla/5.0 (Linux; Android 10; CUBOT_X19) AppleWebKit/537.36"])
def test_shown_to_people_whose_user_agent_merely_contains_bot(
    ua: str, browser: Browser, pixel_server: LiveServer
) -> None:
    context = browser.new_context(user_agent=ua)
    page = context.new_page()
    try:
        open_page(page, pixel_server, TEST)
    finally:
        context.close()


def test_declarative_gating_waits_for_its_category(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server)
    page.get_by_role("button", name="Innstillinger").click()
    page.get_by_role("switch", name="Statistikk").check()
    choose(page, "Lagre valg")
    assert page.evaluate("window.gatedStatistics") is True
    assert "https://gated.example.test/tag.js" not in third_party.requests
    expect(page.locator('script[type="text/plain"][data-jobpixel-category="marketing"]')).to_have_count(1)


@pytest.mark.parametrize(("path", "visible"), [(SHOP, True), (TEST, False)])
def test_float_button_on_later_pages_after_a_rejection(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty, path: str, visible: bool
) -> None:
    """Reopening stays one click away on every page of a site that turned the button on."""
    open_page(page, pixel_server, path)
    choose(page, "Avvis alle")
    page.goto(pixel_server.origin_page_url(path.replace("4711", "4712")))
    page.wait_for_load_state("networkidle")
    expect(page.locator(LAYER1)).to_have_count(0)  # the choice holds: no banner
    float_button = page.get_by_role("button", name="Personvernvalg")
    if visible:
        expect(float_button).to_be_visible()
        float_button.click()
        expect(page.get_by_role("switch", name="Statistikk")).not_to_be_checked()
    else:
        expect(float_button).to_have_count(0)
    assert third_party.requests == []
