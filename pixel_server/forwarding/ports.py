"""What the outbox needs from the journal and the grant, as CONTRACTS.md states them.

The outbox is written against these protocols; ``Journal.cursor("outbox")`` (branch journal) and
``State.revocations`` (branch grant) satisfy them once merged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar


class JournalSegment(Protocol):
    seq: int

    def read(self) -> tuple[dict[str, bytes], int]:
        """JSONEachRow bytes per table, and the number of torn lines cut."""
        ...


S = TypeVar("S", bound=JournalSegment)


class JournalCursor(Protocol[S]):
    def pending(self) -> list[S]:
        """Sealed segments this consumer has not committed, oldest first."""
        ...

    def commit(self, segment: S) -> None:
        """Durable; a segment every consumer committed is deleted."""
        ...


class JournalWithCursors(Protocol):
    def cursor(self, consumer: str) -> JournalCursor[Any]: ...

    async def append(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None: ...


class RevocationCheck(Protocol):
    def is_revoked(self, grant: Any) -> bool:
        """True when a withdraw/reject_all/expired for ``grant.consent_id`` was logged after
        ``grant.issued_at``."""
        ...


@dataclass(frozen=True)
class GrantRef:
    """The grant an event came with, rebuilt from the row (``consent_id``, ``choice_id``,
    ``grant_issued_at``, ``marketing``): enough for ``Revocations.is_revoked``."""

    consent_id: str
    choice_id: str
    site: str
    issued_at: float
    categories: frozenset[str] = frozenset({"marketing"})
