"""Browser fixtures: Debian's Chromium launched by path (Playwright's own download does not work here)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Route

from tests.harness import CHROMIUM_PATH, DESKTOP_UA, LiveServer

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM_PATH, "args": ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    # A real desktop Chrome UA: the server drops HeadlessChrome as a bot, as it should.
    return {**browser_context_args, "user_agent": DESKTOP_UA, "locale": "nb-NO"}


class ThirdParty:
    """Every request to a host that is neither the partner site nor the pixel server."""

    def __init__(self, own_hosts: set[str]) -> None:
        self.own_hosts = own_hosts
        self.requests: list[str] = []

    def hosts(self) -> set[str]:
        return {urllib.parse.urlsplit(u).hostname or "" for u in self.requests}

    def handle(self, route: Route) -> None:
        url = route.request.url
        netloc = urllib.parse.urlsplit(url).netloc
        if netloc in self.own_hosts or url.startswith(("data:", "blob:", "about:")):
            route.continue_()
            return
        self.requests.append(url)
        route.fulfill(status=200, content_type="text/javascript", body="")


@pytest.fixture
def third_party(context: BrowserContext, pixel_server: LiveServer) -> Iterator[ThirdParty]:
    own = {
        urllib.parse.urlsplit(pixel_server.url).netloc,
        urllib.parse.urlsplit(pixel_server.partner.origin).netloc,
    }
    tp = ThirdParty(own)
    context.route("**/*", tp.handle)
    yield tp
