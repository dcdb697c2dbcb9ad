"""A live server whose config has report credentials: partner ``acme`` (sites ``test``, ``shop``),
partner ``beta`` (site ``beta``) and an admin; plus helpers that post real events through ``/collect``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixel_server.core import settings as settings_mod
from pixel_server.core.settings import Settings
from pixel_server.reports.auth import hash_password, token_hash
from tests.harness import DESKTOP_UA, SECRETS, LiveServer, PartnerSite, config_dict

ACME_TOKEN = "jpx_acme-test-token-0123456789"
BETA_TOKEN = "jpx_beta-test-token-0123456789"
ADMIN_TOKEN = "jpx_admin-test-token-0123456789"
ACME_EMAIL, ACME_PASSWORD = "ola@acme.test", "correct horse battery"
BETA_EMAIL, BETA_PASSWORD = "kari@beta.test", "another long secret"
ADMIN_EMAIL, ADMIN_PASSWORD = "ops@jobpixel.test", "operator password 1"
_HASHES: dict[str, str] = {}


def _hash(password: str) -> str:
    if password not in _HASHES:
        _HASHES[password] = hash_password(password)
    return _HASHES[password]


def reports_config(data_dir: Path, origin: str, **site_overrides: Any) -> dict[str, Any]:
    cfg = config_dict(data_dir, origin, **site_overrides)
    cfg["storage"]["flush_interval_ms"] = (
        1000  # the default: "event → visible in a report ≤ 2 s" holds with it
    )
    cfg["partners"]["acme"].update(
        api_token_hashes=[token_hash(ACME_TOKEN)],
        users=[{"email": ACME_EMAIL, "password_hash": _hash(ACME_PASSWORD)}],
    )
    cfg["partners"]["beta"] = {
        "name": "Beta Bemanning",
        "api_token_hashes": [token_hash(BETA_TOKEN)],
        "users": [{"email": BETA_EMAIL, "password_hash": _hash(BETA_PASSWORD)}],
    }
    cfg["sites"]["beta"] = {"partner": "beta", "origins": ["https://jobs.beta.test"]}
    cfg["admin"] = {
        "api_token_hashes": [token_hash(ADMIN_TOKEN)],
        "users": [{"email": ADMIN_EMAIL, "password_hash": _hash(ADMIN_PASSWORD)}],
    }
    return cfg


class ReportsServer(LiveServer):
    @property
    def settings(self) -> Settings:
        cfg = reports_config(self.data_dir, self.partner.origin, **self.site_overrides)
        return settings_mod.from_mapping(cfg, SECRETS, self.data_dir)

    # -- posting real events ----------------------------------------------------------------------
    def collect(self, events: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        h = {"Content-Type": "text/plain", "Origin": self.partner.origin, "User-Agent": DESKTOP_UA}
        r = httpx.post(self.url + "/collect", content=json.dumps(events), headers={**h, **(headers or {})})
        assert r.status_code == 204, r.text

    def event(self, token: str, name: str, ad: str, **fields: Any) -> dict[str, Any]:
        return {
            "site": "test",
            "ad": ad,
            "name": name,
            "url": self.partner.origin + f"/jobb/{ad}",
            "event_id": str(uuid.uuid4()),
            "client_ts": int(time.time() * 1000),
            "token": token,
            **fields,
        }

    def api(self, path: str, body: Any, token: str | None = ACME_TOKEN, **headers: str) -> httpx.Response:
        h = {"Content-Type": "application/json", **headers}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return httpx.post(self.url + path, content=json.dumps(body), headers=h, timeout=30)


@pytest.fixture
def reports_server(tmp_path: Path, partner_site: PartnerSite) -> Iterator[ReportsServer]:
    server = ReportsServer(tmp_path / "data", partner_site, k_floor=3)
    server.start()
    yield server
    server.stop()
