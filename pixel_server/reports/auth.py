"""Who may read which site's reports.

- API: ``Authorization: Bearer <token>``; the config holds only ``sha256:<hex>`` of each token
  (``jobpixel new-token``), per partner under ``[partners.<id>]`` and for operators under ``[admin]``.
- Dashboard: e-mail + argon2id password (``jobpixel hash-password``), then a signed session cookie.

A partner sees only its own sites; any other site answers 404 exactly like a site that does not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error, InvalidHashError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from pixel_server.core.settings import Settings, Site

TOKEN_PREFIX = "jpx_"
SESSION_COOKIE = "jobpixel_session"
SESSION_MAX_AGE_S = 12 * 3600
_HASHER = PasswordHasher()  # argon2id, the library's RFC 9106 low-memory defaults
# a hash to verify against when the e-mail is unknown, so both cases take as long
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Principal:
    """Who is asking: a partner (its id) or the admin (``partner is None``)."""

    partner: str | None
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.partner is None

    def can_see(self, site: Site) -> bool:
        return self.is_admin or site.partner == self.partner

    def sites(self, settings: Settings) -> list[Site]:
        return [s for s in settings.sites.values() if self.can_see(s)]


def new_token() -> tuple[str, str]:
    """A fresh API token and the line that goes into the config."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tokens: dict[str, Principal] = {}
        self._users: dict[str, tuple[str, Principal]] = {}
        for p in settings.partners.values():
            for h in p.access.api_token_hashes:
                self._tokens[h] = Principal(p.id)
            for u in p.access.users:
                self._users[u.email] = (u.password_hash, Principal(p.id, u.email))
        for h in settings.admin.api_token_hashes:
            self._tokens[h] = Principal(None)
        for u in settings.admin.users:
            self._users[u.email] = (u.password_hash, Principal(None, u.email))
        # one serializer per key, newest first: the newest signs, every key verifies (rotation)
        self._signers = [
            URLSafeTimedSerializer(k, salt="jobpixel-dashboard-session")
            for k in reversed(settings.signing_keys)
        ]

    def bearer(self, header: str | None) -> Principal | None:
        if not header or not header.startswith("Bearer "):
            return None
        token = header[len("Bearer ") :].strip()
        if not token or len(token) > 200:
            return None
        digest = token_hash(token)
        for h, principal in self._tokens.items():
            if hmac.compare_digest(h, digest):
                return principal
        return None

    def password(self, email: str, password: str) -> Principal | None:
        entry = self._users.get(email.strip().lower())
        try:
            if entry is None:
                _HASHER.verify(_DUMMY_HASH, password)
                return None
            _HASHER.verify(entry[0], password)
        except (Argon2Error, InvalidHashError):
            return None
        return entry[1]

    # -- the session cookie: {"e": email, "c": csrf}, signed and timed ---------------------------
    def session_cookie(self, principal: Principal) -> tuple[str, str]:
        csrf = secrets.token_urlsafe(24)
        value = self._signers[0].dumps({"e": principal.email, "c": csrf})
        return value, csrf

    def session(self, cookie: str | None) -> tuple[Principal, str] | None:
        """The signed-in user and the session's CSRF token; a bad or old cookie is no session."""
        if not cookie or len(cookie) > 4096:
            return None
        for signer in self._signers:
            try:
                data = signer.loads(cookie, max_age=SESSION_MAX_AGE_S)
            except BadSignature:
                continue
            if not isinstance(data, dict):
                return None
            entry = self._users.get(str(data.get("e")))
            csrf = data.get("c")
            if entry is None or not isinstance(csrf, str):
                return None  # the user was removed from the config: the session ends
            return entry[1], csrf
        return None


class SignInLimiter:
    """At most ``limit`` failed sign-ins per client address and per e-mail in ``window_s``."""

    def __init__(self, limit: int = 5, window_s: float = 900.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._fails: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and q[0] < now - self.window_s:
            q.popleft()
        return q

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        return any(len(self._recent(k, now)) >= self.limit for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for k in keys:
            self._recent(k, now).append(now)
        if len(self._fails) > 100_000:  # bound memory under a spray of addresses
            self._fails.clear()
