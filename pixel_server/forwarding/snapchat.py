"""Snapchat Conversions API v3 (CHANNELS.md §4).

``POST https://tr.snapchat.com/v3/{PIXEL_ID}/events?access_token=…`` with a JSON body
``{"data": [server events]}`` [S1][S4]; answers ``{"status": "VALID"|"INVALID", …}`` [S4].

- ``event_time`` in unix seconds, at most 37 days back [S2]; ``event_id`` = our event id, deduplicated
  against the pixel's ``client_dedup_id`` [S5].
- ``apply_complete`` → ``SIGN_UP``, a job-ad page view → ``VIEW_CONTENT``. ``apply_click`` is not
  forwarded: custom event names (``CUSTOM_EVENT_1…5``) are only in a third-party schema [S9]
  (UNCONFIRMED).
- ``user_data``: ``client_user_agent``, ``sc_cookie1`` (``_scid``), ``sc_click_id`` (``ScCid``), sent
  raw (the docs mandate no hash for them [S4]); never an IP address. Web events need at least one of
  ``em``, ``ph``, IP + user agent, … [S1]: whether user agent + ``_scid``/``ScCid`` suffice is
  UNCONFIRMED; we require the user agent and one of the two, else the event is not sent (final).
- ``custom_data``: ``content_ids``, ``content_category``, ``custom_fields`` (title, location,
  employer) as in Snap's own v3 schema [S4].
- Batch size: 2,000 is stated only by a third party [S9] (UNCONFIRMED): we send at most 100.
- ``data_processing_options`` is US limited data use [S1] and is not sent; no EU consent field is
  documented: our marketing grant gates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import orjson

from pixel_server.core.settings import ForwardTarget
from pixel_server.forwarding.base import Channel, Event, Options, OutRequest, Unmappable, clip, job_fields

ENDPOINT = "https://tr.snapchat.com"


class Snapchat(Channel):
    name = "snapchat"
    events = {"pageview": "VIEW_CONTENT", "apply_complete": "SIGN_UP"}
    max_age_s = 37 * 86400.0
    batch_limit = 100

    def check(self, event: Event, target: ForwardTarget) -> None:
        if not event.user_agent:
            raise Unmappable("no user agent with the event: Snap needs client_user_agent")
        if not (event.channel_ids.get("scid") or _click_id(event)):
            raise Unmappable("no _scid or ScCid with the event: Snap cannot match it")
        if not event.url:
            raise Unmappable("no page URL with the event: Snap requires event_source_url for web events")

    def build(self, events: Sequence[Event], target: ForwardTarget, options: Options) -> OutRequest:
        url = f"{ENDPOINT}/v3/{target.tag['id']}/events?" + urlencode({"access_token": target.secret})
        body = {"data": [self._event(e) for e in events]}
        return OutRequest("POST", url, {"Content-Type": "application/json"}, orjson.dumps(body))

    def _event(self, e: Event) -> dict[str, Any]:
        user_data = {"client_user_agent": e.user_agent}
        if scid := e.channel_ids.get("scid"):
            user_data["sc_cookie1"] = scid
        if click := _click_id(e):
            user_data["sc_click_id"] = click
        out: dict[str, Any] = {
            "event_name": self.events[e.name],
            "event_time": int(e.ts),
            "event_id": e.event_id,
            "action_source": "WEB",
            "event_source_url": e.url,
            "user_data": user_data,
        }
        job = job_fields(e)
        custom: dict[str, Any] = {}
        if "id" in job:
            custom["content_ids"] = [job["id"]]
        if "category" in job:
            custom["content_category"] = clip(job["category"], 100)
        fields = {f"job_{k}": clip(job[k], 200) for k in ("title", "location", "employer") if k in job}
        if fields:
            custom["custom_fields"] = fields
        if custom:
            out["custom_data"] = custom
        return out

    def results(self, status: int, body: bytes, n: int) -> list[str | None]:
        try:
            answer = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            answer = {}
        if isinstance(answer, dict) and answer.get("status") == "INVALID":
            return [clip(orjson.dumps(answer).decode(), 1000)] * n
        return [None] * n


def _click_id(e: Event) -> str:
    return e.click_ids.get("ScCid", "") or e.click_ids.get("sccid", "")
