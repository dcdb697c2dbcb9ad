"""Retention: every table has a TTL from the configuration, and the files beside ClickHouse keep no
row longer than its table would.

| table | kept from | for (per site) |
| --- | --- | --- |
| ``events`` | ``ts`` | ``retention_days`` (default 395: 13 months) |
| ``ads`` | ``last_seen`` (the ad's newest event) | ``retention_days``: gone once no event of the ad remains |
| ``consent_log`` | ``ts`` | ``consent_log_days`` (default 1095) |
| ``delivery_log`` | ``ts`` | ``consent_log_days``: what a consent allowed, as long as its proof |
| ``erasure_log`` | ``ts`` | ``consent_log_days``: an erasure is remembered as long as the consent it ended |
| ``report_hourly``, ``report_hourly_site`` | ``hour`` | ``retention_days``: rollups of the events, as long |

The TTL is one expression per table, ``<time> + toIntervalDay(multiIf(site_id = 'a', 395, …, default))``
(site ids are validated ``[a-z0-9_-]``; a site no longer configured gets the default). At every migrate
(``jobpixel migrate``, and the server's start) :func:`apply_ttl` compares it with the live table
(``system.tables``) and runs ``ALTER TABLE … MODIFY TTL`` where they differ; ClickHouse then rewrites
the existing parts to the new TTL in the background (a mutation: on a big ``events`` table that is a
full pass, so change retention in a quiet hour). Rows past their TTL go at the next merge; ``OPTIMIZE
TABLE … FINAL`` forces it.

The journal and the quarantine: :func:`sweep` (hourly, on the loader's thread) blanks journal rows past
their table's retention in segments old enough to hold any, and drops them from the quarantine — the
same same-length blanking as an erasure (:mod:`pixel_server.rights.files`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixel_server.core.journal import Journal
from pixel_server.core.settings import Settings, Site
from pixel_server.core.store import Store, StoreError
from pixel_server.rights import files

log = logging.getLogger("jobpixel.retention")
SWEEP_EVERY_S = 3600.0


@dataclass(frozen=True)
class Rule:
    time_column: str
    setting: str  # the Site attribute holding the days
    default: int


RULES: Mapping[str, Rule] = {
    "events": Rule("ts", "retention_days", Site.retention_days),
    "ads": Rule("last_seen", "retention_days", Site.retention_days),
    "consent_log": Rule("ts", "consent_log_days", Site.consent_log_days),
    "delivery_log": Rule("ts", "consent_log_days", Site.consent_log_days),
    "erasure_log": Rule("ts", "consent_log_days", Site.consent_log_days),
    # the report rollups (0006): hash sets of the events' visitors, kept as long as the events
    "report_hourly": Rule("hour", "retention_days", Site.retention_days),
    "report_hourly_site": Rule("hour", "retention_days", Site.retention_days),
}


def days(settings: Settings, table: str, site_id: str) -> int:
    rule = RULES[table]
    site = settings.sites.get(site_id)
    return int(getattr(site, rule.setting)) if site is not None else rule.default


def ttl_expression(settings: Settings, table: str) -> str:
    rule = RULES[table]
    cases = ", ".join(
        f"site_id = '{sid}', {int(getattr(site, rule.setting))}"
        for sid, site in sorted(settings.sites.items())
    )
    return f"toDateTime({rule.time_column}) + toIntervalDay(multiIf({cases}, {rule.default}))"


_TTL_RE = re.compile(r"\bTTL (.+?)(?: SETTINGS |$)", re.DOTALL)


def live_ttl(store: Store, table: str) -> str | None:
    rows = store.query(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": store.database, "t": table},
    )
    if not rows:
        return None
    m = _TTL_RE.search(str(rows[0]["engine_full"]))
    return m.group(1).strip() if m else ""


def _same(a: str | None, b: str) -> bool:
    return a is not None and re.sub(r"\s+", "", a) == re.sub(r"\s+", "", b)


def apply_ttl(store: Store, settings: Settings) -> list[str]:
    """Make every table's live TTL the configured one (``ALTER TABLE … MODIFY TTL``); the tables changed."""
    changed = []
    cluster = settings.cluster
    for table in RULES:
        target = f"{table}_local" if cluster else table
        want = ttl_expression(settings, table)
        have = live_ttl(store, target)
        if have is None or _same(have, want):
            continue
        on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
        store.execute(f"ALTER TABLE {store.database}.{target}{on_cluster} MODIFY TTL {want}")
        changed.append(table)
    if changed:
        log.info("retention: TTL set from the configuration on %s", ", ".join(changed))
    return changed


# -- the journal and the quarantine --------------------------------------------------------------------
def row_time(table: str, row: Mapping[str, Any]) -> float | None:
    """A journaled row's time in unix seconds (rows are journaled with epoch seconds)."""
    value = row.get(RULES[table].time_column) if table in RULES else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        import datetime as dt

        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(value.replace("Z", "")).replace(tzinfo=dt.UTC).timestamp()
    return None


def expired_test(settings: Settings, now: float) -> files.RowTest:
    def test(table: str, row: Mapping[str, Any]) -> bool:
        if table not in RULES:
            return False
        at = row_time(table, row)
        return at is not None and at + days(settings, table, str(row.get("site_id", ""))) * 86_400 < now

    return test


def sweep(
    journal: Journal, quarantine_dir: Path, settings: Settings, now: float | None = None
) -> dict[str, int]:
    """Blank expired rows in old journal segments and drop them from the quarantine; rows per place."""
    now = time.time() if now is None else now
    test = expired_test(settings, now)
    shortest = min(days(settings, t, sid) for t in RULES for sid in settings.sites) * 86_400
    # A segment's rows were journaled within segment_seconds before its last write (its mtime).
    horizon = now - shortest + journal.segment_seconds + 60
    counts: dict[str, int] = {}
    old = [
        seg
        for seg in files.journal_segments(journal)
        if any(p.exists() and p.stat().st_mtime < horizon for p in seg.files.values())
    ]
    if old:
        for table, n in files.blank_segments(old, test).items():
            counts[f"journal.{table}"] = n
    for table, n in files.purge_quarantine(quarantine_dir, test).items():
        counts[f"quarantine.{table}"] = n
    return counts


async def keep(state: Any) -> None:
    """In the server: :func:`sweep` every hour, on the loader's thread (no load interleaves)."""
    settings: Settings = state.settings
    while True:
        loader = state.loader
        if loader is not None:
            try:
                counts = await loader.exclusive(
                    lambda: sweep(state.journal, settings.journal_dir / "quarantine", settings)
                )
                if counts:
                    log.info("retention: rows past their retention removed from the files: %s", counts)
            except (OSError, StoreError) as exc:
                log.warning("retention sweep failed: %s", exc)
        await asyncio.sleep(SWEEP_EVERY_S)
