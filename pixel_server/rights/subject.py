"""Whose rows: a data subject on one site, and every place their rows live (ClickHouse, the journal,
the quarantine, the outbox).

A subject starts from what the request proves — a grant (visitor id + consent id) or, for the operator,
one id that may be either — and is closed over the rows: the consent ids of the visitor's events and of
the consent-log rows whose ``visitor_hash`` is the visitor's, and the visitor ids of those consent ids'
events (one browser: a consent id keeps its visitor id until a withdrawal, then gets a new one).

The tables are not listed here: every table of the database with a ``visitor_id``, ``consent_id`` or
``visitor_hash`` column is found in ``system.columns`` at the moment of the request, so a table added
later is exported and erased without a change here (``tests/rights`` checks the same way). The ad
metadata (``ads``) holds no visitor column: it is the ad's, not the visitor's; the export shows the
rows of the ads the visitor's events name, and the erasure leaves them (they go with their TTL).

SQL values are bound as ``{name:Type}`` parameters, one per id (both backends bind scalars the same
way); identifiers come from ``system.columns`` and are checked against a plain-identifier pattern.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from pixel_server.consent.log import visitor_hash
from pixel_server.core.store import Store, StoreError

SUBJECT_COLUMNS = ("visitor_id", "consent_id", "visitor_hash")
MAX_IDS = 200  # a browser has a handful; this bounds a query built from rows
MAX_EXPORT_ROWS = 50_000
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class SubjectError(StoreError):
    """The store could not answer, or a deletion was not visible to reads at once."""


@dataclass
class Subject:
    site: str
    visitor_ids: set[str] = field(default_factory=set)
    consent_ids: set[str] = field(default_factory=set)
    hash_key: str = ""
    ambiguous: set[str] = field(default_factory=set)  # asked for as either (the operator's one id)

    @property
    def hashes(self) -> set[str]:
        return {visitor_hash(self.hash_key, uuid.UUID(v)) for v in self.visitor_ids}

    def add(self, visitor_ids: Iterable[object] = (), consent_ids: Iterable[object] = ()) -> bool:
        """Add ids (skipping anything not a UUID); True when something new came in."""
        before = (len(self.visitor_ids), len(self.consent_ids))
        for target, values in ((self.visitor_ids, visitor_ids), (self.consent_ids, consent_ids)):
            for v in values:
                u = as_uuid(v)
                if u is not None and u != ZERO and len(target) < MAX_IDS:
                    target.add(u)
        return (len(self.visitor_ids), len(self.consent_ids)) != before

    def row_test(self, table: str, row: Mapping[str, Any]) -> bool:
        """Is this journal/quarantine row the subject's? The same rule as :meth:`where`."""
        if row.get("site_id", self.site) != self.site:
            return False
        return (
            str(row.get("visitor_id", "")) in self.visitor_ids
            or str(row.get("consent_id", "")) in self.consent_ids
            or str(row.get("visitor_hash", "")) in self.hashes
        )

    def needles(self) -> tuple[bytes, ...]:
        """Byte strings one of which every row of the subject contains (as journaled)."""
        return tuple(s.encode() for s in (*self.visitor_ids, *self.consent_ids, *self.hashes))

    def where(self, columns: AbstractSet[str]) -> tuple[str, dict[str, str]]:
        """A WHERE clause over the subject columns a table has, and its parameters."""
        params: dict[str, str] = {"site": self.site}
        ors = []
        for col, values, typ in (
            ("visitor_id", sorted(self.visitor_ids), "UUID"),
            ("consent_id", sorted(self.consent_ids), "UUID"),
            ("visitor_hash", sorted(self.hashes), "String"),
        ):
            if col in columns and values:
                names = []
                for i, v in enumerate(values):
                    params[f"{col}_{i}"] = v
                    names.append(f"{{{col}_{i}:{typ}}}")
                ors.append(f"{col} IN ({', '.join(names)})")
        if not ors:
            return "0", params
        clause = "(" + " OR ".join(ors) + ")"
        if "site_id" in columns:
            clause = "site_id = {site:String} AND " + clause
        return clause, params


ZERO = "00000000-0000-0000-0000-000000000000"


def as_uuid(value: object) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


@dataclass(frozen=True)
class Table:
    name: str  # what DML targets (the *_local table on a cluster)
    shown: str  # the name in answers and in the erasure log
    columns: frozenset[str]
    engine: str


def subject_tables(store: Store, cluster: str | None = None) -> list[Table]:
    """Every table with a subject column, from ``system.columns`` (never a list kept by hand)."""
    rows = store.query(
        "SELECT c.table AS table, groupArray(c.name) AS columns, any(t.engine) AS engine "
        "FROM system.columns AS c INNER JOIN system.tables AS t "
        "ON t.database = c.database AND t.name = c.table "
        "WHERE c.database = {db:String} GROUP BY c.table ORDER BY c.table",
        {"db": store.database},
    )
    out = []
    for r in rows:
        cols = frozenset(str(c) for c in r["columns"])
        name, engine = str(r["table"]), str(r["engine"])
        if not cols & set(SUBJECT_COLUMNS) or not _IDENT_RE.match(name):
            continue
        if engine in ("Distributed", "View", "MaterializedView"):
            continue  # DML goes to the local tables under it; a view holds no rows of its own
        shown = name[: -len("_local")] if cluster and name.endswith("_local") else name
        out.append(Table(name, shown, cols, engine))
    return out


def resolve(
    store: Store, subject: Subject, journal_rows: Iterable[tuple[str, Mapping[str, Any]]] = ()
) -> None:
    """Close the subject over its rows (ClickHouse and the journal rows given), in place."""
    tables = subject_tables(store)
    rows = list(journal_rows)
    seen_v: set[str] = set()
    seen_c: set[str] = set()
    for _ in range(4):  # each round can only add ids; a browser's closure is reached in two
        grew = False
        for t in tables:
            if "consent_id" not in t.columns:
                continue
            clause, params = subject.where(t.columns)
            pick = ["toString(consent_id) AS c"]
            if "visitor_id" in t.columns:
                pick.append("toString(visitor_id) AS v")
            found = store.query(
                f"SELECT DISTINCT {', '.join(pick)} FROM {store.database}.{t.name} WHERE {clause} "
                f"LIMIT {MAX_IDS}",
                params,
            )
            seen_v |= {str(r["v"]) for r in found if r.get("v")}
            seen_c |= {str(r["c"]) for r in found}
            grew |= subject.add((r.get("v") for r in found), (r["c"] for r in found))
        for table, row in rows:
            if subject.row_test(table, row):
                seen_v.add(str(row.get("visitor_id")))
                seen_c.add(str(row.get("consent_id")))
                grew |= subject.add([row.get("visitor_id")], [row.get("consent_id")])
        if not grew:
            break
    # An id asked for as either is what the rows say it is (a visitor id is no consent id).
    for asked in subject.ambiguous:
        if asked in seen_c and asked not in seen_v:
            subject.visitor_ids.discard(asked)
        elif asked in seen_v and asked not in seen_c:
            subject.consent_ids.discard(asked)


def export(store: Store, subject: Subject, cluster: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every row of the subject, per table; and the ads their events name (``ads``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for t in subject_tables(store, cluster):
        clause, params = subject.where(t.columns)
        final = " FINAL" if "Replacing" in t.engine else ""
        order = " ORDER BY ts" if "ts" in t.columns else ""
        out[t.shown] = store.query(
            f"SELECT * FROM {store.database}.{t.shown}{final} WHERE {clause}{order} LIMIT {MAX_EXPORT_ROWS}",
            params,
        )
    ads = sorted({str(e.get("ad_id")) for e in out.get("events", []) if e.get("ad_id")})
    if ads:
        names = {f"ad_{i}": a for i, a in enumerate(ads[:MAX_IDS])}
        in_list = ", ".join(f"{{{k}:String}}" for k in names)
        out["ads"] = store.query(
            f"SELECT site_id, ad_id, min(first_seen) AS first_seen, max(last_seen) AS last_seen, "
            f"max(latest) AS latest FROM {store.database}.ads "
            f"WHERE site_id = {{site:String}} AND ad_id IN ({in_list}) "
            "GROUP BY site_id, ad_id ORDER BY ad_id",
            {"site": subject.site, **names},
        )
    return out


def erase_store(store: Store, subject: Subject, cluster: str | None = None) -> dict[str, int]:
    """Lightweight ``DELETE`` of the subject's rows in every subject table, checked visible at once.

    ClickHouse marks the rows deleted (a hidden ``_row_exists`` column) and every read skips them from
    then on; the parts are physically rewritten by later merges (``OPTIMIZE … FINAL`` forces it). On a
    cluster the statement goes ``ON CLUSTER`` to the ``*_local`` tables of every shard and replica."""
    counts: dict[str, int] = {}
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    for t in subject_tables(store, cluster):
        clause, params = subject.where(t.columns)
        target = f"{store.database}.{t.shown if not cluster else t.name}"
        before = _count(store, f"{store.database}.{t.shown}", clause, params)
        if before:
            store.execute(
                f"DELETE FROM {target}{on_cluster} WHERE {clause} SETTINGS lightweight_deletes_sync = 2",
                params,
            )
            left = _count(store, f"{store.database}.{t.shown}", clause, params)
            if left:
                raise SubjectError(f"{t.shown}: {left} row(s) still visible after DELETE")
        counts[t.shown] = before
    return counts


def _count(store: Store, table: str, clause: str, params: Mapping[str, str]) -> int:
    rows = store.query(f"SELECT count() AS n FROM {table} WHERE {clause}", params)
    return int(rows[0]["n"]) if rows else 0
