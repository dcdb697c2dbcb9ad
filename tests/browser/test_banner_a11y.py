"""Accessibility: axe-core on both layers, dialog semantics, focus, keyboard-only use."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import ThirdParty
from tests.harness import LiveServer

SHOP = "jobb/4711/banner_shop.html"
LAYER1 = "dialog.jpb-1"
LAYER2 = "dialog.jpb-2"
AXE = Axe()


def open_page(page: Page, server: LiveServer) -> None:
    page.goto(server.origin_page_url(SHOP))
    expect(page.locator(LAYER1)).to_be_visible()


def serious(page: Page, selector: str) -> list[dict[str, Any]]:
    """axe-core violations of impact serious or critical inside the banner layer."""
    results = AXE.run(page, context={"include": [[selector]]})
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def consent_cookie(context: BrowserContext) -> dict[str, Any]:
    raw = {c["name"]: c["value"] for c in context.cookies()}["jobpixel_consent"]
    value: dict[str, Any] = json.loads(urllib.parse.unquote(raw))
    return value


def tab_to(page: Page, name: str, limit: int = 40) -> None:
    """Press Tab until the element with this accessible name has focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim() || document.activeElement.id") == name:
            return
    raise AssertionError(f"{name!r} not reached with Tab")


def logged_choices(page: Page, server: LiveServer, timeout_ms: int = 10_000) -> list[dict[str, Any]]:
    """The consent-log rows once there are any: ``jobpixel:consent`` fires when the banner applies the
    choice, which can be before the server's answer to ``POST /consent`` has arrived."""
    for _ in range(timeout_ms // 100):
        rows = server.consent_rows()
        if rows:
            return rows
        page.wait_for_timeout(100)
    return server.consent_rows()


def told(page: Page) -> None:
    page.evaluate(
        "() => { window.__told = false; addEventListener('jobpixel:consent', () => (window.__told = true)) }"
    )


def test_axe_first_layer(page: Page, pixel_server: LiveServer, third_party: ThirdParty) -> None:
    open_page(page, pixel_server)
    assert serious(page, LAYER1) == []


@pytest.mark.parametrize("gpc", [False, True])
def test_axe_second_layer_with_channels_open(
    gpc: bool, page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    if gpc:
        page.add_init_script(
            "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
        )
    open_page(page, pixel_server)
    page.get_by_role("button", name="Innstillinger").click()
    page.locator(LAYER2).get_by_text("Annonsepartnere").click()
    expect(page.locator(f"{LAYER2} details")).to_have_attribute("open", "")
    assert serious(page, LAYER2) == []


def test_axe_checks_can_fail(page: Page, pixel_server: LiveServer, third_party: ThirdParty) -> None:
    open_page(page, pixel_server)
    page.eval_on_selector(f"{LAYER1} button", "b => { b.style.color = '#999'; b.style.background = '#aaa' }")
    assert [v["id"] for v in serious(page, LAYER1)] == ["color-contrast"]


def test_dialog_semantics(page: Page, pixel_server: LiveServer, third_party: ThirdParty) -> None:
    open_page(page, pixel_server)
    first = page.get_by_role("dialog", name="Personvern og informasjonskapsler")
    expect(first).to_be_visible()
    # issue #11: it takes no focus on load; it is the first tab stop
    expect(first).not_to_be_focused()
    assert page.evaluate("document.activeElement === document.body")
    page.keyboard.press("Tab")
    assert first.evaluate("d => d.contains(document.activeElement)") is True
    assert first.evaluate("d => d.getAttribute('aria-describedby') && d.open") is True
    first.get_by_role("button", name="Innstillinger").click()
    second = page.get_by_role("dialog", name="Dine personvernvalg")
    expect(second).to_be_focused()
    assert second.evaluate("d => d.matches(':modal')") is True  # the page behind is inert
    for key, name in [
        ("necessary", "Teknisk nødvendig"),
        ("statistics", "Statistikk"),
        ("marketing", "Markedsføring"),
    ]:
        expect(second.get_by_role("switch", name=name)).to_have_attribute("aria-describedby", f"jpb-{key}-d")
    expect(second.get_by_role("heading", level=3)).to_have_count(3)


def test_escape_closes_the_second_layer_and_focus_returns(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server)
    page.get_by_role("button", name="Innstillinger").click()
    expect(page.locator(LAYER2)).to_be_visible()
    page.keyboard.press("Escape")
    # nothing chosen yet: back to the first layer, which still asks
    expect(page.locator(LAYER2)).to_have_count(0)
    expect(page.locator(LAYER1)).to_be_focused()
    assert pixel_server.consent_rows() == []

    told(page)
    page.get_by_role("button", name="Avvis alle").click()
    page.wait_for_function("window.__told")
    link = page.get_by_role("link", name="Se/endre dine innstillinger")
    link.focus()
    page.keyboard.press("Enter")
    expect(page.locator(LAYER2)).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("dialog")).to_have_count(0)
    expect(link).to_be_focused()


def test_focus_is_visible(page: Page, pixel_server: LiveServer, third_party: ThirdParty) -> None:
    open_page(page, pixel_server)
    tab_to(page, "Godta alle")
    outline = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth] })()"
    )
    assert outline[0] == "solid" and float(outline[1].removesuffix("px")) >= 2


@pytest.mark.parametrize(
    ("button", "expected"),
    [("Godta alle", (1, 1, "accept_all")), ("Avvis alle", (0, 0, "reject_all"))],
)
def test_keyboard_only_first_layer(
    button: str,
    expected: tuple[int, int, str],
    page: Page,
    context: BrowserContext,
    pixel_server: LiveServer,
    third_party: ThirdParty,
) -> None:
    open_page(page, pixel_server)
    told(page)
    tab_to(page, button)
    page.keyboard.press("Enter")
    page.wait_for_function("window.__told")
    c = consent_cookie(context)
    (row,) = logged_choices(page, pixel_server)
    assert (c["s"], c["m"], row["action"]) == expected
    expect(page.locator("dialog")).to_have_count(0)


def test_keyboard_only_second_layer(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    open_page(page, pixel_server)
    told(page)
    tab_to(page, "Innstillinger")
    page.keyboard.press("Enter")
    expect(page.locator(LAYER2)).to_be_visible()
    tab_to(page, "jpb-statistics")
    page.keyboard.press("Space")
    expect(page.get_by_role("switch", name="Statistikk")).to_be_checked()
    tab_to(page, "Lagre valg")
    page.keyboard.press("Enter")
    page.wait_for_function("window.__told")
    c = consent_cookie(context)
    assert (c["s"], c["m"]) == (1, 0)
    (row,) = pixel_server.consent_rows()
    assert (row["action"], row["layer"]) == ("custom", 2)
