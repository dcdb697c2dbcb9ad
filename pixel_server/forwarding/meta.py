"""Meta Conversions API (CHANNELS.md §2).

``POST https://graph.facebook.com/{API_VERSION}/{PIXEL_ID}/events?access_token=…`` [M1]. The documented
request sends form fields, ``data`` being a JSON-encoded array of server events [M1][M7]; a raw
``application/json`` body is UNCONFIRMED, so we send exactly the documented form.

- ``event_time`` in unix seconds, never older than 7 days: "one older event fails the whole request"
  [M2]. The outbox drops an event past :attr:`Meta.max_age_s` (less a safety margin) before batching.
- ``event_id`` = our event id: Meta dedups it against the pixel's ``eventID`` for the same
  ``event_name`` within 48 h [M3][M4].
- Website events need ``action_source: website``, ``event_source_url`` and
  ``user_data.client_user_agent`` [M11]; an event without the user agent is not sent (final).
- ``user_data``: ``fbp`` from ``_fbp``, ``fbc`` from ``_fbc`` or, absent that, built from the kept
  ``fbclid`` as ``fb.1.<event time ms>.<fbclid>`` [M14] (format from a third party [M15]: UNCONFIRMED);
  never hashed data, never an IP address.
- ``apply_complete`` → ``SubmitApplication``: seen in the standard-event list, but its official row is
  UNCONFIRMED [M21][M22]; if it is not a standard event Meta takes it as a custom event of the same name,
  so the request is valid either way. ``apply_click`` → custom ``ApplyClick``; a page view of a job ad →
  ``ViewContent``.
- ``custom_data``: ``content_ids`` / ``content_name`` / ``content_category`` only; arbitrary custom keys
  (location, employer) have an UNCONFIRMED wire format [M12], so they are left out.
- No GDPR consent field exists (``data_processing_options`` is US Limited Data Use only [M6]): the
  server sends only under our own marketing grant, checked at delivery time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import orjson

from pixel_server.core.settings import ForwardTarget
from pixel_server.forwarding.base import (
    Channel,
    Event,
    Options,
    OutRequest,
    Unmappable,
    clip,
    form_encode,
    job_fields,
)

ENDPOINT = "https://graph.facebook.com"


class Meta(Channel):
    name = "meta"
    events = {"pageview": "ViewContent", "apply_click": "ApplyClick", "apply_complete": "SubmitApplication"}
    max_age_s = 7 * 86400.0
    batch_limit = 1000  # [M1 mirror]

    def check(self, event: Event, target: ForwardTarget) -> None:
        if not event.user_agent:
            raise Unmappable(
                "no user agent with the event: Meta requires client_user_agent for website events"
            )
        if not event.url:
            raise Unmappable("no page URL with the event: Meta requires event_source_url for website events")

    def build(self, events: Sequence[Event], target: ForwardTarget, options: Options) -> OutRequest:
        data = orjson.dumps([self._event(e) for e in events]).decode()
        url = f"{ENDPOINT}/{options.meta_api_version}/{target.tag['id']}/events?" + urlencode(
            {"access_token": target.secret}
        )
        return OutRequest(
            "POST",
            url,
            {"Content-Type": "application/x-www-form-urlencoded"},
            form_encode({"data": data}),
        )

    def _event(self, e: Event) -> dict[str, Any]:
        user_data: dict[str, str] = {"client_user_agent": e.user_agent}
        if fbp := e.channel_ids.get("fbp"):
            user_data["fbp"] = fbp
        if fbc := e.channel_ids.get("fbc"):
            user_data["fbc"] = fbc
        elif fbclid := e.click_ids.get("fbclid"):
            user_data["fbc"] = f"fb.1.{int(e.ts * 1000)}.{fbclid}"
        out: dict[str, Any] = {
            "event_name": self.events[e.name],
            "event_time": int(e.ts),
            "event_id": e.event_id,
            "action_source": "website",
            "event_source_url": e.url,
            "user_data": user_data,
        }
        job = job_fields(e)
        custom: dict[str, Any] = {}
        if "id" in job:
            custom["content_ids"] = [job["id"]]
        if "title" in job:
            custom["content_name"] = clip(job["title"], 200)
        if "category" in job:
            custom["content_category"] = clip(job["category"], 100)
        if custom:
            out["custom_data"] = custom
        return out
