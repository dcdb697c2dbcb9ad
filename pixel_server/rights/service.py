"""Export and erasure of one subject, for ``/me``, the admin API and the CLI alike.

An erasure, in order:

1. **revoke** every consent id of the subject (the in-memory index at once; the erasure-log row, below,
   makes it hold after a restart and on the other nodes): nothing new is accepted under those grants;
2. on the loader's thread (:meth:`Loader.exclusive`: no load runs meanwhile), **resolve** the subject
   over ClickHouse and the journal, **blank** its rows in every journal segment still on disk and
   **drop** them from the quarantine (:mod:`.files`), then **DELETE** them in ClickHouse and check
   that no read sees them any more (:func:`.subject.erase_store`), and rebuild the report rollups'
   hours they were in (hash sets of visitor ids cannot lose one); a second short pass catches a row
   whose request passed the grant check just before the revocation;
3. **purge** the outbox: undelivered deliveries, finished ones whose delivery-log row is not written
   yet, and the keys it keeps against replays;
4. write the **erasure log** row: when, site, keyed hash of the id asked for, keyed hashes of the
   consent ids (so the revocation survives), counts per table, who asked — none of the erased data.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pixel_server.consent.log import visitor_hash
from pixel_server.core.journal import Journal
from pixel_server.core.settings import Settings
from pixel_server.core.state import State
from pixel_server.core.store import Store
from pixel_server.rights import files
from pixel_server.rights.subject import MAX_EXPORT_ROWS, Subject, erase_store, export, resolve

FORMAT_VERSION = 1
Requester = Literal["visitor", "operator"]
ERASURE_TABLE = "erasure_log"


def subject_for(settings: Settings, site: str, visitor_id: str | None, consent_id: str | None) -> Subject:
    s = Subject(site, hash_key=settings.hash_key)
    s.add([visitor_id] if visitor_id else [], [consent_id] if consent_id else [])
    if visitor_id and visitor_id == consent_id:
        s.ambiguous = s.visitor_ids & s.consent_ids
    return s


def resolve_sync(store: Store, journal: Journal | None, subject: Subject) -> None:
    rows = files.scan_rows(journal, subject.row_test, subject.needles()) if journal is not None else []
    resolve(store, subject, rows)


def export_sync(
    store: Store, journal: Journal | None, subject: Subject, cluster: str | None
) -> dict[str, Any]:
    """The subject's data, portable (``format_version``): ClickHouse rows per table, and rows still
    in the journal (accepted, not loaded yet)."""
    resolve_sync(store, journal, subject)
    tables = export(store, subject, cluster)
    if journal is not None:
        pending = files.scan_rows(journal, subject.row_test, subject.needles())
        for table, row in pending[:MAX_EXPORT_ROWS]:
            tables.setdefault("journal." + table, []).append(row)
    return {
        "format_version": FORMAT_VERSION,
        "site": subject.site,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "subject": {"visitor_ids": sorted(subject.visitor_ids), "consent_ids": sorted(subject.consent_ids)},
        "tables": tables,
    }


def erase_sync(
    store: Store,
    journal: Journal | None,
    quarantine_dir: Path | None,
    subject: Subject,
    cluster: str | None,
    revoke: Callable[[str, float], None] | None = None,
) -> tuple[dict[str, int], set[str]]:
    """Steps 1–2 (the caller runs it where no load can interleave). Returns counts and event ids."""
    resolve_sync(store, journal, subject)
    now = time.time()
    if revoke is not None:
        for cid in subject.consent_ids:
            revoke(cid, now)
    counts: dict[str, int] = {}
    event_ids: set[str] = set()
    needles = subject.needles()
    if journal is not None:
        event_ids |= {
            str(r.get("event_id"))
            for t, r in files.scan_rows(journal, subject.row_test, needles)
            if t == "events"
        }
        for table, n in files.blank_journal(journal, subject.row_test, needles).items():
            counts[f"journal.{table}"] = n
    if quarantine_dir is not None:
        for table, n in files.purge_quarantine(quarantine_dir, subject.row_test, needles).items():
            counts[f"quarantine.{table}"] = n
    event_ids |= _event_ids(store, subject)
    hours = _event_hours(store, subject)
    counts |= erase_store(store, subject, cluster)
    _rebuild_rollups(store, subject.site, hours)
    return counts, event_ids


def _event_hours(store: Store, subject: Subject) -> list[str]:
    """The UTC hours the subject's stored events fall in (the rollups' rows to rebuild)."""
    clause, params = subject.where({"site_id", "visitor_id", "consent_id"})
    rows = store.query(
        f"SELECT DISTINCT formatDateTime(toStartOfHour(ts), '%Y-%m-%dT%H:00:00') AS h "
        f"FROM {store.database}.events WHERE {clause} ORDER BY h LIMIT 10000",
        params,
    )
    return [str(r["h"]) for r in rows]


def _rebuild_rollups(store: Store, site: str, hours: list[str]) -> None:
    """The report rollups hold hash sets of visitor ids and the pageview ids: a set cannot lose one
    member, so the hours the erased events were in are recomputed from the events left."""
    import datetime as dt

    from pixel_server.reports import rollup

    for h in hours:
        start = dt.datetime.fromisoformat(h).replace(tzinfo=dt.UTC)
        rollup.rebuild(store, site, start, start + dt.timedelta(hours=1))


def _event_ids(store: Store, subject: Subject) -> set[str]:
    clause, params = subject.where({"site_id", "visitor_id", "consent_id"})
    rows = store.query(
        f"SELECT toString(event_id) AS e FROM {store.database}.events WHERE {clause} LIMIT {MAX_EXPORT_ROWS}",
        params,
    )
    return {str(r["e"]) for r in rows}


def live_outbox(state: State) -> Any:
    """The outbox this process runs, if any (the forwarding block ``create_app`` put on ``state``)."""
    return state.forwarder.outbox if state.forwarder is not None else None


def purge_outbox(outbox: Any, directory: Path, subject: Subject, event_ids: set[str]) -> int:
    """Step 3: the live outbox's store if this process runs one, else its file (no outbox runs)."""
    from pixel_server.forwarding.store import FILE_NAME, OutboxStore

    store = getattr(outbox, "store", outbox)
    if store is not None and hasattr(store, "drop"):  # the live outbox's, or the delivery process's
        return int(store.drop(subject.consent_ids, event_ids))
    if not (directory / FILE_NAME).exists():
        return 0
    own = OutboxStore(directory)
    own.open()
    try:
        return own.drop(subject.consent_ids, event_ids)
    finally:
        own.close()


def erasure_row(
    settings: Settings, subject: Subject, asked_id: str, requested_by: Requester, counts: dict[str, int]
) -> dict[str, Any]:
    site = settings.sites.get(subject.site)
    return {
        "ts": round(time.time(), 3),
        "site_id": subject.site,
        "id_hash": visitor_hash(settings.hash_key, uuid.UUID(asked_id)),
        "consent_hashes": sorted(visitor_hash(settings.hash_key, uuid.UUID(c)) for c in subject.consent_ids),
        "requested_by": requested_by,
        "counts": counts,
        "retention_days": site.consent_log_days if site is not None else 1095,
    }


async def erase_live(
    state: State, subject: Subject, asked_id: str, requested_by: Requester
) -> dict[str, int]:
    """In the server: steps 1–4 around the running loader and outbox. The caller checked that the
    store is connected (``state.store``, ``state.loader``)."""
    settings = state.settings
    store, loader = state.store, state.loader
    assert store is not None and loader is not None
    quarantine = settings.journal_dir / "quarantine"

    def one_pass() -> tuple[dict[str, int], set[str]]:
        return erase_sync(
            store, state.journal, quarantine, subject, settings.cluster, state.revocations.record
        )

    for cid in subject.consent_ids:  # the grant's own consent id: refuse new rows before anything else
        state.revocations.record(cid, time.time())
    first: tuple[dict[str, int], set[str]] = await loader.exclusive(one_pass)
    counts, event_ids = first
    await asyncio.sleep(0.05)  # a request that passed the grant check just before the revocation
    again, more_ids = await loader.exclusive(one_pass)
    for k, n in again.items():
        counts[k] = counts.get(k, 0) + n
    event_ids |= more_ids
    outbox = live_outbox(state)
    if outbox is None and settings.forwarding.enabled:
        # An outbox runs here but is not reachable: rewriting its file under it would lose its state.
        raise RuntimeError("rights: forwarding is on but the running outbox is not on state (forwarder)")
    counts["outbox"] = await asyncio.to_thread(
        purge_outbox, outbox, settings.data_dir / "outbox", subject, event_ids
    )
    row = erasure_row(settings, subject, asked_id, requested_by, counts)
    await asyncio.to_thread(store.insert, ERASURE_TABLE, [row])
    return counts
