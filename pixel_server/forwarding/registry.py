"""The channels by name, as import strings (the way uvicorn registers its implementations)."""

from __future__ import annotations

import importlib
from functools import cache

from pixel_server.forwarding.base import Channel

CHANNELS: dict[str, str] = {
    "ga4": "pixel_server.forwarding.ga4:GA4",
    "meta": "pixel_server.forwarding.meta:Meta",
    "linkedin": "pixel_server.forwarding.linkedin:LinkedIn",
    "snapchat": "pixel_server.forwarding.snapchat:Snapchat",
    "bidtheatre": "pixel_server.forwarding.bidtheatre:BidTheatre",
}


@cache
def load(name: str) -> Channel:
    module_name, _, attr = CHANNELS[name].partition(":")
    channel: Channel = getattr(importlib.import_module(module_name), attr)()
    return channel


def server_channels() -> tuple[str, ...]:
    """The channels with a server API (the others stay browser-side)."""
    return tuple(n for n in CHANNELS if load(n).server_side)
