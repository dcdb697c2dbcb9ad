"""The forwarding block of ``create_app``: the outbox as the journal's ``"outbox"`` consumer.

:func:`journal_consumers` names the consumers the journal keeps segments for: ``"outbox"`` only while
some site forwards server-side (a ``secret_env`` set and present), or the journal would keep every
segment for a consumer that never runs. :class:`Forwarder` starts the outbox in the lifespan, stops it
cleanly, and reports its depth for ``/readyz``. Revocations are the server's own index
(``State.revocations``); the delivery log goes through the journal and the loader into ClickHouse.
"""

from __future__ import annotations

import logging
from typing import Any

from pixel_server.core.settings import Settings
from pixel_server.core.state import State
from pixel_server.forwarding.ads import StoreAds
from pixel_server.forwarding.child import ChildForwarder
from pixel_server.forwarding.deliverylog import JournalDeliveryLog
from pixel_server.forwarding.metrics import ForwardMetrics
from pixel_server.forwarding.outbox import CONSUMER, Outbox

log = logging.getLogger("jobpixel.forwarding")


def journal_consumers(settings: Settings, base: tuple[str, ...]) -> tuple[str, ...]:
    return (*base, CONSUMER) if settings.forwarding.enabled else base


class Forwarder:
    """The outbox in the app: built in ``create_app``, run by its lifespan."""

    def __init__(self, state: State) -> None:
        settings = state.settings
        self.metrics = ForwardMetrics(state.metrics.registry)
        self.outbox = Outbox(
            settings,
            state.journal.cursor(CONSUMER),
            state.revocations,
            JournalDeliveryLog(state.journal),
            metrics=self.metrics,
            ads=StoreAds(state),
        )

    async def start(self) -> None:
        await self.outbox.start()
        targets = self.outbox.fwd.targets
        log.info(
            "forwarding on: %s",
            "; ".join(f"{site}: {', '.join(sorted(t))}" for site, t in sorted(targets.items()) if t),
        )

    async def stop(self) -> None:
        await self.outbox.stop()

    def status(self) -> dict[str, Any]:
        return self.outbox.status()


def forwarder(state: State) -> Forwarder | ChildForwarder | None:
    """None unless a site forwards; the outbox in a child process unless ``forwarding.process = false``."""
    fwd = state.settings.forwarding
    if not fwd.enabled:
        return None
    return ChildForwarder(state) if fwd.process else Forwarder(state)
