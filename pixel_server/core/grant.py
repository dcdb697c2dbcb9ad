"""The first-party visitor id: 128 random bits, signed, with an expiry.

The token is ``<base64url id>.<timestamp>.<signature>`` (itsdangerous
``TimestampSigner``). Keys rotate: the settings list them oldest first, the
newest signs and all of them verify. A forged, tampered, unparseable or
expired token is simply *no id* — never an error (the way Starlette's session
middleware turns a bad signature into an empty session).

It is issued only with statistics consent (``POST /consent``) and kept by the
page in the ``jobpixel_vid`` cookie on the page's own domain.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from itsdangerous import BadData, TimestampSigner

SALT = "jobpixel.visitor.v1"
CACHE_SIZE = 50_000
_MISSING = object()


@dataclass(frozen=True)
class Visitor:
    id: uuid.UUID
    token: str
    issued_at: int  # unix seconds
    expires_at: int  # unix seconds


class VisitorTokens:
    def __init__(self, keys: tuple[str, ...], max_age_days: int) -> None:
        if not keys:
            raise ValueError("at least one signing key is required")
        # itsdangerous: with a list of keys the last one signs and every one verifies.
        self._signer = TimestampSigner(list(keys), salt=SALT, digest_method=hashlib.sha256)
        self.max_age = max_age_days * 86_400
        self._cache: dict[str, object] = {}

    def issue(self, now: float | None = None) -> Visitor:
        vid = uuid.UUID(bytes=secrets.token_bytes(16))
        raw = base64.urlsafe_b64encode(vid.bytes).rstrip(b"=")
        if now is None:
            token = self._signer.sign(raw).decode()
        else:  # only tests pass a clock
            token = _FixedClockSigner(self._signer, int(now)).sign(raw).decode()
        issued = int(now if now is not None else time.time())
        return Visitor(vid, token, issued, issued + self.max_age)

    def verify(self, token: object) -> Visitor | None:
        """The visitor for a valid, unexpired token; ``None`` for anything else."""
        if not isinstance(token, str) or not 20 < len(token) < 200:
            return None
        checked = self._check_signature(token)
        if checked is None:
            return None
        vid, issued = checked
        if time.time() - issued > self.max_age:
            return None
        return Visitor(vid, token, issued, issued + self.max_age)

    def _check_signature(self, token: str) -> tuple[uuid.UUID, int] | None:
        """Signature check, cached: a visitor sends many events with one token (HMAC ~15 µs).

        Only the signature is cached, never the verdict on age: expiry is checked per call.
        """
        cached = self._cache.get(token, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        try:
            raw, ts = self._signer.unsign(token.encode("ascii"), return_timestamp=True)
            result: tuple[uuid.UUID, int] | None = (
                uuid.UUID(bytes=base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))),
                int(ts.timestamp()),
            )
        except (BadData, ValueError, UnicodeError):
            result = None
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))  # drop the oldest entry (dicts keep insertion order)
        self._cache[token] = result
        return result


class _FixedClockSigner(TimestampSigner):
    def __init__(self, base: TimestampSigner, now: int) -> None:
        self.__dict__.update(base.__dict__)
        self._now = now

    def get_timestamp(self) -> int:
        return self._now
