"""Bid Theatre: browser-side only (CHANNELS.md §5).

Bid Theatre documents no JSON server-to-server event API: its conversion tracker "can also be done in a
server to server context", but the prerequisites and URL are UNCONFIRMED [B1], and its server-side data
path is file upload (S3/SFTP) of cookie-group key/values [B4]. So nothing is forwarded by the server:
the banner starts its conversion tracker on the thanks page and its segment / cookie-group tags after
marketing consent. Registering it here lets the settings refuse a ``secret_env`` for it by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar

from pixel_server.core.settings import ForwardTarget
from pixel_server.forwarding.base import Channel, Event, Options, OutRequest


class BidTheatre(Channel):
    name = "bidtheatre"
    events: ClassVar[Mapping[str, str]] = MappingProxyType({})
    max_age_s = 0.0
    batch_limit = 0
    server_side = False

    def build(self, events: Sequence[Event], target: ForwardTarget, options: Options) -> OutRequest:
        raise NotImplementedError("Bid Theatre documents no server API: it is browser-side only")
