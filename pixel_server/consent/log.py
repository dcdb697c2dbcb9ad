"""The consent log as append-only proof (GDPR art. 7(1)): what a choice row holds, and its retries.

A choice is logged once. Its ``choice_id`` is made by the client, so a retry
(the answer was lost) carries the same id and the same body: that is the same
row, not a second one. The same ``choice_id`` with another body is refused (409)
and never replaces the first: the log is evidence, and evidence is not edited.

:class:`Choices` answers "was this choice id logged, and with which body?" from
three places, newest first: an in-memory index of the choices written by this
process and of those found in the journal at start (not yet in ClickHouse),
then the consent log itself. Every row carries a fresh ``row_id``; the table's
key ends with it, so a segment the loader replays collapses into its rows while
two different writes can never replace each other (migration 0002).

Rows record server facts only: server time, the visitor as an HMAC of the
grant's visitor id (``JOBPIXEL_HASH_KEY``; an access or erasure request finds
the rows again, the log never holds the raw id), the user-agent family. No IP.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from pixel_server.consent.revocation import row_time
from pixel_server.core.journal import Journal
from pixel_server.core.store import Store

INDEX_SIZE = 200_000
# What the client chose: the body less the grant it sent (which may change between retries).
BODY_FIELDS = (
    "site",
    "consent_id",
    "choice_id",
    "action",
    "granted",
    "denied",
    "revision",
    "lang",
    "gpc",
    "layer",
)

LOOKUP_SQL = """
SELECT body_hash, toUnixTimestamp64Milli(ts) AS ms
FROM ${db}.consent_log
WHERE site_id = {site:String} AND consent_id = {cid:UUID} AND choice_id = {choice:UUID}
ORDER BY ts
LIMIT 1
"""


@dataclass(frozen=True)
class Logged:
    body_hash: str
    ts: float  # unix seconds: the server time of the first row
    visitor_id: uuid.UUID | None = None  # known when this process wrote it


def body_hash(choice: Mapping[str, Any]) -> str:
    doc = {k: choice[k] for k in BODY_FIELDS}
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def visitor_hash(key: str, visitor_id: uuid.UUID) -> str:
    """HMAC-SHA256 of the visitor id: the consent log's way to find a visitor's rows again."""
    return hmac.new(key.encode(), visitor_id.bytes, hashlib.sha256).hexdigest()


class Choices:
    def __init__(self, size: int = INDEX_SIZE) -> None:
        self._index: dict[tuple[str, str], Logged] = {}  # (consent id, choice id) → first row
        self.size = size

    def __len__(self) -> int:
        return len(self._index)

    def remember(self, consent_id: str, choice_id: str, logged: Logged) -> None:
        key = (consent_id, choice_id)
        if key in self._index:
            return  # the first row is the proof
        if len(self._index) >= self.size:
            self._index.pop(next(iter(self._index)))  # the oldest; the consent log still has it
        self._index[key] = logged

    def get(self, consent_id: str, choice_id: str) -> Logged | None:
        return self._index.get((consent_id, choice_id))

    def load_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Consent-log rows as journaled, oldest first."""
        for row in rows:
            try:
                self.remember(
                    str(row["consent_id"]),
                    str(row["choice_id"]),
                    Logged(str(row.get("body_hash", "")), row_time(row["ts"])),
                )
            except (KeyError, TypeError, ValueError):
                continue


def lookup_store(store: Store, site_id: str, consent_id: str, choice_id: str) -> Logged | None:
    """The first row of a choice in ClickHouse (raises StoreError when it does not answer)."""
    rows = store.query(LOOKUP_SQL, {"site": site_id, "cid": consent_id, "choice": choice_id})
    if not rows:
        return None
    return Logged(str(rows[0]["body_hash"]), int(rows[0]["ms"]) / 1000)


def journal_rows(journal: Journal, loader: str) -> list[dict[str, Any]]:
    """The consent rows the ``loader`` consumer has not loaded into ClickHouse yet, oldest first.

    Read at start, before the loader takes them: a choice or a withdrawal acknowledged
    just before a crash is known at once, whether or not the store answers."""
    out: list[dict[str, Any]] = []
    for segment in journal.cursor(loader).pending():
        try:
            tables, _ = segment.read()
        except OSError:
            continue  # the loader takes it; it reports what it cannot read
        for line in tables.get("consent_log", b"").splitlines():
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(row, dict):
                out.append(row)
    return out
