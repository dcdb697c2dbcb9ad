"""Revocation: a choice that takes something back ends every grant issued before it, at once.

A grant is a signed token the page holds for up to the consent's lifetime; what
ends it early lives here. A ``withdraw``, ``reject_all`` or ``expired`` choice,
and any choice that leaves statistics or marketing ungranted, is a *revocation
point* for its consent id: every grant of that consent id issued before it is
no consent any more (the choice's own new grant, if any, is issued at the same
instant and is not before it).

The index holds, per consent id, the time of its latest revocation point. It is
filled at start from the consent log in ClickHouse (the window of the longest
consent lifetime: an older grant has expired anyway) and from the consent rows
still in the journal (written just before a crash, not yet loaded), and updated
on every write on this node. On the ``clickhouse`` backend, where several nodes
share the log, each node reloads the recent revocation points every
:data:`POLL_S` seconds, so a withdrawal made on another node holds here within
``POLL_S`` + the loader's flush interval (about 3 s with the defaults).

Until the history is loaded (the store was away at start) a grant issued before
this process started cannot be judged: the caller answers 503, never yes.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pixel_server.core.grant import Grant
from pixel_server.core.store import Store

REVOKING_ACTIONS = frozenset(("withdraw", "reject_all", "expired"))
POLL_S = 2.0
POLL_OVERLAP_S = 60.0  # rows reach ClickHouse after their ts (journal, flush): re-read a margin

# A revocation point, in SQL: the same rule as :func:`revokes`.
REVOKES_SQL = (
    "(action IN ('withdraw', 'reject_all', 'expired') "
    "OR NOT (has(granted, 'statistics') AND has(granted, 'marketing')))"
)
LOAD_SQL = f"""
SELECT toString(consent_id) AS consent_id, toUnixTimestamp64Milli(max(ts)) AS ms
FROM ${{db}}.consent_log
WHERE ts >= {{since:DateTime64(3, 'UTC')}} AND {REVOKES_SQL}
GROUP BY consent_id
"""

# rights (issue #10): an erasure deletes the consent log's rows of a consent id, and with them its
# revocation points; the erasure log keeps a keyed hash of each erased consent id instead.
ERASED_SQL = """
SELECT h, toUnixTimestamp64Milli(max(ts)) AS ms
FROM ${db}.erasure_log ARRAY JOIN consent_hashes AS h
WHERE ts >= {since:DateTime64(3, 'UTC')}
GROUP BY h
"""


def revokes(action: str, granted: Iterable[str]) -> bool:
    cats = set(granted)
    return action in REVOKING_ACTIONS or not {"statistics", "marketing"} <= cats


class Revocations:
    def __init__(self, started_at: float | None = None, hash_key: str = "") -> None:
        self._latest: dict[str, float] = {}  # consent id → time of its latest revocation point
        # rights: keyed hash of an erased consent id → when (from the erasure log, survives restarts)
        self.hash_key = hash_key.encode()
        self._erased: dict[str, float] = {}
        self._erased_max = 0.0
        # record() is read-modify-write, from the loop (choices) and a worker thread (reloads);
        # readers need no lock (one dict lookup).
        self._lock = threading.Lock()
        self.started_at = time.time() if started_at is None else started_at
        self.history_loaded = False
        self.polled_until: float | None = None

    def __len__(self) -> int:
        return len(self._latest)

    def record(self, consent_id: str, at: float) -> None:
        with self._lock:
            if at > self._latest.get(consent_id, 0.0):
                self._latest[consent_id] = at

    def latest(self, consent_id: str) -> float | None:
        return self._latest.get(consent_id)

    def is_revoked(self, grant: Grant) -> bool:
        """A revocation point for the grant's consent id logged after the grant was issued."""
        at = self._latest.get(grant.consent_id)
        if self._erased and grant.issued_at < self._erased_max:  # rare: only grants older than an erasure
            erased = self._erased.get(self.consent_hash(grant.consent_id))
            if erased is not None and (at is None or erased > at):
                at = erased
        return at is not None and grant.issued_at < at

    def consent_hash(self, consent_id: str) -> str:
        """The erasure log's keyed hash of a consent id (the consent log's ``visitor_hash`` recipe)."""
        return hmac.new(self.hash_key, uuid.UUID(consent_id).bytes, hashlib.sha256).hexdigest()

    def load_erased(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows of :data:`ERASED_SQL`: ``h`` (keyed hash of a consent id), ``ms``."""
        with self._lock:
            for row in rows:
                at = int(row["ms"]) / 1000
                h = str(row["h"])
                if at > self._erased.get(h, 0.0):
                    self._erased[h] = at
                self._erased_max = max(self._erased_max, at)

    def can_judge(self, grant: Grant) -> bool:
        """Every revocation point that could end this grant is known (on this node)."""
        return self.history_loaded or grant.issued_at >= self.started_at

    def load_rows(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Consent-log rows as journaled (JSON-ready dicts); returns the revocation points found."""
        n = 0
        for row in rows:
            try:
                if revokes(str(row["action"]), row["granted"]):
                    self.record(str(row["consent_id"]), row_time(row["ts"]))
                    n += 1
            except (KeyError, TypeError, ValueError):
                continue  # a row the loader will quarantine: it is no proof of anything
        return n

    def load_points(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows of :data:`LOAD_SQL`: ``consent_id``, ``ms``."""
        for row in rows:
            self.record(str(row["consent_id"]), int(row["ms"]) / 1000)


def load_history(revocations: Revocations, store: Store, days: int) -> None:
    """At start: every revocation point within ``days`` (the longest consent lifetime)."""
    started = time.time()
    revocations.load_points(store.query(LOAD_SQL, {"since": _ch_time(started - days * 86_400)}))
    revocations.load_erased(store.query(ERASED_SQL, {"since": _ch_time(started - days * 86_400)}))
    revocations.history_loaded = True
    revocations.polled_until = started


def reload_recent(revocations: Revocations, store: Store) -> None:
    """On a cluster, every POLL_S: the points other nodes logged since the last reload (with a margin)."""
    if revocations.polled_until is None:
        return
    started = time.time()
    since = revocations.polled_until - POLL_OVERLAP_S
    revocations.load_points(store.query(LOAD_SQL, {"since": _ch_time(since)}))
    revocations.load_erased(store.query(ERASED_SQL, {"since": _ch_time(since)}))
    revocations.polled_until = started


def _ch_time(unix: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def row_time(ts: object) -> float:
    """A consent-log ``ts`` as journaled: epoch seconds (now) or ``YYYY-MM-DD HH:MM:SS.fff`` (before)."""
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        return float(ts)
    if isinstance(ts, str):
        import datetime as dt

        return dt.datetime.fromisoformat(ts).replace(tzinfo=dt.UTC).timestamp()
    raise ValueError(f"not a time: {ts!r}")
