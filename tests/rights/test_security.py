"""Security headers on our own pages and API (not on what partner pages embed), and signing-key
rotation that logs nobody out: grants and dashboard sessions signed with the old key keep working."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from pixel_server.core.grant import Grants
from pixel_server.core.settings import Access, User
from pixel_server.reports.auth import Authenticator, Principal, hash_password
from tests.harness import SIGNING_KEY
from tests.rights.conftest import ADMIN_TOKEN, RightsServer

NEW_KEY = "the-next-signing-key-0123456789abcdef"


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/sites", "/me?site=test", "/dashboard/"]
)
def test_security_headers_on_pages_and_api(rights_server: RightsServer, path: str) -> None:
    r = httpx.get(rights_server.url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp and "script-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"]
    assert r.headers["cross-origin-opener-policy"] == "same-origin"
    assert "strict-transport-security" not in r.headers  # plain http: HSTS means nothing here


def test_hsts_over_https_only(rights_server: RightsServer) -> None:
    # the harness's uvicorn believes X-Forwarded-Proto from 127.0.0.1 (production: server.trusted_proxies)
    r = httpx.get(rights_server.url + "/healthz", headers={"X-Forwarded-Proto": "https"})
    assert r.headers["strict-transport-security"].startswith("max-age=")


@pytest.mark.parametrize("path", ["/p.js", "/b.js", "/s/test.json"])
def test_not_on_what_partner_pages_embed(rights_server: RightsServer, path: str) -> None:
    r = httpx.get(rights_server.url + path)
    assert r.status_code == 200
    assert "content-security-policy" not in r.headers and "cross-origin-opener-policy" not in r.headers
    if path.endswith(".js"):
        assert r.headers["cross-origin-resource-policy"] == "cross-origin"  # assets.py's own rules


def test_dashboard_keeps_its_own_csp(rights_server: RightsServer) -> None:
    r = httpx.get(rights_server.url + "/dashboard/login")
    assert r.headers.get_list("content-security-policy") == [r.headers["content-security-policy"]]


def test_signing_key_rotation_logs_nobody_out(rights_server: RightsServer) -> None:
    s = rights_server
    before = s.consent()  # signed with the only key
    s.post_events(before["token"], 1)
    s.signing_keys = f"{SIGNING_KEY},{NEW_KEY}"  # rotate: append the new key, keep the old one
    s.restart()
    assert s.collect_one(before["token"]).status_code == 204  # the old grant still measures ...
    assert s.me("GET", before["token"]).status_code == 200  # ... and still opens /me
    after = s.consent()
    assert Grants((NEW_KEY,)).verify(after["token"]) is not None  # the newest key signs
    assert Grants((SIGNING_KEY,)).verify(after["token"]) is None
    # a dashboard session signed with the old key survives the rotation too
    user = Access(users=(User("ops@example.test", hash_password("operator password 1")),))
    old_auth = Authenticator(replace(s.settings, signing_keys=(SIGNING_KEY,), admin=user))
    cookie, csrf = old_auth.session_cookie(Principal(None, "ops@example.test"))
    rotated = Authenticator(replace(s.settings, signing_keys=(SIGNING_KEY, NEW_KEY), admin=user))
    assert rotated.session(cookie) == (Principal(None, "ops@example.test"), csrf)
    assert Authenticator(replace(s.settings, signing_keys=(NEW_KEY,), admin=user)).session(cookie) is None
    s.signing_keys = NEW_KEY  # the old key retired (after the longest consent_days): its grants end
    s.restart()
    assert s.collect_one(before["token"]).status_code == 403
    assert s.me("GET", before["token"]).status_code == 401
    assert s.collect_one(after["token"]).status_code == 204
