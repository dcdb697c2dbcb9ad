"""The privacy floor (issue #9), applied once, here, for every report the server gives out.

A row counted over fewer than ``k`` distinct visitors never shows its numbers. Such rows are folded
into one ``(other)`` row, shown only when the fold itself reaches ``k``. When exactly one row would be
folded, the next smallest is folded too (complementary suppression: otherwise the total minus the
visible rows would give the hidden one away). A total under ``k`` shows every metric as ``null``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

OTHER = "(other)"


@dataclass(frozen=True)
class Cell:
    """One aggregated row: its dimension values, its distinct-visitor count ``k`` and raw aggregates."""

    key: tuple[str, ...]
    k: int
    values: dict[str, Any]


def split(rows: Sequence[Cell], k: int) -> tuple[list[Cell], list[Cell]]:
    """(visible, folded)."""
    small = [r for r in rows if r.k < k]
    big = sorted((r for r in rows if r.k >= k), key=lambda r: (r.k, r.key))
    if len(small) == 1 and big:
        small.append(big.pop(0))
    return big, small


def shown(cell: Cell | None, k: int) -> bool:
    return cell is not None and cell.k >= k
