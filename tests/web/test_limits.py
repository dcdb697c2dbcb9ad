"""Abuse limits: token buckets per client IP (the pre-router) and per grant (ingest, consent)."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixel_server.core import settings as settings_mod
from pixel_server.core.http import client_ip
from pixel_server.core.ratelimit import Buckets
from pixel_server.core.settings import ConfigError, Limits, Settings
from tests.harness import DESKTOP_UA, OPS, SECRETS, LiveServer, PartnerSite, config_dict


class LimitedServer(LiveServer):
    def __init__(self, data_dir: Path, partner: PartnerSite, limits: dict[str, Any], **server: Any) -> None:
        super().__init__(data_dir, partner)
        self.limits, self.server_keys = limits, server

    @property
    def settings(self) -> Settings:
        cfg = config_dict(self.data_dir, self.partner.origin)
        cfg["limits"] = self.limits
        cfg["server"] |= self.server_keys
        return settings_mod.from_mapping(cfg, SECRETS, self.data_dir)


@pytest.fixture
def limited(
    request: pytest.FixtureRequest, tmp_path: Path, partner_site: PartnerSite
) -> Iterator[LimitedServer]:
    limits, server_keys = request.param
    server = LimitedServer(tmp_path / "data", partner_site, limits, **server_keys)
    server.start()
    yield server
    server.stop()


def event(server: LiveServer, token: str) -> dict[str, Any]:
    return {
        "site": "test",
        "name": "pageview",
        "url": server.partner.origin + "/jobb/1",
        "event_id": str(uuid.uuid4()),
        "token": token,
    }


def post(server: LiveServer, body: Any, **headers: str) -> httpx.Response:
    h = {"Content-Type": "text/plain", "Origin": server.partner.origin, "User-Agent": DESKTOP_UA, **headers}
    return httpx.post(server.url + "/collect", content=json.dumps(body), headers=h)


def metric(server: LiveServer, line: str) -> bool:
    return line in httpx.get(server.url + "/metrics", headers=OPS).text


@pytest.mark.parametrize("limited", [({"ip_rate_per_s": 0.01, "ip_burst": 5}, {})], indirect=True)
def test_ip_limit_answers_429_with_retry_after_on_every_visitor_endpoint(limited: LimitedServer) -> None:
    token = limited.consent()["token"]  # one request of the five
    statuses = [post(limited, event(limited, token)).status_code for _ in range(4)]
    assert statuses == [204] * 4
    r = post(limited, event(limited, token))
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["access-control-allow-origin"] == limited.partner.origin  # the page can read it
    body = {
        "site": "test",
        "consent_id": str(uuid.uuid4()),
        "choice_id": str(uuid.uuid4()),
        "action": "custom",
    }
    r = httpx.post(
        limited.url + "/consent",
        content=json.dumps(body),
        headers={"Origin": limited.partner.origin, "Content-Type": "text/plain"},
    )
    assert r.status_code == 429
    assert httpx.get(limited.url + f"/consent/{uuid.uuid4()}?site=test").status_code == 429
    # other routes are not the visitor limit's business
    assert httpx.get(limited.url + "/p.js").status_code == 200
    assert metric(limited, 'jobpixel_rate_limited_total{reason="ip"} 3.0')
    assert len(limited.events()) == 4


@pytest.mark.parametrize(
    "limited",
    [({"ip_rate_per_s": 0.01, "ip_burst": 3}, {"trusted_proxies": ["127.0.0.1"]})],
    indirect=True,
)
def test_behind_a_trusted_proxy_the_forwarded_address_is_the_key(limited: LimitedServer) -> None:
    # the body does not matter: the pre-router's limit comes before the pipeline (which answers 400)
    one = [post(limited, {}, **{"X-Forwarded-For": "203.0.113.7"}).status_code for _ in range(4)]
    assert one == [400, 400, 400, 429]  # 203.0.113.7 has spent its three
    other = post(limited, {}, **{"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
    assert other.status_code != 429  # another client behind the same proxy has its own bucket


@pytest.mark.parametrize("limited", [({"grant_rate_per_s": 0.01, "grant_burst": 50}, {})], indirect=True)
def test_grant_limit_counts_events_per_consent(limited: LimitedServer) -> None:
    token = limited.consent()["token"]  # the choice takes one of the consent's 50
    assert post(limited, [event(limited, token) for _ in range(40)]).status_code == 204
    r = post(limited, [event(limited, token) for _ in range(10)])  # 41 + 10 > 50: all or nothing
    assert r.status_code == 429 and (r.json()["error"], r.json()["field"]) == ("rate_limited", "token")
    assert int(r.headers["retry-after"]) >= 1
    assert post(limited, [event(limited, token) for _ in range(9)]).status_code == 204
    other = limited.consent()["token"]  # another browser is not held back
    assert post(limited, event(limited, other)).status_code == 204
    assert len(limited.events()) == 50
    assert metric(limited, 'jobpixel_rate_limited_total{reason="grant"} 1.0')
    assert metric(limited, 'jobpixel_events_dropped_total{reason="rate_limited"} 10.0')


def test_buckets_refill_and_stay_bounded() -> None:
    now = [0.0]
    b = Buckets(rate=2.0, burst=3, max_keys=100, clock=lambda: now[0])
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a") == pytest.approx(0.5)
    assert b.take("a", 5) == pytest.approx(1.5)  # more than the burst waits for a full bucket...
    now[0] += 0.5
    assert b.take("a") == 0.0  # refilled at 2/s
    for i in range(1000):  # a spray of addresses
        b.take(f"k{i}")
        now[0] += 0.001
    assert len(b) <= 100
    assert Buckets(rate=0, burst=1).take("x", 10**6) == 0.0  # rate 0: off


def test_client_ip_trusts_forwarded_for_only_from_a_trusted_proxy() -> None:
    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    xff = [(b"x-forwarded-for", b"1.1.1.1, 2.2.2.2, 10.0.0.5")]
    assert client_ip({"client": ("10.0.0.1", 1), "headers": xff}, trusted) == "2.2.2.2"
    assert client_ip({"client": ("9.9.9.9", 1), "headers": xff}, trusted) == "9.9.9.9"  # spoofed header
    assert client_ip({"client": ("10.0.0.1", 1), "headers": xff}, []) == "10.0.0.1"


@pytest.mark.parametrize(
    ("limits", "key"),
    [
        ({"ip_rate_per_s": -1}, "limits.ip_rate_per_s"),
        ({"grant_rate_per_s": "fast"}, "limits.grant_rate_per_s"),
        ({"grant_burst": 10}, "limits.grant_burst"),  # under one full batch
        ({"max_keys": 0}, "limits.max_keys"),
        ({"per_ip": 1}, "limits.per_ip"),
    ],
)
def test_limits_config_errors_name_the_key(tmp_path: Path, limits: dict[str, Any], key: str) -> None:
    cfg = config_dict(tmp_path, "https://jobs.example.no") | {"limits": limits}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        settings_mod.from_mapping(cfg, SECRETS, tmp_path)


def test_limits_have_documented_defaults(tmp_path: Path) -> None:
    s = settings_mod.from_mapping(config_dict(tmp_path, "https://jobs.example.no"), SECRETS, tmp_path)
    assert s.limits == Limits() and (s.limits.ip_rate_per_s, s.limits.grant_burst) == (50.0, 120)
