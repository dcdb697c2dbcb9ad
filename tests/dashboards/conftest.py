from __future__ import annotations

import re

import httpx

from tests.reports.conftest import ReportsServer, reports_server  # noqa: F401  (fixture)


def sign_in(server: ReportsServer, email: str, password: str) -> httpx.Client:
    """A browser-like client signed in through the real form (CSRF cookie + field)."""
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    page = client.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text
    r = client.post("/dashboard/login", data={"csrf": csrf.group(1), "email": email, "password": password})
    assert r.status_code == 303, r.text
    return client


# the browser fixtures (Debian's Chromium by path) live with the other browser tests
from tests.browser.conftest import browser_context_args, browser_type_launch_args  # noqa: E402, F401
