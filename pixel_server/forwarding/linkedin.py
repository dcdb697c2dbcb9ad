"""LinkedIn Conversions API (CHANNELS.md §3).

``POST https://api.linkedin.com/rest/conversionEvents`` with ``Authorization: Bearer <token>``,
``LinkedIn-Version: YYYYMM``, ``X-Restli-Protocol-Version: 2.0.0`` [L1][L2][L3]; one event as the body,
or several as ``{"elements": […]}`` with ``X-RestLi-Method: BATCH_CREATE``, answered per element
(``{"elements": [{"status": 201}, …]}``) [L2][L9].

- Only ``apply_complete`` is forwarded: every event counts toward the one conversion rule configured
  (``conversion_rule``, e.g. a ``SUBMIT_APPLICATION`` rule); page views and clicks have no rule here.
- ``conversionHappenedAt`` in epoch milliseconds; ``eventId`` = our event id, which LinkedIn dedups
  against the Insight Tag's ``event_id`` [L5].
- ``user.userIds``: only ``LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID`` = the ``li_fat_id`` the tag or the
  click URL gave [L11]; an event without one identifies nobody and is not sent (final). No hashed e-mail:
  we hold none.
- No custom job parameters exist per event [L2]; "similar positions" audiences on LinkedIn are built
  from Insight Tag URL rules (README).
- Max age 90 days [L4][L6]. The batch limit of 5,000 is from third parties [L4][L14] (UNCONFIRMED): we
  send at most 500. Consent fields: none documented (UNCONFIRMED) — only our marketing grant gates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from pixel_server.core.settings import ForwardTarget
from pixel_server.forwarding.base import Channel, Event, Options, OutRequest, Unmappable, clip

ENDPOINT = "https://api.linkedin.com"


class LinkedIn(Channel):
    name = "linkedin"
    events = {"apply_complete": "SUBMIT_APPLICATION"}  # the type of the configured conversion rule
    max_age_s = 90 * 86400.0
    batch_limit = 500

    def check(self, event: Event, target: ForwardTarget) -> None:
        if not (event.channel_ids.get("li_fat_id") or event.click_ids.get("li_fat_id")):
            raise Unmappable("no li_fat_id with the event: LinkedIn cannot match it to a member")

    def build(self, events: Sequence[Event], target: ForwardTarget, options: Options) -> OutRequest:
        headers = {
            "Authorization": f"Bearer {target.secret}",
            "LinkedIn-Version": options.linkedin_version,
            "X-Restli-Protocol-Version": "2.0.0",
            "Content-Type": "application/json",
        }
        elements = [self._element(e, target) for e in events]
        if len(elements) == 1:
            body: Any = elements[0]
        else:
            headers["X-RestLi-Method"] = "BATCH_CREATE"
            body = {"elements": elements}
        return OutRequest("POST", f"{ENDPOINT}/rest/conversionEvents", headers, orjson.dumps(body))

    def _element(self, e: Event, target: ForwardTarget) -> dict[str, Any]:
        li_fat_id = e.channel_ids.get("li_fat_id") or e.click_ids["li_fat_id"]
        return {
            "conversion": f"urn:lla:llaPartnerConversion:{target.conversion_rule}",
            "conversionHappenedAt": int(e.ts * 1000),
            "user": {"userIds": [{"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": li_fat_id}]},
            "eventId": e.event_id,
        }

    def results(self, status: int, body: bytes, n: int) -> list[str | None]:
        if n == 1:
            return [None]
        try:
            elements = orjson.loads(body).get("elements")
        except (orjson.JSONDecodeError, AttributeError):
            elements = None
        if not isinstance(elements, list) or len(elements) != n:
            return [None] * n  # a 2xx without per-element detail: accepted as a whole
        out: list[str | None] = []
        for el in elements:
            st = el.get("status") if isinstance(el, dict) else None
            ok = isinstance(st, int) and 200 <= st < 300
            out.append(None if ok else clip(f"element status {st}: {orjson.dumps(el).decode()}", 1000))
        return out
