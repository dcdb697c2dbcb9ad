"""Forwarding settings: on exactly when ``secret_env`` is set and present; every mistake names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pixel_server.core import settings as s
from tests.forwarding.support import SECRETS, forwarding_config
from tests.harness import HASH_KEY, SIGNING_KEY

ENV = {s.SIGNING_KEYS_ENV: SIGNING_KEY, s.HASH_KEY_ENV: HASH_KEY, **SECRETS}


def build(cfg: dict[str, Any], env: dict[str, str] = ENV) -> s.Settings:
    return s.from_mapping(cfg, env, Path("/tmp"))


def test_targets_carry_the_secret_from_the_environment_only() -> None:
    st = build(forwarding_config(Path("/tmp/x"), "http://127.0.0.1:9300"))
    targets = st.forwarding.targets
    assert set(targets["shop"]) == {"ga4", "meta", "linkedin", "snapchat"}
    assert targets["test"] == {}
    assert targets["shop"]["meta"].secret == SECRETS["META_TOKEN"]
    assert targets["shop"]["linkedin"].conversion_rule == "987654"
    assert targets["shop"]["ga4"].tag["id"] == "G-TEST123"
    assert SECRETS["META_TOKEN"] not in repr(st)  # secrets stay out of logs and tracebacks
    assert st.forwarding.endpoints["ga4"] == "http://127.0.0.1:9300"
    # the tag config the banner publishes is unchanged by the forwarding keys
    assert dict(st.sites["shop"].channels["linkedin"]) == {"id": "123456"}


def test_without_secret_env_nothing_is_forwarded() -> None:
    st = build(forwarding_config(Path("/tmp/x"), None, channels=()))
    assert not st.forwarding.enabled
    assert st.forwarding.endpoints == {}


def test_a_missing_secret_fails_at_start_naming_the_variable() -> None:
    env = {k: v for k, v in ENV.items() if k != "SNAP_TOKEN"}
    with pytest.raises(
        s.ConfigError, match=r"^SNAP_TOKEN: missing; sites\.shop\.channels\.snapchat\.secret_env"
    ):
        build(forwarding_config(Path("/tmp/x"), None), env)
    with pytest.raises(s.ConfigError, match="^SNAP_TOKEN: missing"):
        build(forwarding_config(Path("/tmp/x"), None), {**env, "SNAP_TOKEN": "   "})


def _set(cfg: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
    if value is KeyError:
        node.pop(last, None)
    else:
        node[last] = value
    return cfg


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (
            "sites.shop.channels.bidtheatre.secret_env",
            "BT_TOKEN",
            "sites.shop.channels.bidtheatre.secret_env",
        ),
        (
            "sites.shop.channels.linkedin.conversion_rule",
            KeyError,
            "sites.shop.channels.linkedin.conversion_rule",
        ),
        (
            "sites.shop.channels.linkedin.conversion_rule",
            "urn:x",
            "sites.shop.channels.linkedin.conversion_rule",
        ),
        ("sites.shop.channels.meta.conversion_rule", "1", "sites.shop.channels.meta.conversion_rule"),
        ("sites.shop.channels.meta.secret_env", "lower-case", "sites.shop.channels.meta.secret_env"),
        ("sites.shop.channels.meta.secret_env", 5, "sites.shop.channels.meta.secret_env"),
        ("sites.shop.channels.meta.api_key", "x", "sites.shop.channels.meta"),
        ("forwarding.endpoints.bidtheatre", "http://127.0.0.1:1", "forwarding.endpoints.bidtheatre"),
        ("forwarding.endpoints.ga4", "http://127.0.0.1:1/mp", "forwarding.endpoints.ga4"),
        ("forwarding.endpoints.ga4", "file:///etc/passwd", "forwarding.endpoints.ga4"),
        ("forwarding.debug", "yes", "forwarding.debug"),
        ("forwarding.limits.meta.concurrency", 0, "forwarding.limits.meta.concurrency"),
        ("forwarding.limits.meta.rate_per_s", -1, "forwarding.limits.meta.rate_per_s"),
        ("forwarding.limits.tiktok", {}, "forwarding.limits.tiktok"),
        ("forwarding.meta_api_version", "22", "forwarding.meta_api_version"),
        ("forwarding.linkedin_version", "2025-10", "forwarding.linkedin_version"),
        ("forwarding.retry_base_ms", 0, "forwarding.retry_base_ms"),
        ("forwarding.queue", 1, "forwarding.queue"),
        ("forwarding.process", "yes", "forwarding.process"),
    ],
)
def test_errors_name_the_key(path: str, value: Any, key: str) -> None:
    cfg = _set(forwarding_config(Path("/tmp/x"), None), path, value)
    with pytest.raises(s.ConfigError) as info:
        build(cfg)
    assert str(info.value).startswith(key), str(info.value)


def test_limits_and_versions() -> None:
    cfg = forwarding_config(Path("/tmp/x"), None)
    cfg["forwarding"].update(
        {
            "limits": {"meta": {"concurrency": 4, "rate_per_s": 2.5}},
            "meta_api_version": "v23.0",
            "linkedin_version": "202601",
        }
    )
    fwd = build(cfg).forwarding
    assert (fwd.limits_for("meta").concurrency, fwd.limits_for("meta").rate_per_s) == (4, 2.5)
    assert fwd.limits_for("ga4") == s.ChannelLimits()
    assert (fwd.meta_api_version, fwd.linkedin_version) == ("v23.0", "202601")


def test_example_config_documents_forwarding() -> None:
    text = (Path(__file__).parents[2] / "jobpixel.example.toml").read_text()
    for needle in (
        "secret_env",
        "conversion_rule",
        "[forwarding]",
        "[forwarding.endpoints]",
        "[forwarding.limits",
        "process = true",
    ):
        assert needle in text


def test_check_config_names_the_variables_never_the_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixel_server import cli

    config = tmp_path / "jobpixel.toml"
    config.write_text(
        '[partners.p]\nname = "P"\n[sites.shop]\npartner = "p"\norigins = ["https://jobs.example.no"]\n'
        '[sites.shop.channels.meta]\nid = "1234567890"\nsecret_env = "META_TOKEN"\n'
    )
    monkeypatch.setenv(s.SIGNING_KEYS_ENV, SIGNING_KEY)
    monkeypatch.setenv(s.HASH_KEY_ENV, HASH_KEY)
    monkeypatch.setenv("META_TOKEN", SECRETS["META_TOKEN"])
    assert cli.main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "forwarding server-side: meta ($META_TOKEN)" in out
    assert SECRETS["META_TOKEN"] not in out
    monkeypatch.delenv("META_TOKEN")
    assert cli.main(["check-config", "--config", str(config)]) == 2
    assert "META_TOKEN: missing" in capsys.readouterr().err


def test_the_public_site_config_never_shows_forwarding_secrets() -> None:
    from pixel_server.web.assets import site_public_config

    st = build(forwarding_config(Path("/tmp/x"), "http://127.0.0.1:9300"))
    public = str(site_public_config(st.sites["shop"]))
    for hidden in (*SECRETS, *SECRETS.values(), "secret_env", "conversion_rule", "987654", "127.0.0.1:9300"):
        assert hidden not in public
    assert "G-TEST123" in public  # the tag config still is


def test_the_public_site_config_says_which_channels_the_server_forwards() -> None:
    """The banner leaves GA4 events to the server only where the server forwards GA4 (``server``)."""
    from pixel_server.web.assets import site_public_config

    st = build(forwarding_config(Path("/tmp/x"), "http://127.0.0.1:9300"))
    forwarded = st.forwarding.targets["shop"]
    public = site_public_config(st.sites["shop"], forwarded)
    server = {c["id"]: c["server"] for c in public["channels"]}
    assert server == {name: name in forwarded for name in st.sites["shop"].channels}
    assert server["ga4"] is True
    assert all(c["server"] is False for c in site_public_config(st.sites["shop"])["channels"])


def test_delivery_runs_in_a_child_process_unless_asked_not_to(tmp_path: Path) -> None:
    from pixel_server.forwarding.child import ChildForwarder
    from pixel_server.forwarding.wiring import Forwarder
    from pixel_server.web.app import create_app

    cfg = forwarding_config(tmp_path / "a", None)
    assert build(cfg).forwarding.process is True
    app = create_app(build(cfg))
    assert isinstance(app.state.jp.forwarder, ChildForwarder)
    app.state.jp.journal.close()
    cfg = forwarding_config(tmp_path / "b", None)
    cfg["forwarding"]["process"] = False
    app = create_app(build(cfg))
    assert isinstance(app.state.jp.forwarder, Forwarder)
    app.state.jp.journal.close()
