"""ClickHouse unreachable: events are still acknowledged into the spool, and /readyz says so."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from pixel_server.core import settings as settings_mod
from pixel_server.core.settings import Settings
from tests.harness import DESKTOP_UA, OPS, SECRETS, LiveServer, PartnerSite, config_dict, free_port


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
        ready = httpx.get(server.url + "/readyz", headers=OPS)
        assert ready.status_code == 503 and ready.json()["store"] in ("unavailable", "not_connected")
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
        ready = httpx.get(server.url + "/readyz", headers=OPS)
        assert ready.status_code == 503
        assert ready.json()["spool_rows"] == 2 and ready.json()["spool_bytes"] > 0  # the choice and the event
        assert server.state.loader is not None and server.state.store is None  # the loader waits for it
        history = httpx.get(
            f"{server.url}/consent/{consent['consent_id']}",
            params={"site": "test"},
            headers={"Authorization": f"Bearer {consent['token']}"},
        )
        assert history.status_code == 503  # said plainly, not a 500
        assert history.json()["error"] == "unavailable"
    finally:
        server.stop()
    segments = list((tmp_path / "data" / "journal").glob("*.jsonl"))
    assert {p.name.split(".")[1] for p in segments} == {"consent_log", "events"}  # kept for later
    assert sum(p.read_bytes().count(b"\n") for p in segments) == 2


class FullJournalServer(StoreDownServer):
    """Store down (nothing drains) and a 1 MiB journal: it fills up."""

    @property
    def settings(self) -> Settings:
        cfg = config_dict(self.data_dir, self.partner.origin)
        cfg["storage"] = {"backend": "clickhouse"}
        cfg["journal"] = {"max_bytes": 1024 * 1024, "segment_bytes": 64 * 1024}
        cfg["limits"] = {"grant_rate_per_s": 0}  # one visitor fills the journal: no per-grant limit here
        env = {
            **SECRETS,
            settings_mod.CLICKHOUSE_URL_ENV: f"http://127.0.0.1:{free_port()}/",
        }
        return settings_mod.from_mapping(cfg, env, self.data_dir)


def test_full_journal_answers_503_with_retry_after_and_keeps_what_it_acknowledged(
    tmp_path: Path, partner_site: PartnerSite
) -> None:
    server = FullJournalServer(tmp_path / "data", partner_site)
    server.start()
    acked: list[str] = []
    try:
        token = server.consent()["token"]
        headers = {"Content-Type": "text/plain", "Origin": partner_site.origin, "User-Agent": DESKTOP_UA}
        refused = None
        for i in range(200):
            batch = [
                {
                    "site": "test",
                    "name": "pageview",
                    "url": f"{partner_site.origin}/jobb/{i}?q=" + "x" * 500,
                    "event_id": str(uuid.uuid4()),
                    "token": token,
                }
                for _ in range(50)
            ]
            r = httpx.post(server.url + "/collect", content=json.dumps(batch), headers=headers)
            if r.status_code == 503:
                refused = r
                break
            assert r.status_code == 204
            acked += [e["event_id"] for e in batch]
        assert refused is not None, "the journal never filled"
        assert refused.json()["error"] == "journal_full" and "max_bytes" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) > 0
        assert refused.headers["Access-Control-Allow-Origin"] == partner_site.origin  # the page can read it
        again = httpx.post(server.url + "/collect", content=json.dumps(batch[:1]), headers=headers)
        assert again.status_code == 503
        with pytest.raises(httpx.HTTPStatusError) as consent_refused:  # a choice is refused the same way
            server.consent()
        assert consent_refused.value.response.status_code == 503
        assert consent_refused.value.response.json()["error"] == "journal_full"
        assert consent_refused.value.response.headers["Retry-After"] == refused.headers["Retry-After"]
        metrics = httpx.get(server.url + "/metrics", headers=OPS).text
        assert 'jobpixel_events_dropped_total{reason="journal_full"} 52.0' in metrics
        assert "jobpixel_journal_full 1.0" in metrics
        ready = httpx.get(server.url + "/readyz", headers=OPS).json()
        assert (
            ready["journal_full"]
            and ready["journal_bytes"] >= 1024 * 1024 > ready["journal_bytes"] - 64 * 1024
        )
    finally:
        server.stop()
    segments = list((tmp_path / "data" / "journal").glob("*.events.jsonl"))
    journaled = {json.loads(line)["event_id"] for p in segments for line in p.read_bytes().splitlines()}
    assert journaled == set(acked)  # every acknowledged event is on disk, nothing refused is
    # main kept one segment growing while the store was down at start; now they are sealed by size
    assert len(segments) > 4 and max(p.stat().st_size for p in segments) <= 64 * 1024 + 64 * 1024
