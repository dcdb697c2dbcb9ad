"""Visitor tokens: 128 random bits, signed, rotating keys, an expiry; anything bad is simply no id."""

from __future__ import annotations

import time

import pytest

from pixel_server.core.grant import VisitorTokens

OLD, NEW = "old-key-0123456789abcdef", "new-key-0123456789abcdef"


def test_issue_and_verify_roundtrip() -> None:
    tokens = VisitorTokens((NEW,), 396)
    v = tokens.issue()
    again = tokens.verify(v.token)
    assert again is not None and again.id == v.id
    assert v.id.int.bit_length() > 64  # random 128 bits (overwhelmingly likely)
    assert tokens.issue().id != v.id
    assert v.expires_at - v.issued_at == 396 * 86_400


def test_key_rotation_newest_signs_all_verify() -> None:
    before = VisitorTokens((OLD,), 396).issue()
    rotated = VisitorTokens((OLD, NEW), 396)
    assert rotated.verify(before.token) is not None  # old tokens survive a rotation
    after = rotated.issue()
    assert VisitorTokens((NEW,), 396).verify(after.token) is not None  # signed with the newest
    assert VisitorTokens((OLD,), 396).verify(after.token) is None
    assert VisitorTokens((NEW,), 396).verify(before.token) is None  # once OLD is retired


def test_expired_token_is_no_id() -> None:
    tokens = VisitorTokens((NEW,), 30)
    assert tokens.verify(tokens.issue(now=time.time() - 31 * 86_400).token) is None
    assert tokens.verify(tokens.issue(now=time.time() - 29 * 86_400).token) is not None


@pytest.mark.parametrize(
    "bad",
    [
        None,
        42,
        "",
        "x" * 500,
        "a.b.c",
        "not base64!.AAAA.BBBB",
        "ä" * 30,
        "AAAAAAAAAAAAAAAAAAAAAA.AAAAAA.forgedsignatureforgedsignature",
    ],
)
def test_garbage_is_no_id_never_an_error(bad: object) -> None:
    assert VisitorTokens((NEW,), 396).verify(bad) is None


def test_tampered_id_is_refused() -> None:
    tokens = VisitorTokens((NEW,), 396)
    tok = tokens.issue().token
    raw, rest = tok.split(".", 1)
    flipped = ("B" if raw[0] != "B" else "C") + raw[1:]
    assert tokens.verify(f"{flipped}.{rest}") is None
