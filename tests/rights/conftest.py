"""A live server for the rights tests: its loader waits 60 s between flushes (so events stay in the
journal until a test flushes), an admin and a partner token, and helpers to post events."""

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
from pixel_server.reports.auth import token_hash
from tests.browser.conftest import (  # noqa: F401  (the banner test: Debian's Chromium, a desktop UA)
    browser_context_args,
    browser_type_launch_args,
    third_party,
)
from tests.harness import DESKTOP_UA, SECRETS, LiveServer, PartnerSite, config_dict

ADMIN_TOKEN = "jpx_admin-rights-token-0123456789"
PARTNER_TOKEN = "jpx_partner-rights-token-0123456789"


def rights_config(data_dir: Path, origin: str, **site_overrides: Any) -> dict[str, Any]:
    cfg = config_dict(data_dir, origin, **site_overrides)
    cfg["storage"]["flush_interval_ms"] = 60_000  # the journal keeps what a test does not flush
    cfg["partners"]["acme"]["api_token_hashes"] = [token_hash(PARTNER_TOKEN)]
    cfg["admin"] = {"api_token_hashes": [token_hash(ADMIN_TOKEN)]}
    return cfg


class RightsServer(LiveServer):
    signing_keys = SECRETS[settings_mod.SIGNING_KEYS_ENV]  # oldest first, comma-separated

    @property
    def settings(self) -> Settings:
        cfg = rights_config(self.data_dir, self.partner.origin, **self.site_overrides)
        env = {**SECRETS, settings_mod.SIGNING_KEYS_ENV: self.signing_keys}
        return settings_mod.from_mapping(cfg, env, self.data_dir)

    def post_events(self, token: str, n: int, site: str = "test", **fields: Any) -> list[str]:
        """``n`` pageviews under ``token`` through the real /collect; returns their event ids."""
        ids = [str(uuid.uuid4()) for _ in range(n)]
        body = [
            {
                "site": site,
                "ad": "4711",
                "name": "pageview",
                "url": self.partner.origin + "/jobb/4711?gclid=abc",
                "event_id": i,
                "client_ts": int(time.time() * 1000),
                "token": token,
                **fields,
            }
            for i in ids
        ]
        r = self.collect_raw(body)
        assert r.status_code == 204, r.text
        return ids

    def collect_one(self, token: str) -> httpx.Response:
        """One pageview under ``token``, whatever the answer."""
        url = self.partner.origin + "/jobb/1"
        ev = {"site": "test", "ad": "1", "name": "pageview", "url": url, "event_id": str(uuid.uuid4())}
        return self.collect_raw([{**ev, "token": token}])

    def collect_raw(self, body: Any) -> httpx.Response:
        h = {"Content-Type": "text/plain", "Origin": self.partner.origin, "User-Agent": DESKTOP_UA}
        return httpx.post(self.url + "/collect", content=json.dumps(body), headers=h)

    def me(self, method: str, token: str | None, site: str = "test", **headers: str) -> httpx.Response:
        h = dict(headers)
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return httpx.request(method, f"{self.url}/me?site={site}", headers=h, timeout=60)


@pytest.fixture
def rights_server(tmp_path: Path, partner_site: PartnerSite) -> Iterator[RightsServer]:
    server = RightsServer(tmp_path / "data", partner_site)
    server.start()
    yield server
    server.stop()
