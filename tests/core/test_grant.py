"""Grants: signed, rotating keys, an expiry; anything bad is simply no grant, never an error."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from pixel_server.core.grant import Grant, Grants

OLD, NEW = "old-key-0123456789abcdef", "new-key-0123456789abcdef"


def issue(grants: Grants, **over: Any) -> Grant:
    now = time.time()
    args: dict[str, Any] = {
        "consent_id": str(uuid.uuid4()),
        "choice_id": str(uuid.uuid4()),
        "site": "test-site_1",
        "categories": {"statistics"},
        "revision": 3,
        "issued_at": now,
        "expires_at": now + 182 * 86_400,
    }
    return grants.issue(**(args | over))


def test_issue_and_verify_roundtrip_carries_every_field() -> None:
    grants = Grants((NEW,))
    g = issue(grants, categories={"statistics", "marketing"})
    again = grants.verify(g.token)
    assert again == g
    assert Grants((NEW,)).verify(g.token) == g  # not only from the cache
    assert g.statistics and g.marketing and g.revision == 3 and g.site == "test-site_1"
    assert g.visitor_id.int.bit_length() > 64  # random 128 bits (overwhelmingly likely)
    assert issue(grants).visitor_id != g.visitor_id
    assert abs(g.issued_at - time.time()) < 5 and g.issued_at == round(g.issued_at, 3)
    kept = uuid.uuid4()
    assert issue(grants, visitor_id=kept).visitor_id == kept


def test_key_rotation_newest_signs_all_verify() -> None:
    before = issue(Grants((OLD,)))
    rotated = Grants((OLD, NEW))
    assert rotated.verify(before.token) is not None  # old grants survive a rotation
    after = issue(rotated)
    assert Grants((NEW,)).verify(after.token) is not None  # signed with the newest
    assert Grants((OLD,)).verify(after.token) is None
    assert Grants((NEW,)).verify(before.token) is None  # once OLD is retired


def test_expired_grant_is_no_grant_unless_asked_for_proof() -> None:
    grants = Grants((NEW,))
    g = issue(grants, issued_at=time.time() - 10, expires_at=time.time() - 1)
    assert grants.verify(g.token) is None
    assert grants.verify(g.token) is None  # the cache holds the signature, never the verdict on age
    assert grants.verify(g.token, allow_expired=True) == g


@pytest.mark.parametrize(
    "bad",
    [
        None,
        42,
        "",
        "x" * 500,
        "a.b.c",
        "g1.AAAA.BBBB.CCCC.site.s.1.0.0.forgedsignatureforgedsignatureforgedsig",
        "ä" * 60,
    ],
)
def test_garbage_is_no_grant_never_an_error(bad: object) -> None:
    assert Grants((NEW,)).verify(bad) is None


@pytest.mark.parametrize("part", [1, 2, 4, 5, 6, 7, 8])  # visitor, consent, site, categories, revision, times
def test_any_tampered_field_is_refused(part: int) -> None:
    grants = Grants((NEW,))
    token = issue(grants, categories={"statistics"}).token
    fields = token.split(".")
    fields[part] = {4: "other-site", 5: "sm", 6: "99", 8: "zzzzzzz"}.get(part, fields[part][::-1])
    assert grants.verify(".".join(fields)) is None
