"""The delivery log: one ClickHouse row per delivery decided (table ``delivery_log``, 0004).

It answers "which consent allowed this event to reach Meta?": every row names the consent id and the
choice id of the grant the event came with. ``jobpixel deliveries --event ID`` prints an event's rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from pixel_server.core.store import Store

Status = Literal["sent", "failed_final", "too_old", "withdrawn"]
STATUSES: tuple[Status, ...] = ("sent", "failed_final", "too_old", "withdrawn")
TABLE = "delivery_log"


class DeliveryLog(Protocol):
    async def write(self, rows: Sequence[Mapping[str, Any]]) -> None: ...


class JournalAppender(Protocol):
    async def append(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None: ...


class JournalDeliveryLog:
    """Production: the rows go through the journal (durable at once) and the loader inserts them."""

    def __init__(self, journal: JournalAppender) -> None:
        self.journal = journal

    async def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await self.journal.append(TABLE, rows)


class StoreDeliveryLog:
    """Straight into the store (tests, and a deployment without the journal consumer wiring)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await asyncio.to_thread(self.store.insert, TABLE, rows)


COLUMNS = (
    "channel",
    "site_id",
    "event_id",
    "event_name",
    "consent_id",
    "choice_id",
    "status",
    "attempts",
    "first_attempt",
    "last_attempt",
    "event_ts",
    "ts",
    "http_status",
    "message",
)


def deliveries(store: Store, event_id: str) -> list[dict[str, Any]]:
    """The delivery-log rows for one event, by channel. Raises ValueError for a malformed id."""
    uuid.UUID(event_id)
    return store.query(
        f"SELECT {', '.join(COLUMNS)} FROM ${{db}}.{TABLE} FINAL "
        "WHERE event_id = {event_id:UUID} ORDER BY channel, site_id",
        {"event_id": event_id},
    )
