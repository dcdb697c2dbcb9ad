"""An ad's job metadata for the outbox, from the ``ads`` table (apply events carry none): what
``Outbox._fetch_ads`` asks for the ads it has not seen in the journal since start. The server answers it,
for the outbox in the server (``wiring.Forwarder``) and for the delivery process (``child.py``) alike."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from pixel_server.core.state import State
from pixel_server.core.store import StoreError

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
