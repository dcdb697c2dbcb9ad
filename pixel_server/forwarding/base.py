"""What every channel module implements, and the event view they map from.

A channel maps a batch of our events (journal rows, :class:`Event`) to exactly one documented HTTP
request (:class:`OutRequest`). Identifiers come only from what the channel's own browser tag set on the
page's domain (``channel_ids``), the click ids kept behind the marketing grant, and the user agent:
never an IP address, never hashed personal data (we hold none), never our visitor id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from pixel_server.core.settings import ForwardTarget

# The identifiers a browser tag set, as the pixel sends them after marketing consent (row key
# ``channel_ids``): ``ga_client_id`` (from ``_ga``), ``fbp`` (``_fbp``), ``fbc`` (``_fbc``),
# ``scid`` (``_scid``), ``li_fat_id``. Nothing else in that map is read.
CHANNEL_ID_KEYS = ("ga_client_id", "fbp", "fbc", "scid", "li_fat_id")
JOB_KEYS = ("title", "category", "location", "employer")


class Unmappable(ValueError):
    """The event lacks what the channel requires (e.g. no client id): final, no request is made."""


@dataclass(frozen=True)
class Event:
    """The parts of one journal ``events`` row that forwarding reads."""

    event_id: str
    site: str
    name: str
    ts: float  # server time, unix seconds (fixed when the row was journaled)
    ad_id: str = ""
    url: str = ""
    marketing: bool = False
    consent_id: str = ""
    choice_id: str = ""
    grant_issued_at: float = 0.0
    click_ids: Mapping[str, str] = field(default_factory=dict)
    channel_ids: Mapping[str, str] = field(default_factory=dict)
    user_agent: str = ""
    job: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Event:
        def text(key: str) -> str:
            value = row.get(key)
            return value if isinstance(value, str) else ""

        def number(key: str) -> float:
            value = row.get(key)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            return float(value) if ok else 0.0  # type: ignore[arg-type]

        def strings(key: str, allowed: Sequence[str] | None = None) -> dict[str, str]:
            value = row.get(key)
            if not isinstance(value, dict):  # journal rows come from JSON: a dict or nothing (and fast)
                return {}
            return {
                str(k): v
                for k, v in value.items()
                if isinstance(v, str) and v and (allowed is None or k in allowed)
            }

        job = strings("job", JOB_KEYS)
        return cls(
            event_id=text("event_id"),
            site=text("site_id"),
            name=text("name"),
            ts=number("ts"),
            ad_id=text("ad_id"),
            url=text("url"),
            marketing=row.get("marketing") in (1, True),
            consent_id=text("consent_id"),
            choice_id=text("choice_id"),
            grant_issued_at=number("grant_issued_at"),
            click_ids=strings("click_ids"),
            channel_ids=strings("channel_ids", CHANNEL_ID_KEYS),
            user_agent=text("user_agent"),
            job=job,
        )


@dataclass(frozen=True)
class OutRequest:
    method: str
    url: str  # absolute, query included
    headers: Mapping[str, str]
    content: bytes


@dataclass(frozen=True)
class Options:
    """The global forwarding settings a channel's mapping needs."""

    debug: bool = False
    meta_api_version: str = "v22.0"
    linkedin_version: str = "202510"


class Channel:
    """One ad channel's server side. Subclasses set the class attributes and implement :meth:`build`."""

    name: ClassVar[str]
    # our event name -> the channel's event name; events not listed are not forwarded
    events: ClassVar[Mapping[str, str]]
    max_age_s: ClassVar[float]
    batch_limit: ClassVar[int]
    server_side: ClassVar[bool] = True

    def batch_key(self, event: Event) -> str:
        """Events with equal keys may share one request (same site; GA4: same client id)."""
        return event.site

    def check(self, event: Event, target: ForwardTarget) -> None:
        """Raise :class:`Unmappable` when the event lacks what this channel requires."""

    def build(self, events: Sequence[Event], target: ForwardTarget, options: Options) -> OutRequest:
        raise NotImplementedError

    def results(self, status: int, body: bytes, n: int) -> list[str | None]:
        """Per-event errors in a 2xx answer (``None`` = accepted). Default: all accepted."""
        return [None] * n


def with_base(url: str, base: str | None) -> str:
    """Replace the scheme and host of a documented endpoint (tests point it at 127.0.0.1)."""
    if not base:
        return url
    b, u = urlsplit(base), urlsplit(url)
    return urlunsplit((b.scheme, b.netloc, u.path, u.query, ""))


def clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit]


def job_fields(event: Event) -> dict[str, str]:
    """Job parameters: the ad id plus the ad's metadata when the event carries it."""
    out = {"id": event.ad_id} if event.ad_id else {}
    out.update({k: event.job[k] for k in JOB_KEYS if event.job.get(k)})
    return out


# application/x-www-form-urlencoded as urllib.parse.urlencode writes it (quote_plus: letters, digits and
# "_.-~" stay, a space is "+", every other byte is %XX), through a table: a Meta batch of 1,000 events is
# about 500 KB of JSON, which quote_plus walks one Python call per byte.
_FORM = [
    chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "_.-~") else f"%{b:02X}" for b in range(256)
]
_FORM[ord(" ")] = "+"


def form_encode(fields: Mapping[str, str]) -> bytes:
    """``urlencode(fields).encode()``, faster for long values."""
    return "&".join(
        "".join(map(_FORM.__getitem__, k.encode())) + "=" + "".join(map(_FORM.__getitem__, v.encode()))
        for k, v in fields.items()
    ).encode("ascii")
