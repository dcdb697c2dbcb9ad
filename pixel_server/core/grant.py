"""The grant: consent the server knows, signed, with an expiry (issue #7).

``POST /consent`` issues a grant when statistics is granted; the page keeps it in
the ``jobpixel_vid`` cookie and sends it as ``token`` with every event. It names
the visitor (128 random bits), the consent and the choice it came from, the
site, the categories granted, the banner revision shown, when it was issued and
when it expires (never past the consent's expiry). ``/collect`` derives what it
may store only from a verified grant, never from a body field.

The token is ``g1.<visitor>.<consent>.<choice>.<site>.<categories>.<revision>.
<issued ms>.<expires s>.<signature>`` (ids base64url, times base 36), signed
with itsdangerous' ``Signer`` (HMAC-SHA256). Keys rotate: the settings list
them oldest first, the newest signs and all of them verify. A forged, tampered,
unparseable or expired token is simply *no grant*, never an error (the way
Starlette's session middleware turns a bad signature into an empty session).
Whether a grant was revoked since it was issued is not in the token: that is
:class:`pixel_server.consent.revocation.Revocations`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from functools import cached_property

from itsdangerous import BadData, Signer

SALT = "jobpixel.grant.v1"
VERSION = "g1"
CACHE_SIZE = 50_000
MAX_TOKEN = 400
_CATS = {"": frozenset(), "s": frozenset({"statistics"}), "m": frozenset({"marketing"})}
_CATS["sm"] = _CATS["s"] | _CATS["m"]
_MISSING = object()


@dataclass(frozen=True)
class Grant:
    visitor_id: uuid.UUID
    consent_id: str  # UUID string
    choice_id: str  # the choice that issued this grant
    site: str
    categories: frozenset[str]  # subset of {"statistics", "marketing"}
    revision: int
    issued_at: float  # unix seconds, millisecond precision
    expires_at: float  # unix seconds, never past the consent's expiry
    token: str

    @cached_property
    def visitor(self) -> str:
        """``visitor_id`` as text (what is stored), made once per grant, not per event."""
        return str(self.visitor_id)

    @property
    def statistics(self) -> bool:
        return "statistics" in self.categories

    @property
    def marketing(self) -> bool:
        return "marketing" in self.categories


class Grants:
    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ValueError("at least one signing key is required")
        # itsdangerous: with a list of keys the last one signs and every one verifies.
        self._signer = Signer(list(keys), salt=SALT, digest_method=hashlib.sha256)
        self._cache: dict[str, object] = {}

    def issue(
        self,
        *,
        consent_id: str,
        choice_id: str,
        site: str,
        categories: frozenset[str] | set[str],
        revision: int,
        issued_at: float,
        expires_at: float,
        visitor_id: uuid.UUID | None = None,
    ) -> Grant:
        vid = visitor_id if visitor_id is not None else uuid.UUID(bytes=secrets.token_bytes(16))
        cats = ("s" if "statistics" in categories else "") + ("m" if "marketing" in categories else "")
        issued_ms = round(issued_at * 1000)
        expires_s = int(expires_at)
        payload = ".".join(
            (
                VERSION,
                _b64(vid.bytes),
                _b64(uuid.UUID(consent_id).bytes),
                _b64(uuid.UUID(choice_id).bytes),
                site,
                cats,
                str(revision),
                _b36(issued_ms),
                _b36(expires_s),
            )
        )
        token = self._signer.sign(payload.encode("ascii")).decode("ascii")
        return Grant(
            vid,
            str(uuid.UUID(consent_id)),
            str(uuid.UUID(choice_id)),
            site,
            _CATS[cats],
            revision,
            issued_ms / 1000,
            float(expires_s),
            token,
        )

    def verify(self, token: object, *, allow_expired: bool = False) -> Grant | None:
        """The grant for a valid, unexpired token; ``None`` for anything else. Never raises."""
        if not isinstance(token, str) or not 40 < len(token) < MAX_TOKEN:
            return None
        grant = self._check_signature(token)
        if grant is None or (not allow_expired and time.time() >= grant.expires_at):
            return None
        return grant

    def _check_signature(self, token: str) -> Grant | None:
        """Signature check and parse, cached: a visitor sends many events with one grant (HMAC ~15 µs).

        Only the signature is cached, never the verdict on age: expiry is checked per call.
        """
        cached = self._cache.get(token, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        result: Grant | None
        try:
            payload = self._signer.unsign(token.encode("ascii")).decode("ascii")
            result = _parse(payload, token)
        except (BadData, ValueError, UnicodeError, KeyError):
            result = None
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))  # drop the oldest entry (dicts keep insertion order)
        self._cache[token] = result
        return result


def _parse(payload: str, token: str) -> Grant:
    version, vid, consent, choice, site, cats, revision, issued, expires = payload.split(".")
    if version != VERSION:
        raise ValueError("unknown grant version")
    return Grant(
        uuid.UUID(bytes=_unb64(vid)),
        str(uuid.UUID(bytes=_unb64(consent))),
        str(uuid.UUID(bytes=_unb64(choice))),
        site,
        _CATS[cats],
        int(revision),
        int(issued, 36) / 1000,
        float(int(expires, 36)),
        token,
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(raw) != 16:
        raise ValueError("not 128 bits")
    return raw


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out
