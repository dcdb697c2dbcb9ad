"""The dashboard in Chromium: sign in, a site page, an ad page; charts drawn by the vendored Chart.js,
no console error, no request to any host but the server, CSV downloads, axe-clean, phone-sized;
screenshots saved as test artifacts (``var/artifacts/``)."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.reports.conftest import ACME_EMAIL, ACME_PASSWORD, ReportsServer
from tests.reports.fixture import post_fixture

pytestmark = pytest.mark.browser
ARTIFACTS = Path(os.environ.get("JOBPIXEL_ARTIFACTS", "var/artifacts"))
AXE = Axe()


def serious(page: Page) -> list[dict[str, Any]]:
    results = AXE.run(page)
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.fixture
def watched(page: Page, reports_server: ReportsServer) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"errors": [], "foreign": []}
    own = urllib.parse.urlsplit(reports_server.url).netloc
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))

    def route(r: Any) -> None:
        if urllib.parse.urlsplit(r.request.url).netloc != own and not r.request.url.startswith("data:"):
            seen["foreign"].append(r.request.url)
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)
    return seen


def sign_in(page: Page, server: ReportsServer) -> None:
    page.goto(server.url + "/dashboard/")
    page.get_by_label("E-post").fill(ACME_EMAIL)
    page.get_by_label("Passord").fill(ACME_PASSWORD)
    page.get_by_role("button", name="Logg inn").click()
    expect(page.get_by_role("heading", name="Nettsteder")).to_be_visible()


def chart_drawn(page: Page, canvas_id: str) -> bool:
    page.wait_for_function(
        "id => { const c = document.getElementById(id); const ch = window.Chart && Chart.getChart(c);"
        " return !!ch && ch.data.datasets.length > 0 && c.width > 0 }",
        arg=canvas_id,
        timeout=5000,
    )
    return True


def test_site_and_ad_pages(page: Page, reports_server: ReportsServer, watched: dict[str, list[str]]) -> None:
    post_fixture(reports_server)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, reports_server)
    page.get_by_role("link", name="test").click()
    page.get_by_role("link", name="I dag").click()
    expect(page.get_by_role("heading", name="test", exact=True)).to_be_visible()
    expect(page.locator("#ads-table")).to_contain_text("Sykepleier")
    expect(page.locator(".tiles")).to_contain_text("11")  # visitors today
    assert chart_drawn(page, "chart-series")
    assert serious(page) == []
    page.screenshot(path=str(ARTIFACTS / "dashboard-site.png"), full_page=True)

    with page.expect_download() as dl:
        page.locator("#sources-table caption a.csv").click()
    csv_text = Path(dl.value.path()).read_text(encoding="utf-8")
    assert csv_text.splitlines()[0] == "source,visitors,apply_clicks,applications,conversion_rate"
    assert "Google,3,2,1,33.3" in csv_text

    page.get_by_role("link", name="4711").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Sykepleier")
    expect(page.locator("#funnel-table")).to_contain_text("Så annonsen")
    assert chart_drawn(page, "chart-funnel") and chart_drawn(page, "chart-series"), watched["errors"]
    assert serious(page) == []
    page.screenshot(path=str(ARTIFACTS / "dashboard-ad.png"), full_page=True)

    page.get_by_role("link", name="English").click()
    expect(page.locator("#funnel-table")).to_contain_text("Viewed the ad")
    assert serious(page) == []

    assert watched["errors"] == []
    assert watched["foreign"] == []


def test_phone_layout(page: Page, reports_server: ReportsServer, watched: dict[str, list[str]]) -> None:
    post_fixture(reports_server)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, reports_server)
    page.goto(reports_server.url + "/dashboard/test/?range=today")
    assert chart_drawn(page, "chart-series")
    overflow = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page scrolls sideways by {overflow}px on a phone"
    assert serious(page) == []
    page.screenshot(path=str(ARTIFACTS / "dashboard-site-phone.png"), full_page=True)
    assert watched["errors"] == [] and watched["foreign"] == []
