"""The banner's settings layer, in real Chromium: "Se mine data" shows the visitor's own events and
offers all of it as a file; "Slett mine data" (keyboard only) erases it on the server, clears the
cookies and says what happened; axe finds nothing serious in the new parts."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import ThirdParty
from tests.browser.test_banner_a11y import serious, tab_to
from tests.harness import LiveServer

pytestmark = pytest.mark.browser
PAGE = "jobb/4711/banner_test.html"
LAYER2 = "dialog.jpb-2"


def test_see_and_delete_my_data(
    page: Page, context: BrowserContext, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    other = pixel_server.consent()  # someone else, measured too
    page.goto(pixel_server.origin_page_url(PAGE))
    page.get_by_role("button", name="Godta alle").click()
    rows = pixel_server.wait_for_events(1, page=page, name="pageview", site_id="test")
    mine = {r["visitor_id"] for r in rows}
    assert len(mine) == 1
    assert "jobpixel_vid" in {c["name"] for c in context.cookies()}

    page.get_by_role("link", name="Se/endre dine innstillinger").click()
    layer = page.locator(LAYER2)
    layer.get_by_role("button", name="Se mine data").click()
    expect(layer.locator("ol li").first).to_contain_text("pageview /jobb/4711/banner_test.html")
    download = layer.get_by_role("link", name="Last ned alt (JSON)")
    expect(download).to_have_attribute("download", "jobpixel-test.json")
    assert serious(page, LAYER2) == []

    page.once("dialog", lambda d: d.accept())  # "Slett mine data?" — a real confirmation
    tab_to(page, "Slett mine data")
    page.keyboard.press("Enter")
    expect(layer).to_contain_text("Dataene dine er slettet (")
    names = {c["name"] for c in context.cookies()}
    assert "jobpixel_vid" not in names and "jobpixel_consent" not in names
    assert pixel_server.events(visitor_id=mine.pop()) == []
    assert pixel_server.consent_rows(consent_id=other["consent_id"])  # nobody else's
    assert serious(page, LAYER2) == []
