"""Every API endpoint and dashboard page: 401/redirect without credentials, 404 for another partner's
site, 200 for the owner and for the admin."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.dashboards.conftest import sign_in
from tests.reports.conftest import (
    ACME_EMAIL,
    ACME_PASSWORD,
    ACME_TOKEN,
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ADMIN_TOKEN,
    BETA_EMAIL,
    BETA_PASSWORD,
    BETA_TOKEN,
    ReportsServer,
)

API = [
    ("/api/v1/query", {"site": "test", "metrics": ["visitors"], "dimensions": ["source"]}),
    ("/api/v1/funnel", {"site": "test"}),
    ("/api/v1/consent-rates", {"site": "test"}),
]
PAGES = [
    "/dashboard/test/",
    "/dashboard/test/?range=7d&lang=en",
    "/dashboard/test/ads/4711",
    "/dashboard/test/export/ads.csv",
    "/dashboard/test/export/sources.csv?ad=4711",
    "/dashboard/test/export/daily.csv",
    "/dashboard/test/export/consent.csv",
    "/dashboard/test/export/funnel.csv?ad=4711",
]
WHO = [
    ("none", None, 401),
    ("other partner", BETA_TOKEN, 404),
    ("owner", ACME_TOKEN, 200),
    ("admin", ADMIN_TOKEN, 200),
]


@pytest.mark.parametrize(("path", "body"), API)
def test_api_access(reports_server: ReportsServer, path: str, body: dict[str, object]) -> None:
    for who, token, status in WHO:
        r = reports_server.api(path, body, token=token)
        assert r.status_code == status, (who, r.text)
        if status == 401:
            assert r.headers["www-authenticate"].startswith("Bearer")
        if status == 404:  # exactly what an unknown site answers: nothing tells the site exists
            unknown = reports_server.api(path, {**body, "site": "no-such-site"}, token=token)
            assert unknown.status_code == 404 and unknown.json() == {
                **r.json(),
                "detail": unknown.json()["detail"],
            }
        r2 = reports_server.api(path, body, token=token, Accept="text/csv")
        assert r2.status_code == status
    # a forged or partial token is no token
    for bad in ("Bearer " + ACME_TOKEN[:-1], "Basic " + ACME_TOKEN, ACME_TOKEN, "Bearer x"):
        r = httpx.post(reports_server.url + path, content=json.dumps(body), headers={"Authorization": bad})
        assert r.status_code == 401


def test_partner_token_lists_only_its_sites(reports_server: ReportsServer) -> None:
    def sites(token: str) -> set[str]:
        r = httpx.get(reports_server.url + "/api/v1/sites", headers={"Authorization": f"Bearer {token}"})
        return {s["site"] for s in r.json()["sites"]}

    assert sites(ACME_TOKEN) == {"test", "shop"}
    assert sites(BETA_TOKEN) == {"beta"}
    assert sites(ADMIN_TOKEN) == {"test", "shop", "beta"}
    assert httpx.get(reports_server.url + "/api/v1/sites").status_code == 401


Login = Callable[[], httpx.Client | None]


@pytest.mark.parametrize("path", PAGES)
def test_page_access(reports_server: ReportsServer, path: str) -> None:
    anon = httpx.Client(base_url=reports_server.url, follow_redirects=False)
    r = anon.get(path)
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")
    for email, password, status in (
        (BETA_EMAIL, BETA_PASSWORD, 404),
        (ACME_EMAIL, ACME_PASSWORD, 200),
        (ADMIN_EMAIL, ADMIN_PASSWORD, 200),
    ):
        client = sign_in(reports_server, email, password)
        r = client.get(path)
        assert r.status_code == status, (email, path, r.text[:300])
        if status == 200 and ".csv" not in path:
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert "<script>" not in r.text  # no inline script: only src= and the JSON data island
        if ".csv" in path and status == 200:
            assert r.headers["content-type"].startswith("text/csv")


def test_site_list_shows_only_own_sites(reports_server: ReportsServer) -> None:
    r = sign_in(reports_server, BETA_EMAIL, BETA_PASSWORD).get("/dashboard/")
    assert "/dashboard/beta/" in r.text and "/dashboard/test/" not in r.text
    r = sign_in(reports_server, ADMIN_EMAIL, ADMIN_PASSWORD).get("/dashboard/")
    assert "/dashboard/beta/" in r.text and "/dashboard/test/" in r.text
