"""The harness itself: Chromium by path, the partner page on one host, the pixel server on another."""

from playwright.sync_api import Page, expect

from tests.harness import LiveServer


def test_partner_page_reaches_pixel_server(page: Page, pixel_server: LiveServer) -> None:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    page.goto(pixel_server.origin_page_url("/jobb/4711/harness.html"))
    expect(page.locator("#out")).to_have_text("ok")
    assert seen[0].startswith(pixel_server.partner.origin)
    assert any(u.startswith(pixel_server.url + "/healthz") for u in seen)
