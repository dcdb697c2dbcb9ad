"""Sign-in, the session cookie, CSRF, the sign-in rate limit, sign-out."""

from __future__ import annotations

import re

import httpx

from pixel_server.reports.auth import SESSION_COOKIE
from tests.dashboards.conftest import sign_in
from tests.reports.conftest import ACME_EMAIL, ACME_PASSWORD, ReportsServer


def _csrf(client: httpx.Client) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', client.get("/dashboard/login").text)
    assert m
    return m.group(1)


def test_session_cookie_attributes(reports_server: ReportsServer) -> None:
    client = httpx.Client(base_url=reports_server.url)
    csrf = _csrf(client)
    r = client.post("/dashboard/login", data={"csrf": csrf, "email": ACME_EMAIL, "password": ACME_PASSWORD})
    cookie = r.headers["set-cookie"].lower()
    assert SESSION_COOKIE in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # plain http here; https requests get Secure (request.url.scheme)


def test_wrong_password_and_csrf(reports_server: ReportsServer) -> None:
    client = httpx.Client(base_url=reports_server.url)
    csrf = _csrf(client)
    r = client.post(
        "/dashboard/login", data={"csrf": csrf, "email": ACME_EMAIL, "password": "wrong password"}
    )
    assert r.status_code == 401 and SESSION_COOKIE not in r.headers.get("set-cookie", "")
    # a forged form from elsewhere has no matching CSRF cookie
    other = httpx.Client(base_url=reports_server.url)
    r = other.post("/dashboard/login", data={"csrf": csrf, "email": ACME_EMAIL, "password": ACME_PASSWORD})
    assert r.status_code == 403 and SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_forged_session_cookie_is_no_session(reports_server: ReportsServer) -> None:
    client = sign_in(reports_server, ACME_EMAIL, ACME_PASSWORD)
    value = client.cookies[SESSION_COOKIE]
    forged = httpx.Client(base_url=reports_server.url, cookies={SESSION_COOKIE: value[:-2] + "xx"})
    assert forged.get("/dashboard/test/").status_code == 303
    garbage = httpx.Client(base_url=reports_server.url, cookies={SESSION_COOKIE: "x" * 5000})
    assert garbage.get("/dashboard/").status_code == 303


def test_sign_in_is_rate_limited(reports_server: ReportsServer) -> None:
    client = httpx.Client(base_url=reports_server.url)
    csrf = _csrf(client)
    codes = [
        client.post(
            "/dashboard/login", data={"csrf": csrf, "email": ACME_EMAIL, "password": f"nope {i}"}
        ).status_code
        for i in range(6)
    ]
    assert codes == [401] * 5 + [429]
    # even the right password is refused while blocked
    r = client.post("/dashboard/login", data={"csrf": csrf, "email": ACME_EMAIL, "password": ACME_PASSWORD})
    assert r.status_code == 429


def test_sign_out_needs_the_csrf_token(reports_server: ReportsServer) -> None:
    client = sign_in(reports_server, ACME_EMAIL, ACME_PASSWORD)
    assert client.post("/dashboard/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/dashboard/").status_code == 200
    page = client.get("/dashboard/").text
    m = re.search(
        r'action="/dashboard/logout[^"]*" class="inline">\s*<input type="hidden" name="csrf" value="([^"]+)"',
        page,
    )
    assert m
    r = client.post("/dashboard/logout", data={"csrf": m.group(1)})
    assert r.status_code == 303
    assert client.get("/dashboard/").status_code == 303


def test_store_trouble_is_a_503_not_a_500(reports_server: ReportsServer) -> None:
    from pixel_server.core.store import StoreError

    class Broken:
        database = "jobpixel"

        def query(self, *a: object, **k: object) -> list[dict[str, object]]:
            raise StoreError("ClickHouse is down")

    client = sign_in(reports_server, ACME_EMAIL, ACME_PASSWORD)
    real = reports_server.state.store
    reports_server.state.store = Broken()  # type: ignore[assignment]
    try:
        for path in ("/dashboard/test/", "/dashboard/test/ads/1", "/dashboard/test/export/ads.csv"):
            assert client.get(path).status_code == 503, path
        r = reports_server.api("/api/v1/query", {"site": "test", "metrics": ["visitors"]})
        assert r.status_code == 503 and r.json()["error"] == "unavailable"
    finally:
        reports_server.state.store = real
