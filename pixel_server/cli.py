"""The ``jobpixel`` command: serve, migrate, demo, check-config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from pixel_server.core import settings as settings_mod
from pixel_server.core.settings import ConfigError, Settings

DEMO_CONFIG = Path(__file__).resolve().parent / "web" / "demo" / "jobpixel.demo.toml"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.Formatter.converter = __import__("time").gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _load(path: str | None) -> Settings:
    return settings_mod.load(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    s = _load(args.config)
    print(f"ok: {args.config or os.environ.get(settings_mod.CONFIG_ENV, 'jobpixel.toml')}")
    print(
        f"  storage: {s.storage_backend}"
        + (f" ({s.resolved_chdb_path})" if s.storage_backend == "chdb" else "")
    )
    print(f"  signing keys: {len(s.signing_keys)}")
    print(f"  ops token: {'set' if s.ops_token else 'not set (/metrics answers 401; /readyz up/down only)'}")
    lim = s.limits
    print(
        f"  limits: {lim.ip_rate_per_s:g}/s per IP (burst {lim.ip_burst}), "
        f"{lim.grant_rate_per_s:g}/s per consent (burst {lim.grant_burst})"
    )
    for site in s.sites.values():
        chans = ", ".join(site.channels) or "none"
        origins = ", ".join(sorted(site.origins))
        print(f"  site {site.id}: partner {site.partner}, origins {origins}, channels {chans}")
        for name, template, rx in (  # door: the path templates and the regexes the pixel gets
            ("ad_pattern", site.ad_template, site.ad_pattern),
            ("thanks_pattern", site.thanks_template, site.thanks_pattern),
        ):
            if template:
                print(f"    {name} {template}  →  {rx}")
        targets = s.forwarding.targets.get(site.id, {})
        if targets:  # branch channels: server-side forwarding, and the variable each secret came from
            names = ", ".join(f"{t.channel} (${t.secret_env})" for t in targets.values())
            print(f"    forwarding server-side: {names}")
    _print_csp(s, args.pixel_origin)
    return 0


def _print_csp(s: Settings, pixel_origin: str) -> None:
    """issue #11: the exact CSP each site's pages need (pixel_server/web/csp.py)."""
    from pixel_server.web import csp

    for site in s.sites.values():
        for line in csp.describe(site, pixel_origin):
            print("  " + line)


def cmd_migrate(args: argparse.Namespace) -> int:
    from pixel_server.rights.retention import apply_ttl
    from pixel_server.storage import open_store

    s = _load(args.config)
    store = open_store(s)
    try:
        applied = store.migrate()
        ttl = apply_ttl(store, s)  # rights: TTLs follow the configuration
    finally:
        store.close()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    if ttl:
        print("TTL set from the configuration: " + ", ".join(ttl))
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    """The delivery-log rows of one event: which channel got it, under which consent (branch channels)."""
    from pixel_server.forwarding.deliverylog import COLUMNS, deliveries
    from pixel_server.storage import open_store

    s = _load(args.config)
    store = open_store(s)
    try:
        try:
            rows = deliveries(store, args.event)
        except ValueError:
            print(f"jobpixel: --event: {args.event!r} is not an event id (a UUID)", file=sys.stderr)
            return 2
    finally:
        store.close()
    if not rows:
        print(f"no deliveries logged for event {args.event}")
        return 1
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    widths = {c: max(len(c), *(len(str(r[c] if r[c] is not None else "")) for r in rows)) for c in COLUMNS}
    shown = [c for c in COLUMNS if c != "event_id"]
    print(f"event {args.event}")
    print("  ".join(c.ljust(widths[c]) for c in shown))
    for row in rows:
        print("  ".join(str(row[c] if row[c] is not None else "").ljust(widths[c]) for c in shown))
    return 0


def serve(s: Settings, host: str | None, port: int | None, demo: bool = False) -> int:
    _without_pyarrow()
    import uvicorn

    from pixel_server.web.app import create_app

    setup_logging(s.log_level)
    # The spool's sync thread needs the GIL for a moment after each fdatasync; with the
    # default 5 ms switch interval a busy event loop makes every acknowledgement wait that
    # long, and at a fixed number of connections latency is throughput (bench/README.md).
    sys.setswitchinterval(0.001)
    _hold_data_lock(s)
    app = create_app(s, demo=demo, tune_gc=True)
    uvicorn.run(
        app,
        host=host or s.host,
        port=port if port is not None else s.port,
        workers=1,  # chDB: one process per data path; scale out with storage.backend = 'clickhouse'
        access_log=False,
        log_config=None,
        proxy_headers=bool(s.trusted_proxies),
        forwarded_allow_ips=[str(n) for n in s.trusted_proxies] or None,
        server_header=False,
    )
    return 0


def _without_pyarrow() -> None:
    """Keep pyarrow (and the numpy it loads) out of the serving process: ~40 MiB resident.

    chDB's connection module imports pyarrow whenever it is installed (a dependency of the chdb
    package), for its Arrow result formats only; it documents pyarrow as optional for everything
    else. jobpixel reads JSONEachRow and CSV; clickhouse-connect imports pyarrow lazily, if it can,
    for Arrow queries jobpixel does not make.
    ``None`` in ``sys.modules`` makes a later ``import pyarrow`` fail as if it were not installed
    (issue #7: peak RSS under load; bench/README.md). Only ``serve``'s process: tests and embedders
    keep their imports. Nothing happens if pyarrow is already imported."""
    sys.modules.setdefault("pyarrow", None)  # type: ignore[arg-type]


_LOCK_FDS: list[int] = []


class DataDirLocked(RuntimeError):
    """Another process holds this data_dir (or chDB path)."""


def _hold_data_lock(s: Settings) -> None:
    """Fail early and clearly when another process already uses this data_dir (any backend: the
    journal lives there) or, with chDB, this chDB path."""
    paths = [(s.data_dir / "jobpixel", "data_dir")]
    if s.storage_backend == "chdb":
        paths.append((s.resolved_chdb_path, "chDB data path"))
    for path, what in paths:
        _lock_once(path, what)


def _lock_once(path: Path, what: str) -> None:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        finally:
            os.close(fd)
        raise DataDirLocked(
            f"{what} {path.parent if what == 'data_dir' else path} is in use by another jobpixel process "
            f"(pid {holder}): one process per data path. Stop the other one or give this one its own "
            "server.data_dir; to run several, use storage.backend = 'clickhouse' with one data_dir each."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _LOCK_FDS.append(fd)  # held until the process exits (the kernel releases it even on SIGKILL)


def cmd_serve(args: argparse.Namespace) -> int:
    return serve(_load(args.config), args.host, args.port)


def _demo_secret(env: str, name: str, nbytes: int = 32) -> Path | None:
    """Unless ``env`` is set: a secret made once for the demo, kept in ``var/demo/<name>`` (0600), put
    into ``env``. Returns that file, or None when the environment already had the secret."""
    if os.environ.get(env):
        return None
    path = Path("var/demo") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_urlsafe(nbytes))
        path.chmod(0o600)
    os.environ[env] = path.read_text().strip()
    return path


def cmd_demo(args: argparse.Namespace) -> int:
    _demo_secret(settings_mod.SIGNING_KEYS_ENV, "signing-key")
    _demo_secret(settings_mod.HASH_KEY_ENV, "hash-key")  # grant: the consent log's visitor-hash key
    ops_note = "from $JOBPIXEL_OPS_TOKEN"
    ops_file = _demo_secret(settings_mod.OPS_TOKEN_ENV, "ops-token", 24)  # door: the operator's token
    if ops_file is not None:
        ops_note = f"made for the demo, kept in {ops_file.resolve()}"
    s = settings_mod.load(args.config or DEMO_CONFIG)
    if not args.config:  # the built-in demo config ships in the package: keep its data in ./var/demo
        s = dataclasses.replace(s, data_dir=Path("var/demo").resolve())
    host, port = args.host or s.host, args.port or s.port
    print(
        f"\njobpixel demo — embedded ClickHouse (chDB) at {s.resolved_chdb_path}\n"
        f"  open   http://{host}:{port}/demo/         a job ad with the consent banner and the pixel\n"
        f"  then   http://{host}:{port}/readyz        up or down (the details with the ops token)\n"
        f"         http://{host}:{port}/metrics       Prometheus metrics (ops token only)\n"
        f"  ops token ({ops_note}):\n"
        f"         curl -H 'Authorization: Bearer {os.environ[settings_mod.OPS_TOKEN_ENV]}' "
        f"http://{host}:{port}/readyz\n"
        "  stop with Ctrl-C\n",
        flush=True,
    )
    return serve(s, host, port, demo=True)


def cmd_quarantine(args: argparse.Namespace) -> int:
    from pixel_server.storage import quarantine

    s = _load(args.config)
    directory = s.journal_dir / "quarantine"
    if args.action == "list":
        entries = quarantine.listing(directory)
        for e in entries:
            print(f"{e.path.name}\t{e.table}\t{e.rows} rows\t{e.nbytes} bytes")
        print(f"{len(entries)} file(s), {sum(e.rows for e in entries)} row(s) in {directory}")
        return 0
    _hold_data_lock(s)  # the server must be stopped: its loader writes the quarantine too
    from pixel_server.web.app import open_and_migrate

    store = open_and_migrate(s)
    try:
        result = quarantine.replay(directory, store)
    finally:
        store.close()
    print(f"replayed: {result.loaded} row(s) loaded, {result.refused} still refused (kept)")
    return 0 if result.refused == 0 else 1


# -- rights (issue #10): a data subject's export and erasure, for requests that come by e-mail ----------
def cmd_subject(args: argparse.Namespace) -> int:
    """``jobpixel subject export|erase --site SITE ID``: ID is a visitor id or a consent id. The server
    must be stopped (the journal and, with chDB, the store are one process's); the same as the admin
    API ``/api/v1/admin/subjects/{id}`` of a running server."""
    from pixel_server.core.journal import Journal
    from pixel_server.rights import service
    from pixel_server.rights.api import to_csv
    from pixel_server.rights.subject import as_uuid
    from pixel_server.web.app import CONSUMERS, open_and_migrate

    s = _load(args.config)
    if args.site not in s.sites:
        print(f"jobpixel: --site: unknown site {args.site!r}", file=sys.stderr)
        return 2
    asked = as_uuid(args.id)
    if asked is None:
        print(f"jobpixel: {args.id!r} is not a visitor id or consent id (a UUID)", file=sys.stderr)
        return 2
    _hold_data_lock(s)
    journal = Journal(s.journal_dir, CONSUMERS)
    try:
        store = open_and_migrate(s)
        try:
            subject = service.subject_for(s, args.site, asked, asked)
            if args.action == "export":
                doc = service.export_sync(store, journal, subject, s.cluster)
                if args.csv:
                    sys.stdout.write(to_csv(doc).decode())
                else:
                    print(json.dumps(doc, ensure_ascii=False, indent=1))
                return 0
            counts, event_ids = service.erase_sync(
                store, journal, s.journal_dir / "quarantine", subject, s.cluster
            )
            counts["outbox"] = service.purge_outbox(None, s.data_dir / "outbox", subject, event_ids)
            store.insert(service.ERASURE_TABLE, [service.erasure_row(s, subject, asked, "operator", counts)])
        finally:
            store.close()
    finally:
        journal.close()
    print(json.dumps({"erased": counts, "site": args.site}))
    return 0


# -- reports: credentials for the report API and the dashboard --------------------------------------
def cmd_new_token(args: argparse.Namespace) -> int:
    from pixel_server.reports.auth import new_token

    token, digest = new_token()
    print(f"token (give it to the partner, shown once): {token}")
    print(f'config line: api_token_hashes = ["{digest}"]')
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    from pixel_server.reports.auth import hash_password

    password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        print("jobpixel: a password needs at least 12 characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobpixel", description="Consent-first analytics pixel for job ads")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (
        ("serve", cmd_serve, "run the server"),
        ("migrate", cmd_migrate, "create or upgrade the ClickHouse schema"),
        ("demo", cmd_demo, "run the server with the demo job-ad page on the embedded store"),
        ("check-config", cmd_check_config, "validate a config file without starting"),
        ("deliveries", cmd_deliveries, "print the delivery-log rows of one event (ad-channel forwarding)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument(
            "--config", "-c", help=f"TOML config file (default ${settings_mod.CONFIG_ENV} or jobpixel.toml)"
        )
        if name in ("serve", "demo"):
            p.add_argument("--host")
            p.add_argument("--port", type=int)
        if name == "check-config":
            p.add_argument(
                "--pixel-origin",
                default="https://jobpixel.example.no",
                help="the jobpixel server's public origin, for the printed Content-Security-Policy",
            )
        if name == "deliveries":
            p.add_argument("--event", required=True, help="the event id (UUID)")
            p.add_argument("--json", action="store_true", help="one JSON object per row")
        p.set_defaults(fn=fn)
    q = sub.add_parser("quarantine", help="rows ClickHouse refused: list them, or load them again")
    q.add_argument("action", choices=("list", "replay"))
    q.add_argument(
        "--config", "-c", help=f"TOML config file (default ${settings_mod.CONFIG_ENV} or jobpixel.toml)"
    )
    q.set_defaults(fn=cmd_quarantine)

    subj = sub.add_parser("subject", help="a data subject's rows: export them, or erase them everywhere")
    subj.add_argument("action", choices=("export", "erase"))
    subj.add_argument("id", help="the visitor id or the consent id (UUID)")
    subj.add_argument("--site", required=True, help="the site id")
    subj.add_argument("--csv", action="store_true", help="export as CSV (table,row,column,value)")
    subj.add_argument(
        "--config", "-c", help=f"TOML config file (default ${settings_mod.CONFIG_ENV} or jobpixel.toml)"
    )
    subj.set_defaults(fn=cmd_subject)

    sub.add_parser("new-token", help="print a new report API token and its config line").set_defaults(
        fn=cmd_new_token
    )
    sub.add_parser("hash-password", help="read a password on stdin, print its argon2id hash").set_defaults(
        fn=cmd_hash_password
    )
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except ConfigError as exc:
        print(f"jobpixel: configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from pixel_server.core.journal import JournalLocked
        from pixel_server.storage import StoreError

        if isinstance(exc, StoreError | DataDirLocked | JournalLocked):
            print(f"jobpixel: {exc}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
