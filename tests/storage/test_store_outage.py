"""ClickHouse unreachable: events are still acknowledged into the spool, and /readyz says so."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx

from pixel_server.core import settings as settings_mod
from pixel_server.core.settings import Settings
from tests.harness import DESKTOP_UA, SECRETS, LiveServer, PartnerSite, config_dict, free_port


class StoreDownServer(LiveServer):
    """The real app on the ClickHouse-server backend, pointed at a port where nothing listens."""

    @property
    def settings(self) -> Settings:
        cfg = config_dict(self.data_dir, self.partner.origin)
        cfg["storage"] = {"backend": "clickhouse"}
        env = {
            **SECRETS,
            settings_mod.CLICKHOUSE_URL_ENV: f"http://127.0.0.1:{free_port()}/",
        }
        return settings_mod.from_mapping(cfg, env, self.data_dir)


def test_store_down_at_start_spools_and_reports(tmp_path: Path, partner_site: PartnerSite) -> None:
    server = StoreDownServer(tmp_path / "data", partner_site)
    server.start()
    try:
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503 and ready.json()["store"].startswith("unavailable")
        consent = server.consent()  # POST /consent answers although the store is away
        assert consent["token"]
        event = {
            "site": "test",
            "name": "pageview",
            "url": partner_site.origin + "/jobb/1",
            "event_id": str(uuid.uuid4()),
            "token": consent["token"],
        }
        headers = {"Content-Type": "text/plain", "Origin": partner_site.origin, "User-Agent": DESKTOP_UA}
        r = httpx.post(server.url + "/collect", content=json.dumps(event), headers=headers)
        assert r.status_code == 204
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["spool_rows"] == 2 and ready.json()["spool_bytes"] > 0  # the choice and the event
        history = httpx.get(
            f"{server.url}/consent/{consent['consent_id']}",
            params={"site": "test"},
            headers={"Authorization": f"Bearer {consent['token']}"},
        )
        assert history.status_code == 503  # said plainly, not a 500
        assert history.json()["error"] == "unavailable"
    finally:
        server.stop()
    segments = sorted(p.name for p in (tmp_path / "data" / "journal").glob("*.jsonl"))
    assert segments == ["000000000001.consent_log.jsonl", "000000000001.events.jsonl"]  # kept for later
