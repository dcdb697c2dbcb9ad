"""The closed set of reasons an event is not stored; each is counted in metrics."""

from __future__ import annotations

from enum import StrEnum


class DropReason(StrEnum):
    INVALID = "invalid"  # 400: a field is missing, malformed or over its limit
    TOO_LARGE = "too_large"  # 413: body over 64 KiB
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    UNKNOWN_SITE = "unknown_site"  # 403
    BAD_ORIGIN = "bad_origin"  # 403: the page's origin is not one the site allows
    NO_CONSENT = "no_consent"  # 403: no valid visitor token (issued only with statistics consent)
    BOT = "bot"  # 200 with nothing stored: crawlers, monitors, headless browsers
    UNAVAILABLE = "unavailable"  # 503: the spool could not write (disk full); nothing acknowledged
