"""Configuration: every mistake fails at start with a message naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pixel_server import cli
from pixel_server.core import settings as s
from tests.harness import SIGNING_KEY, config_dict

ENV = {s.SIGNING_KEYS_ENV: SIGNING_KEY}


def base() -> dict[str, Any]:
    return config_dict(Path("/tmp/x"), "https://jobs.example.no")


def test_valid_config_builds_frozen_settings(tmp_path: Path) -> None:
    st = s.from_mapping(base(), ENV, tmp_path)
    assert set(st.sites) == {"test", "shop"}
    assert st.sites["shop"].channels["ga4"]["id"] == "G-TEST123"
    assert st.signing_keys == (SIGNING_KEY,)
    with pytest.raises(AttributeError):
        st.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        st.sites["x"] = st.sites["test"]  # type: ignore[index]


def put(path: str, value: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(base())
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
    ("cfg", "env", "key"),
    [
        (base(), {}, "JOBPIXEL_SIGNING_KEYS"),
        (base(), {s.SIGNING_KEYS_ENV: "short"}, "JOBPIXEL_SIGNING_KEYS[0]"),
        (put("sites", {}), ENV, "sites"),
        (put("sites.test.partner", "nobody"), ENV, "sites.test.partner"),
        (put("sites.test.partner", KeyError), ENV, "sites.test.partner"),
        (put("sites.test.origins", []), ENV, "sites.test.origins"),
        (put("sites.test.origins", ["jobs.example.no"]), ENV, "sites.test.origins[0]"),
        (put("sites.test.origins", ["https://x.no/path"]), ENV, "sites.test.origins[0]"),
        (put("sites.test.retention_days", 0), ENV, "sites.test.retention_days"),
        (put("sites.test.retention_days", "30"), ENV, "sites.test.retention_days"),
        (put("sites.test.lang", "de"), ENV, "sites.test.lang"),
        (put("sites.test.ad_pattern", "(unclosed"), ENV, "sites.test.ad_pattern"),
        (put("sites.test.policy_url", "/personvern"), ENV, "sites.test.policy_url"),
        (put("sites.test.colour", "red"), ENV, "sites.test.colour"),
        (put("sites.test.channels", {"tiktok": {"id": "1"}}), ENV, "sites.test.channels.tiktok"),
        (put("sites.test.channels", {"ga4": {"id": "UA-1"}}), ENV, "sites.test.channels.ga4"),
        (put("sites.test.texts", {"de": {"title": "x"}}), ENV, "sites.test.texts.de"),
        (put("sites.Bad Id", {}), ENV, "sites.Bad Id"),
        (put("storage.backend", "postgres"), ENV, "storage.backend"),
        (put("storage.backend", "clickhouse"), ENV, "CLICKHOUSE_URL"),
        (put("storage.database", "x;drop"), ENV, "storage.database"),
        (put("storage.cluster", "c1"), ENV, "storage.cluster"),
        (put("server.port", 70000), ENV, "server.port"),
        (put("server.trusted_proxies", ["not-an-ip"]), ENV, "server.trusted_proxies[0]"),
        (put("serverr", {}), ENV, "serverr"),
        (put("sites.test.ad_pattern", "/jobb/(?P<id>\\d+)"), ENV, "sites.test.ad_pattern"),
        (put("sites.test.thanks_pattern", "(?i)/takk"), ENV, "sites.test.thanks_pattern"),
        (put("sites.test.ad_pattern", "\\A/jobb/(\\d+)"), ENV, "sites.test.ad_pattern"),
        (put("sites.test.float_button", "false"), ENV, "sites.test.float_button"),
        (put("sites.test.ats_hosts", ["https://ats.example.com/"]), ENV, "sites.test.ats_hosts[0]"),
        (put("sites.test.revision", 2**31), ENV, "sites.test.revision"),
        (put("server.log_level", "loud"), ENV, "server.log_level"),
        (put("identity.token_days", 30), ENV, "identity.token_days"),
        (put("journal.max_bytes", 0), ENV, "journal.max_bytes"),
        (put("journal.max_bytes", "4GiB"), ENV, "journal.max_bytes"),
        (put("journal.max_bytes", 2 * 1024**2), ENV, "journal.max_bytes"),  # < 2 segments of 16 MiB
        (put("journal.reserve_bytes", -1), ENV, "journal.reserve_bytes"),
        (put("journal.segment_bytes", 10), ENV, "journal.segment_bytes"),
        (put("journal.segment_seconds", 0), ENV, "journal.segment_seconds"),
        (put("journal.path", "/x"), ENV, "journal.path"),
    ],
)
def test_errors_name_the_key(cfg: dict[str, Any], env: dict[str, str], key: str, tmp_path: Path) -> None:
    with pytest.raises(s.ConfigError) as err:
        s.from_mapping(cfg, env, tmp_path)
    assert str(err.value).startswith(key + ":") or str(err.value).startswith(key + " "), str(err.value)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://jobs.example.no:443", "https://jobs.example.no"),
        ("http://jobs.example.no:80/", "http://jobs.example.no"),
        ("https://JOBS.example.no:8443", "https://jobs.example.no:8443"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_origins_are_stored_as_browsers_send_them(tmp_path: Path, given: str, stored: str) -> None:
    st = s.from_mapping(put("sites.test.origins", [given]), ENV, tmp_path)
    assert st.sites["test"].origins == {stored}


def test_check_config_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(s.SIGNING_KEYS_ENV, SIGNING_KEY)
    good = Path(__file__).parents[2] / "pixel_server" / "web" / "demo" / "jobpixel.demo.toml"
    assert cli.main(["check-config", "--config", str(good)]) == 0
    assert "site demo" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[partners.p]\nname = "P"\n[sites.s]\npartner = "p"\norigins = ["nope"]\n')
    assert cli.main(["check-config", "--config", str(bad)]) == 2
    assert "sites.s.origins[0]" in capsys.readouterr().err
    assert cli.main(["check-config", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).parents[2] / "jobpixel.example.toml"
    st = s.load(example, ENV)
    assert st.sites


def test_journal_limits_are_read(tmp_path: Path) -> None:
    cfg = put(
        "journal", {"max_bytes": 10**9, "reserve_bytes": 0, "segment_bytes": 2**20, "segment_seconds": 3}
    )
    st = s.from_mapping(cfg, ENV, tmp_path)
    assert (st.journal_max_bytes, st.journal_reserve_bytes) == (10**9, 0)
    assert (st.journal_segment_bytes, st.journal_segment_seconds) == (2**20, 3.0)
    default = s.from_mapping(base(), ENV, tmp_path)
    assert default.journal_max_bytes == 4 * 1024**3 and default.journal_segment_seconds == 5.0
