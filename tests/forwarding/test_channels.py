"""Each channel maps our events to exactly its documented request (CHANNELS.md), seen on the wire
through ``httpx.MockTransport``; identifiers are only the channel's own, never ours or personal data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pixel_server.core import settings as settings_mod
from pixel_server.forwarding import registry
from pixel_server.forwarding.base import Event, Options, Unmappable, with_base
from pixel_server.forwarding.sender import Sender
from tests.forwarding.support import LINKEDIN_RULE, SECRETS, event_row, forwarding_settings
from tests.harness import DESKTOP_UA, TEST_CHANNELS, run_async


def wire(tmp_path: Path, channel: str, rows: list[dict[str, Any]], **fwd: Any) -> httpx.Request:
    """Build the request for ``rows`` and send it through the real sender; return what went out."""
    settings = forwarding_settings(tmp_path, None, **fwd)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    ch = registry.load(channel)
    target = settings.forwarding.targets["shop"][channel]
    options = Options(
        settings.forwarding.debug, settings.forwarding.meta_api_version, settings.forwarding.linkedin_version
    )
    request = ch.build([Event.from_row(r) for r in rows], target, options)

    async def go() -> None:
        sender = Sender(settings.forwarding, httpx.MockTransport(handler))
        outcome = await sender.send(ch, request, len(rows))
        assert outcome.kind == "ok"
        await sender.aclose()

    run_async(go())
    [sent] = seen
    return sent


def query(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(request.url)).query)


def test_registry_matches_settings() -> None:
    assert set(registry.CHANNELS) == set(settings_mod.FORWARD_CHANNELS) | set(
        settings_mod.BROWSER_ONLY_CHANNELS
    )
    assert registry.server_channels() == settings_mod.FORWARD_CHANNELS
    for name in registry.CHANNELS:
        assert registry.load(name).name == name


def test_ga4_measurement_protocol(tmp_path: Path) -> None:
    row = event_row("apply_complete")
    req = wire(tmp_path, "ga4", [row])
    assert req.method == "POST"
    assert req.url.scheme == "https" and req.url.host == "region1.google-analytics.com"  # EU by default
    assert req.url.path == "/mp/collect"
    assert query(req) == {
        "measurement_id": [TEST_CHANNELS["ga4"]["id"]],
        "api_secret": [SECRETS["GA4_API_SECRET"]],
    }
    assert req.headers["content-type"] == "application/json"
    assert "authorization" not in req.headers
    body = json.loads(req.content)
    assert body == {
        "client_id": "1234567890.1700000000",
        "timestamp_micros": int(row["ts"] * 1_000_000),
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"},
        "events": [
            {
                "name": "apply_complete",
                "params": {
                    "job_id": "4711",
                    "job_title": "Selger",
                    "job_category": "Salg",
                    "job_location": "Oslo",
                    "job_employer": "Acme AS",
                    "event_id": row["event_id"],
                },
            }
        ],
    }


def test_ga4_debug_uses_the_validation_endpoint(tmp_path: Path) -> None:
    req = wire(tmp_path, "ga4", [event_row()], debug=True)
    assert req.url.path == "/debug/mp/collect"
    assert json.loads(req.content)["validation_behavior"] == "ENFORCE_RECOMMENDATIONS"


def test_ga4_never_sends_the_reserved_page_view(tmp_path: Path) -> None:
    req = wire(tmp_path, "ga4", [event_row("pageview")])
    assert [e["name"] for e in json.loads(req.content)["events"]] == ["job_view"]


def test_meta_conversions_api(tmp_path: Path) -> None:
    row = event_row("apply_complete")
    req = wire(tmp_path, "meta", [row])
    assert req.method == "POST"
    assert (req.url.scheme, req.url.host) == ("https", "graph.facebook.com")
    assert req.url.path == f"/v22.0/{TEST_CHANNELS['meta']['id']}/events"
    assert query(req) == {"access_token": [SECRETS["META_TOKEN"]]}
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    form = parse_qs(req.content.decode())
    assert set(form) == {"data"}
    assert json.loads(form["data"][0]) == [
        {
            "event_name": "SubmitApplication",
            "event_time": int(row["ts"]),  # seconds
            "event_id": row["event_id"],
            "action_source": "website",
            "event_source_url": row["url"],
            "user_data": {
                "client_user_agent": DESKTOP_UA,
                "fbp": "fb.1.1558571054389.1098115397",
                "fbc": "fb.1.1554763741205.AbCdEfGh",
            },
            "custom_data": {"content_ids": ["4711"], "content_name": "Selger", "content_category": "Salg"},
        }
    ]


def test_meta_builds_fbc_from_the_kept_fbclid_when_no_cookie(tmp_path: Path) -> None:
    row = event_row("apply_click")
    row["channel_ids"] = {"fbp": "fb.1.1.2"}
    req = wire(tmp_path, "meta", [row])
    [ev] = json.loads(parse_qs(req.content.decode())["data"][0])
    assert ev["event_name"] == "ApplyClick"
    assert ev["user_data"]["fbc"] == f"fb.1.{int(row['ts'] * 1000)}.IwAR-click"


def test_linkedin_conversions_api(tmp_path: Path) -> None:
    row = event_row("apply_complete")
    req = wire(tmp_path, "linkedin", [row])
    assert req.method == "POST"
    assert str(req.url) == "https://api.linkedin.com/rest/conversionEvents"
    assert req.headers["authorization"] == f"Bearer {SECRETS['LINKEDIN_TOKEN']}"
    assert req.headers["linkedin-version"] == "202510"
    assert req.headers["x-restli-protocol-version"] == "2.0.0"
    assert req.headers["content-type"] == "application/json"
    assert "x-restli-method" not in req.headers
    assert json.loads(req.content) == {
        "conversion": f"urn:lla:llaPartnerConversion:{LINKEDIN_RULE}",
        "conversionHappenedAt": int(row["ts"] * 1000),  # milliseconds
        "user": {"userIds": [{"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": "li-cookie-7"}]},
        "eventId": row["event_id"],
    }


def test_linkedin_batch_create(tmp_path: Path) -> None:
    rows = [event_row(), event_row()]
    req = wire(tmp_path, "linkedin", rows)
    assert req.headers["x-restli-method"] == "BATCH_CREATE"
    assert [e["eventId"] for e in json.loads(req.content)["elements"]] == [r["event_id"] for r in rows]


def test_snapchat_conversions_api(tmp_path: Path) -> None:
    row = event_row("apply_complete")
    row["click_ids"] = {"ScCid": "sc-click-9"}
    req = wire(tmp_path, "snapchat", [row])
    assert req.method == "POST"
    assert (req.url.scheme, req.url.host) == ("https", "tr.snapchat.com")
    assert req.url.path == f"/v3/{TEST_CHANNELS['snapchat']['id']}/events"
    assert query(req) == {"access_token": [SECRETS["SNAP_TOKEN"]]}
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.content) == {
        "data": [
            {
                "event_name": "SIGN_UP",
                "event_time": int(row["ts"]),  # seconds
                "event_id": row["event_id"],
                "action_source": "WEB",
                "event_source_url": row["url"],
                "user_data": {
                    "client_user_agent": DESKTOP_UA,
                    "sc_cookie1": "scid-5d1c6a2e",
                    "sc_click_id": "sc-click-9",
                },
                "custom_data": {
                    "content_ids": ["4711"],
                    "content_category": "Salg",
                    "custom_fields": {
                        "job_title": "Selger",
                        "job_location": "Oslo",
                        "job_employer": "Acme AS",
                    },
                },
            }
        ]
    }


@pytest.mark.parametrize(
    ("channel", "ours", "theirs"),
    [
        ("ga4", "pageview", "job_view"),
        ("ga4", "apply_click", "apply_click"),
        ("ga4", "apply_complete", "apply_complete"),
        ("meta", "pageview", "ViewContent"),
        ("meta", "apply_click", "ApplyClick"),
        ("meta", "apply_complete", "SubmitApplication"),
        ("linkedin", "apply_complete", "SUBMIT_APPLICATION"),
        ("snapchat", "pageview", "VIEW_CONTENT"),
        ("snapchat", "apply_complete", "SIGN_UP"),
        ("linkedin", "pageview", None),
        ("linkedin", "apply_click", None),
        ("snapchat", "apply_click", None),
        ("ga4", "engagement", None),
        ("meta", "engagement", None),
        ("meta", "page_view", None),
        ("bidtheatre", "apply_complete", None),
    ],
)
def test_event_name_table(channel: str, ours: str, theirs: str | None) -> None:
    assert registry.load(channel).events.get(ours) == theirs


@pytest.mark.parametrize("channel", ["ga4", "meta", "linkedin", "snapchat"])
def test_nothing_of_ours_or_personal_reaches_a_channel(tmp_path: Path, channel: str) -> None:
    """An attacker's row: a visitor id, an IP and a hashed e-mail smuggled into every map we read."""
    row = event_row()
    row["visitor_id"] = "0f0f0f0f-0000-4000-8000-00000000dead"
    row["channel_ids"] = {
        **row["channel_ids"],
        "ip": "203.0.113.9",
        "em": "a" * 64,
        "visitor_id": row["visitor_id"],
    }
    row["job"] = {**row["job"], "email": "ola@example.no"}
    row["client_ip_address"] = "203.0.113.9"
    req = wire(tmp_path, channel, [row])
    raw = req.content.decode() + str(req.url) + json.dumps(dict(req.headers))
    for leaked in ("0f0f0f0f", "203.0.113.9", "a" * 64, "ola@example.no", "client_ip_address", '"em"'):
        assert leaked not in raw


@pytest.mark.parametrize(
    ("channel", "change", "reason"),
    [
        ("ga4", {"channel_ids": {}}, "client id"),
        ("meta", {"user_agent": ""}, "user agent"),
        ("meta", {"url": ""}, "URL"),
        ("linkedin", {"channel_ids": {}, "click_ids": {}}, "li_fat_id"),
        ("snapchat", {"user_agent": ""}, "user agent"),
        ("snapchat", {"channel_ids": {}, "click_ids": {}}, "_scid"),
    ],
)
def test_unmappable_events_are_refused_before_any_request(
    tmp_path: Path, channel: str, change: dict[str, Any], reason: str
) -> None:
    settings = forwarding_settings(tmp_path, None)
    ch = registry.load(channel)
    with pytest.raises(Unmappable, match=reason):
        ch.check(Event.from_row(event_row(**change)), settings.forwarding.targets["shop"][channel])


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        (
            "https://tr.snapchat.com/v3/p/events?access_token=t",
            "http://127.0.0.1:9300",
            "http://127.0.0.1:9300/v3/p/events?access_token=t",
        ),
        (
            "https://region1.google-analytics.com/mp/collect?a=1&b=2",
            "http://localhost:1",
            "http://localhost:1/mp/collect?a=1&b=2",
        ),
        (
            "https://api.linkedin.com/rest/conversionEvents",
            None,
            "https://api.linkedin.com/rest/conversionEvents",
        ),
    ],
)
def test_endpoint_override_keeps_path_and_query(url: str, base: str | None, expected: str) -> None:
    assert with_base(url, base) == expected


def test_event_view_ignores_malformed_fields() -> None:
    ev = Event.from_row(
        {"event_id": 5, "ts": "yesterday", "marketing": "1", "channel_ids": ["x"], "job": {"title": 3}}
    )
    assert (ev.event_id, ev.ts, ev.marketing, dict(ev.channel_ids), dict(ev.job)) == ("", 0.0, False, {}, {})
