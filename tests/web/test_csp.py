"""The Content-Security-Policy a partner's page needs (issue #11), as check-config prints it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixel_server.cli import main
from pixel_server.core import channels
from pixel_server.web import csp
from tests.harness import SECRETS, TEST_CHANNELS, make_settings

PIXEL = "https://pixel.example.no"


def directives(policy: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in policy.split("; ")}


def test_a_site_without_channels_needs_the_pixel_server_only(tmp_path: Path) -> None:
    site = make_settings(tmp_path).sites["test"]
    assert directives(csp.partner_csp(site, PIXEL)) == {
        "default-src": ["'self'"],
        "script-src": ["'self'", PIXEL],
        "connect-src": ["'self'", PIXEL],
        "img-src": ["'self'"],
        "style-src": ["'self'"],
        "frame-src": ["'self'"],
    }


def test_each_enabled_channel_adds_its_tag_host_and_its_hosts(tmp_path: Path) -> None:
    site = make_settings(tmp_path).sites["shop"]
    policy = directives(csp.partner_csp(site, PIXEL + "/"))
    assert set(site.channels) == set(TEST_CHANNELS)
    for name in TEST_CHANNELS:
        spec = channels.REGISTRY[name]
        tag_host = "https://" + spec.tag_src.split("/")[2]
        assert tag_host in policy["script-src"]
        for host in spec.hosts:
            for directive in ("connect-src", "img-src", "frame-src"):
                assert "https://" + host in policy[directive], (name, host, directive)
    assert policy["style-src"] == ["'self'"]  # the banner's CSS needs nothing
    assert policy["script-src"].count(PIXEL) == 1  # no duplicates, trailing slash dropped


def test_check_config_prints_the_policy_per_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    config = tmp_path / "jobpixel.toml"
    config.write_text(
        f"""
[server]
data_dir = "{tmp_path / "data"}"
[partners.acme]
name = "Acme"
[sites.acme]
partner = "acme"
origins = ["https://karriere.acme.no"]
[sites.acme.channels.meta]
id = "123456789012345"
"""
    )
    assert main(["check-config", "-c", str(config), "--pixel-origin", PIXEL]) == 0
    out = capsys.readouterr().out
    assert "Content-Security-Policy for site acme (pages on https://karriere.acme.no):" in out
    assert f"  script-src {PIXEL} https://connect.facebook.net" in out
    assert "  style-src (nothing from jobpixel)" in out
    assert (
        f"a complete policy: default-src 'self'; script-src 'self' {PIXEL} https://connect.facebook.net; "
        f"connect-src 'self' {PIXEL} https://connect.facebook.net https://www.facebook.com;"
    ) in out
    assert "trusted-types list must name 'jobpixel'" in out
