"""What the routes share: built once in ``create_app`` and kept on ``app.state.jp``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pixel_server.core.grant import Grants
from pixel_server.core.journal import Journal
from pixel_server.core.metrics import Metrics
from pixel_server.core.ratelimit import Buckets
from pixel_server.core.settings import Settings
from pixel_server.core.store import Loader, Store

if TYPE_CHECKING:  # core imports no higher floor at run time; create_app builds these
    from pixel_server.consent.log import Choices
    from pixel_server.consent.revocation import Revocations


class RunningOutbox(Protocol):
    """What the routes may reach of the forwarding block ``create_app`` started (``forwarding/wiring.py``
    ``Forwarder``): its outbox, whose queue an erasure purges. A protocol, so core names no higher floor."""

    outbox: Any


@dataclass
class State:
    settings: Settings
    grants: Grants
    revocations: Revocations
    choices: Choices
    metrics: Metrics
    journal: Journal
    store: Store | None = None
    loader: Loader | None = None
    # door: events and choices per consent id (limits.grant_*); create_app sets it from the settings
    # forwarding: the running outbox and sender, None unless a site forwards (erasure purges its queue)
    forwarder: RunningOutbox | None = None
    grant_buckets: Buckets = field(default_factory=lambda: Buckets(0, 1))
