"""The store interface and what both backends share: schema rendering and migrations.

Identifiers (database, cluster, table names) come only from validated settings
and the allow-list below; values are always bound by the driver as ClickHouse
``{name:Type}`` parameters, never formatted into SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from pixel_server.core.store import RowsRefused, Store, StoreError, StoreLockedError, StoreUnavailable

TABLES = ("events", "consent_log", "delivery_log", "ads", "erasure_log")  # channels, reports, rights

__all__ = [
    "READ_SETTINGS",
    "TABLES",
    "RowsRefused",
    "Store",
    "StoreBase",
    "StoreError",
    "StoreLockedError",
    "StoreUnavailable",
    "insert_error",
]
MIGRATIONS_TABLE = "schema_migrations"

# Output settings applied to every read: dates leave ClickHouse as ISO-8601 UTC.
READ_SETTINGS = {"date_time_output_format": "iso", "output_format_json_quote_64bit_integers": 0}


# ClickHouse error codes that are about the rows sent, not about the server (src/Common/ErrorCodes.cpp):
# only these make the loader bisect a chunk and quarantine lines. Every other code, and every error
# without one (connection refused, timeout), means "store unavailable": keep the rows and retry.
ROW_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        25,  # CANNOT_PARSE_ESCAPE_SEQUENCE
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        33,  # CANNOT_READ_ALL_DATA
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        130,  # CANNOT_READ_ARRAY_FROM_TEXT
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        376,  # CANNOT_PARSE_UUID
        377,  # ILLEGAL_SYNTAX_FOR_DATA_TYPE
        467,  # CANNOT_PARSE_BOOL
        691,  # UNKNOWN_ELEMENT_OF_ENUM
    }
)
_CODE_RE = re.compile(r"\bCode: (\d+)\.")


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code in a driver exception's text (chDB and the HTTP driver both print it)."""
    m = _CODE_RE.search(str(exc))
    return int(m.group(1)) if m else None


def insert_error(table: str, exc: BaseException) -> StoreError:
    """Classify a failed insert: the rows' fault (:class:`RowsRefused`) or the store's (retry)."""
    if isinstance(exc, StoreError):
        return exc
    code = error_code(exc)
    cls = RowsRefused if code in ROW_ERROR_CODES else StoreUnavailable
    return cls(f"insert into {table} failed: {exc}")


class StoreBase:
    """What both backends share; each implements ``insert_jsonl``, ``query``, ``execute``."""

    database: str
    cluster: str | None = None

    def insert_jsonl(self, table: str, data: bytes, dedup_token: str | None = None) -> None:
        raise NotImplementedError

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.insert_jsonl(table, rows_to_jsonl(rows))

    def migrate(self) -> list[str]:
        return run_migrations(self, self.cluster)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def check_table(table: str) -> str:
    if table not in TABLES:
        raise StoreError(f"unknown table {table!r}")
    return table


def render(sql: str, database: str, cluster: str | None = None) -> str:
    """Fill the schema placeholders for a single server or a cluster."""
    on_cluster = f"ON CLUSTER {cluster}" if cluster else ""

    def table(m: re.Match[str]) -> str:
        return f"{m.group(1)}_local" if cluster else m.group(1)

    def engine(m: re.Match[str]) -> str:
        name = m.group(1)
        if not cluster:
            return name
        return f"Replicated{name}('/clickhouse/tables/{{shard}}/{database}/{{table}}', '{{replica}}')"

    def distributed(m: re.Match[str]) -> str:
        if not cluster:
            return ""
        name, key = m.group(1), m.group(2)
        return (
            f"CREATE TABLE IF NOT EXISTS {database}.{name} {on_cluster} AS {database}.{name}_local "
            f"ENGINE = Distributed({cluster}, {database}, {name}_local, {key});"
        )

    sql = re.sub(r"^-- distributed: (\w+) (.+)$", distributed, sql, flags=re.MULTILINE)
    sql = re.sub(r"\$\{table:(\w+)\}", table, sql)
    sql = re.sub(r"\$\{engine:(\w+)\}", engine, sql)
    return sql.replace("${db}", database).replace("${on_cluster}", on_cluster)


def split_statements(sql: str) -> tuple[str, ...]:
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    return tuple(s.strip() for s in "\n".join(lines).split(";") if s.strip())


def load_migrations(database: str, cluster: str | None = None) -> list[Migration]:
    out = []
    schema_dir = resources.files("pixel_server.storage") / "schema"
    for entry in sorted(schema_dir.iterdir(), key=lambda e: e.name):
        m = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if not m:
            continue
        sql = render(entry.read_text(encoding="utf-8"), database, cluster)
        out.append(Migration(int(m.group(1)), m.group(2), split_statements(sql)))
    return out


def run_migrations(store: Store, cluster: str | None = None) -> list[str]:
    """Versioned and idempotent: a version is recorded once all its statements ran."""
    db = store.database
    store.execute(f"CREATE DATABASE IF NOT EXISTS {db}" + (f" ON CLUSTER {cluster}" if cluster else ""))
    store.execute(
        f"CREATE TABLE IF NOT EXISTS {db}.{MIGRATIONS_TABLE} "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {int(r["version"]) for r in store.query(f"SELECT version FROM {db}.{MIGRATIONS_TABLE} FINAL")}
    applied = []
    for mig in load_migrations(db, cluster):
        if mig.version in done:
            continue
        for stmt in mig.statements:
            store.execute(stmt)
        store.execute(
            f"INSERT INTO {db}.{MIGRATIONS_TABLE} (version, name) VALUES ({{v:UInt32}}, {{n:String}})",
            {"v": mig.version, "n": mig.name},
        )
        applied.append(f"{mig.version:04d}_{mig.name}")
    return applied


def rows_to_jsonl(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def parse_jsonl(data: bytes | str) -> list[dict[str, Any]]:
    if isinstance(data, str):
        data = data.encode()
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]
