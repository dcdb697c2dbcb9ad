"""The error vocabulary every floor shares.

- :class:`DropReason`: the closed set of reasons an event (or a request) is not stored; each is counted.
- :class:`Rejected`: a request refused at the edge; becomes a 4xx/5xx JSON body naming the field.
- store failures live with the store protocol (:mod:`pixel_server.core.store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class DropReason(StrEnum):
    INVALID = "invalid"  # 400: a field is missing, malformed or over its limit
    TOO_LARGE = "too_large"  # 413: body over 64 KiB
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    UNKNOWN_SITE = "unknown_site"  # 403
    BAD_ORIGIN = "bad_origin"  # 403: the page's origin is not one the site allows
    NO_CONSENT = "no_consent"  # 403: no valid grant (issued only with statistics consent), or revoked
    CONFLICT = "conflict"  # 409: a choice_id already logged with another body (the log is never rewritten)
    BOT = "bot"  # 200 with nothing stored: crawlers, monitors, headless browsers
    UNAVAILABLE = "unavailable"  # 503: the journal could not write (I/O error); nothing acknowledged
    JOURNAL_FULL = "journal_full"  # 503 + Retry-After: over journal.max_bytes or the free-disk reserve
    RATE_LIMITED = "rate_limited"  # 429 + Retry-After: over a visitor limit ([limits]; by grant here)


@dataclass(frozen=True)
class Rejected(Exception):
    reason: DropReason
    status: int
    field: str | None
    detail: str
    events: int = 1
    retry_after: str | None = None  # seconds, sent as Retry-After (429, 503)

    def body(self) -> dict[str, Any]:
        return {"error": self.reason.value, "field": self.field, "detail": self.detail}
