"""The forwarding block of ``create_app``: the outbox as the journal's ``"outbox"`` consumer.

:func:`journal_consumers` names the consumers the journal keeps segments for: ``"outbox"`` only while
some site forwards server-side (a ``secret_env`` set and present), or the journal would keep every
segment for a consumer that never runs. :class:`Forwarder` starts the outbox in the lifespan, stops it
cleanly, and reports its depth for ``/readyz``. Revocations are the server's own index
(``State.revocations``); the delivery log goes through the journal and the loader into ClickHouse.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from pixel_server.core.settings import Settings
from pixel_server.core.state import State
from pixel_server.core.store import StoreError
from pixel_server.forwarding.child import ChildForwarder
from pixel_server.forwarding.deliverylog import JournalDeliveryLog
from pixel_server.forwarding.metrics import ForwardMetrics
from pixel_server.forwarding.outbox import CONSUMER, Outbox

log = logging.getLogger("jobpixel.forwarding")

ADS_SQL = """
SELECT site_id, ad_id, tupleElement(max(latest), 'title') AS title,
       tupleElement(max(latest), 'category') AS category,
       tupleElement(max(latest), 'location') AS location,
       tupleElement(max(latest), 'employer') AS employer
FROM ${db}.ads WHERE (site_id, ad_id) IN {keys:Array(Tuple(String, String))}
GROUP BY site_id, ad_id
"""
MAX_KEYS = 1000


def journal_consumers(settings: Settings, base: tuple[str, ...]) -> tuple[str, ...]:
    return (*base, CONSUMER) if settings.forwarding.enabled else base


class StoreAds:
    """The ad's job metadata from the ``ads`` table (apply events carry none), when the store answers.
    Called off the loop (the outbox runs it in a thread); a miss is remembered for a minute."""

    MISS_S = 60.0

    def __init__(self, state: State) -> None:
        self.state = state
        self._misses: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def __call__(self, site: str, ad: str) -> Mapping[str, Any]:
        return self.many([(site, ad)]).get((site, ad), {})

    def many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Mapping[str, Any]]:
        now = time.monotonic()
        with self._lock:
            ask = [k for k in keys if now - self._misses.get(k, -self.MISS_S) >= self.MISS_S][:MAX_KEYS]
        store = self.state.store
        if not ask or store is None:
            return {}
        try:
            rows = store.query(ADS_SQL, {"keys": _tuples(ask)})
        except StoreError as exc:
            log.debug("ads lookup failed: %s", exc)
            return {}
        found: dict[tuple[str, str], Mapping[str, Any]] = {
            (str(r["site_id"]), str(r["ad_id"])): r for r in rows
        }
        with self._lock:
            if len(self._misses) > 10_000:
                self._misses.clear()
            for k in ask:
                if k not in found:
                    self._misses[k] = now
        return found


def _tuples(keys: Iterable[tuple[str, str]]) -> str:
    """An Array(Tuple(String, String)) query parameter in ClickHouse's text form, quotes escaped."""

    def q(v: str) -> str:
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return "[" + ",".join(f"({q(s)},{q(a)})" for s, a in keys) + "]"


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
