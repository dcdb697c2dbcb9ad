"""The channel registry: config validation and the public JSON shape."""

from __future__ import annotations

import re

import pytest

from pixel_server.core.channels import REGISTRY, public_channel, validate_channel_config

CHANNELS = ["ga4", "meta", "linkedin", "snapchat", "bidtheatre"]


def test_registry_has_the_five_channels() -> None:
    assert sorted(REGISTRY) == sorted(CHANNELS)


@pytest.mark.parametrize(
    ("channel", "cfg", "expected"),
    [
        ("ga4", {"id": "G-TEST123"}, {"id": "G-TEST123"}),
        ("ga4", {"id": " g-abc123xyz "}, {"id": "G-ABC123XYZ"}),
        ("meta", {"id": "1234567890"}, {"id": "1234567890"}),
        ("meta", {"id": 123456789012345}, {"id": "123456789012345"}),
        ("linkedin", {"id": "123456"}, {"id": "123456"}),
        ("linkedin", {"id": "123456", "conversion": 11563522}, {"id": "123456", "conversion": "11563522"}),
        (
            "snapchat",
            {"id": "C9215353-76C9-4423-A615-21B4AC088222"},
            {"id": "c9215353-76c9-4423-a615-21b4ac088222"},
        ),
        ("bidtheatre", {"id": "584"}, {"id": "584"}),
        ("bidtheatre", {"id": "584", "conversion": "892"}, {"id": "584", "conversion": "892"}),
    ],
)
def test_valid_configs_are_normalized(channel: str, cfg: dict[str, object], expected: dict[str, str]) -> None:
    assert validate_channel_config(channel, cfg) == expected


@pytest.mark.parametrize(
    ("channel", "cfg", "names"),
    [
        ("nope", {"id": "1"}, "channels: unknown channel 'nope'"),
        ("ga4", {}, "channels.ga4.id: required"),
        ("ga4", {"id": "UA-12345-1"}, "channels.ga4.id:"),
        ("ga4", {"id": "G-"}, "channels.ga4.id:"),
        ("ga4", {"id": "G-ABC", "extra": "x"}, "channels.ga4.extra: unknown key"),
        ("meta", {"id": "12ab"}, "channels.meta.id:"),
        ("meta", {"id": True}, "channels.meta.id: must be a string"),
        ("meta", {"id": ["1"]}, "channels.meta.id: must be a string"),
        ("linkedin", {"id": "12"}, "channels.linkedin.id:"),
        ("linkedin", {"id": "123456", "conversion": "urn:lla:1"}, "channels.linkedin.conversion:"),
        ("snapchat", {"id": "not-a-uuid"}, "channels.snapchat.id:"),
        ("bidtheatre", {"conversion": "892"}, "channels.bidtheatre.id: required"),
        ("bidtheatre", {"id": "584", "conversion": "x"}, "channels.bidtheatre.conversion:"),
        ("ga4", {"id": 'G-ABC"</script>'}, "channels.ga4.id:"),
    ],
)
def test_bad_configs_name_the_key(channel: str, cfg: dict[str, object], names: str) -> None:
    with pytest.raises(ValueError, match=re.escape(names)):
        validate_channel_config(channel, cfg)


@pytest.mark.parametrize(
    ("channel", "cfg", "src"),
    [
        ("ga4", {"id": "G-TEST123"}, "https://www.googletagmanager.com/gtag/js?id=G-TEST123"),
        ("meta", {"id": "1234567890"}, "https://connect.facebook.net/en_US/fbevents.js"),
        ("linkedin", {"id": "123456"}, "https://snap.licdn.com/li.lms-analytics/insight.min.js"),
        (
            "snapchat",
            {"id": "c9215353-76c9-4423-a615-21b4ac088222"},
            "https://sc-static.net/scevent.min.js",
        ),
        ("bidtheatre", {"id": "584"}, "https://adsby.bidtheatre.com/js/asx_track.min.js"),
    ],
)
def test_public_channel_shape(channel: str, cfg: dict[str, str], src: str) -> None:
    out = public_channel(channel, cfg)
    assert set(out) == {
        "id",
        "name",
        "processor",
        "location",
        "privacy_url",
        "purpose",
        "cookies",
        "cookie_prefixes",
        "tag",
    }
    assert out["id"] == channel
    tag = out["tag"]
    assert isinstance(tag, dict)
    assert tag["kind"] == REGISTRY[channel].tag_kind
    assert tag["id"] == cfg["id"]
    assert tag["src"] == src
    assert str(out["privacy_url"]).startswith("https://")
    purpose = out["purpose"]
    assert isinstance(purpose, dict) and purpose["nb"] and purpose["en"]
    cookies = out["cookies"]
    assert isinstance(cookies, list)
    prefixes = out["cookie_prefixes"]
    assert isinstance(prefixes, list)
    for cookie in cookies:
        assert set(cookie) == {"name", "days"}
        assert 0 < cookie["days"] <= 730
        # every cookie the channel sets on the page is deleted on withdrawal
        assert any(cookie["name"].startswith(p) for p in prefixes), cookie


def test_ga4_session_cookie_name_uses_the_container_id() -> None:
    cookies = public_channel("ga4", {"id": "G-TEST123"})["cookies"]
    assert {"name": "_ga_TEST123", "days": 730} in cookies  # type: ignore[operator]


def test_bidtheatre_conversion_is_passed_to_the_tag() -> None:
    tag = public_channel("bidtheatre", {"id": "584", "conversion": "892"})["tag"]
    assert tag == {
        "kind": "bidtheatre",
        "id": "584",
        "conversion": "892",
        "src": "https://adsby.bidtheatre.com/js/asx_track.min.js",
    }


@pytest.mark.parametrize("channel", CHANNELS)
def test_tag_host_is_among_the_declared_hosts(channel: str) -> None:
    spec = REGISTRY[channel]
    host = re.sub(r"^https://([^/]+)/.*$", r"\1", spec.tag_src)
    assert host in spec.hosts


@pytest.mark.parametrize("channel", CHANNELS)
def test_specs_are_frozen(channel: str) -> None:
    with pytest.raises(AttributeError):
        REGISTRY[channel].name = "x"  # type: ignore[misc]
