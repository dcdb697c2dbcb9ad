"""In-memory token buckets: the abuse limits of the visitor endpoints (issue #7 §4).

One :class:`Buckets` per key kind (client IP, grant). A key's bucket holds at most ``burst``
tokens and refills at ``rate`` per second; a request that finds less than one token is refused
with the seconds until one is there (``Retry-After``). Nothing is stored on disk or logged: the
keys (IP addresses, consent ids) live only in this dict, and memory is bounded by ``max_keys``:
when it is reached, buckets idle long enough to be full again are forgotten first (forgetting
them changes nothing), then the oldest-created ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Buckets:
    """Token buckets by key. ``rate <= 0`` turns the limit off (every ``take`` passes)."""

    __slots__ = ("rate", "burst", "max_keys", "clock", "_b", "_full_after")

    def __init__(
        self,
        rate: float,
        burst: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self.max_keys = max(1, max_keys)
        self.clock = clock
        self._b: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._full_after = self.burst / rate if rate > 0 else 0.0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._b)

    def take(self, key: str, n: int = 1) -> float:
        """Take ``n`` tokens: 0.0 when allowed, else the seconds until ``n`` tokens are there
        (nothing is taken then). More than ``burst`` at once is never allowed."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        found = self._b.get(key)
        if found is None:
            if len(self._b) >= self.max_keys:
                self._evict(now)
            tokens = self.burst
        else:
            tokens = min(self.burst, found[0] + (now - found[1]) * self.rate)
        if tokens >= n:
            self._b[key] = (tokens - n, now)
            return 0.0
        self._b[key] = (tokens, now)
        return (min(n, self.burst) - tokens) / self.rate

    def _evict(self, now: float) -> None:
        idle = [k for k, (_, at) in self._b.items() if now - at >= self._full_after]
        for k in idle:
            del self._b[k]
        excess = len(self._b) - int(self.max_keys * 0.9)
        if excess > 0:  # all busy: drop the oldest-created tenth (dicts keep insertion order)
            for k in list(self._b)[:excess]:
                del self._b[k]


def retry_after(seconds: float) -> str:
    """``Retry-After`` in whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
