"""Report settings: access (token hashes, users), the site's time zone and k floor; the two commands."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from pixel_server import cli
from pixel_server.core import settings as settings_mod
from pixel_server.core.settings import ConfigError
from pixel_server.reports.auth import Authenticator, token_hash
from tests.harness import SECRETS, config_dict


def load(tmp_path: Path, **patch: Any) -> settings_mod.Settings:
    cfg = config_dict(tmp_path, "https://jobs.example.no")
    for key, value in patch.items():
        if key == "site":
            cfg["sites"]["test"].update(value)
        elif key == "partner":
            cfg["partners"]["acme"].update(value)
        else:
            cfg[key] = value
    return settings_mod.from_mapping(cfg, SECRETS, tmp_path)


def test_defaults(tmp_path: Path) -> None:
    s = load(tmp_path)
    assert (s.sites["test"].timezone, s.sites["test"].k_floor) == ("Europe/Oslo", 5)
    assert not s.admin.api_token_hashes and not s.partners["acme"].access.users


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"site": {"timezone": "Mars/Olympus"}}, "sites.test.timezone"),
        ({"site": {"timezone": "../../etc/passwd"}}, "sites.test.timezone"),
        ({"site": {"k_floor": 1}}, "sites.test.k_floor"),
        ({"partner": {"api_token_hashes": ["plain-token"]}}, "partners.acme.api_token_hashes[0]"),
        (
            {"partner": {"users": [{"email": "a@b.no", "password_hash": "hunter2"}]}},
            "partners.acme.users[0].password_hash",
        ),
        (
            {"partner": {"users": [{"email": "nope", "password_hash": "$argon2id$x"}]}},
            "partners.acme.users[0].email",
        ),
        ({"admin": {"api_token_hashes": ["sha256:zz"]}}, "admin.api_token_hashes[0]"),
        ({"admin": {"tokens": []}}, "admin.tokens"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, patch: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ":"):
        load(tmp_path, **patch)


def test_new_token_and_hash_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert cli.main(["new-token"]) == 0
    out = capsys.readouterr().out
    token = out.split("shown once): ")[1].split()[0]
    line = out.splitlines()[1]
    assert line == f'config line: api_token_hashes = ["{token_hash(token)}"]'
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough password\n"))
    assert cli.main(["hash-password"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("$argon2id$") and PasswordHasher().verify(hashed, "a long enough password")
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cli.main(["hash-password"]) == 2
    # what the commands print is what the config accepts, and it authenticates
    s = load(
        tmp_path,
        partner={
            "api_token_hashes": [token_hash(token)],
            "users": [{"email": "Ola@Acme.no", "password_hash": hashed}],
        },
    )
    auth = Authenticator(s)
    assert auth.bearer(f"Bearer {token}") is not None and auth.bearer(f"Bearer {token}x") is None
    assert auth.password("ola@acme.no", "a long enough password") is not None
    assert (
        auth.password("ola@acme.no", "wrong") is None
        and auth.password("x@y.no", "a long enough password") is None
    )
