"""Google Analytics 4, Measurement Protocol (CHANNELS.md §1).

``POST https://region1.google-analytics.com/mp/collect?measurement_id=G-…&api_secret=…`` with a JSON body
``{client_id, timestamp_micros, consent, events: [{name, params}]}``: the EU endpoint by default [G1];
at most 25 events per request [G1]; ``timestamp_micros`` backdated at most 72 h [G1][G2][G3].

- Event names are custom (``job_view``, ``apply_click``, ``apply_complete``): whether the reserved
  ``page_view`` may be sent through the Measurement Protocol is UNCONFIRMED [G6], so we never send it.
- ``client_id`` must be the id the site's Google tag made; we take it only from the ``_ga`` cookie the
  tag set (``channel_ids.ga_client_id``, the ``XXXXXXXXXX.YYYYYYYYYY`` part). Parsing ``_ga`` is
  UNCONFIRMED (the docs say ``gtag('get', …)``): the pixel must send exactly what gtag reports; an
  event without it is not sent (final, no request).
- ``consent``: ``ad_user_data`` and ``ad_personalization`` GRANTED — these events are forwarded only
  under a marketing grant. The enum values come from a third-party schema [G12] (UNCONFIRMED).
- GA4 answers 2xx even for a malformed payload [G1]: with ``forwarding.debug`` the request goes to
  ``/debug/mp/collect`` and every ``validationMessages`` entry makes the event a final failure [G8].
- No dedup key exists between gtag and the Measurement Protocol [G9]; the browser and server sides
  must not both send the same event to GA4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import orjson

from pixel_server.core.settings import ForwardTarget
from pixel_server.forwarding.base import Channel, Event, Options, OutRequest, Unmappable, clip, job_fields

ENDPOINT = "https://region1.google-analytics.com"
PARAM_MAX = 100  # characters per parameter value [G5]


class GA4(Channel):
    name = "ga4"
    events = {"pageview": "job_view", "apply_click": "apply_click", "apply_complete": "apply_complete"}
    max_age_s = 72 * 3600.0
    batch_limit = 25

    def batch_key(self, event: Event) -> str:
        # client_id and timestamp_micros are request-level [G1] (an event-level time is not in what was
        # read: UNCONFIRMED): one request holds one client's events of one and the same instant.
        return f"{event.site}\x00{event.channel_ids.get('ga_client_id', '')}\x00{int(event.ts * 1000)}"

    def check(self, event: Event, target: ForwardTarget) -> None:
        if not event.channel_ids.get("ga_client_id"):
            raise Unmappable("no GA client id (_ga) with the event: GA4 needs the Google tag's client_id")

    def build(self, events: Sequence[Event], target: ForwardTarget, options: Options) -> OutRequest:
        first = events[0]
        body: dict[str, Any] = {
            "client_id": first.channel_ids["ga_client_id"],
            "timestamp_micros": int(first.ts * 1_000_000),  # all events of a batch share it (batch_key)
            "consent": {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"},
            "events": [self._event(e) for e in events],
        }
        if options.debug:
            body["validation_behavior"] = "ENFORCE_RECOMMENDATIONS"
        path = "/debug/mp/collect" if options.debug else "/mp/collect"
        query = urlencode({"measurement_id": target.tag["id"], "api_secret": target.secret})
        return OutRequest(
            "POST",
            f"{ENDPOINT}{path}?{query}",
            {"Content-Type": "application/json"},
            orjson.dumps(body),
        )

    def _event(self, e: Event) -> dict[str, Any]:
        params: dict[str, Any] = {f"job_{k}": clip(v, PARAM_MAX) for k, v in job_fields(e).items()}
        params["event_id"] = e.event_id  # no GA4 dedup key exists [G9]; kept to trace the delivery
        return {"name": self.events[e.name], "params": params}

    def results(self, status: int, body: bytes, n: int) -> list[str | None]:
        try:
            messages = orjson.loads(body).get("validationMessages") if body else None
        except (orjson.JSONDecodeError, AttributeError):
            messages = None
        if not messages:
            return [None] * n
        text = "; ".join(str(m.get("description", m)) if isinstance(m, dict) else str(m) for m in messages)
        return [clip(text, 1000)] * n
