"""What the forwarding tests share: the journal and revocation interfaces of CONTRACTS.md, settings with
forwarding on (pointed at a local recording server), and journal rows as ``put_rows`` makes them.

``FakeJournal`` implements exactly the CONTRACTS.md cursor interface (``cursor(name)``, ``pending()``,
``Segment.read()``, ``commit(seg)``) over files, so a "restart" is a new instance on the same directory.
It exists because the journal's cursor API lands on another branch; it tests our consumer, not the journal.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pixel_server.core import settings as settings_mod
from pixel_server.core.settings import Settings
from pixel_server.forwarding.outbox import Outbox
from tests.harness import (
    DESKTOP_UA,
    LiveServer,
    PartnerSite,
    RecordingServer,
    config_dict,
    run_async,
)
from tests.harness import SECRETS as SERVER_SECRETS

SECRETS = {
    "GA4_API_SECRET": "ga4-secret-abc",
    "META_TOKEN": "meta-token-xyz",
    "LINKEDIN_TOKEN": "li-oauth-token",
    "SNAP_TOKEN": "snap-capi-token",
}
SECRET_ENV = {
    "ga4": "GA4_API_SECRET",
    "meta": "META_TOKEN",
    "linkedin": "LINKEDIN_TOKEN",
    "snapchat": "SNAP_TOKEN",
}
LINKEDIN_RULE = "987654"
LINKEDIN_TAG_CONVERSION = "7654321"  # the Insight Tag's own conversion (browser side: lintrk)


def forwarding_config(
    data_dir: Path,
    endpoint: str | None,
    channels: Sequence[str] = tuple(SECRET_ENV),
    origin: str = "https://jobs.example.no",
    **forwarding: Any,
) -> dict[str, Any]:
    cfg = copy.deepcopy(config_dict(data_dir, origin))
    shop = cfg["sites"]["shop"]["channels"]
    for name in channels:
        shop[name]["secret_env"] = SECRET_ENV[name]
    if "linkedin" in channels:
        shop["linkedin"]["conversion_rule"] = LINKEDIN_RULE
    fwd: dict[str, Any] = {"retry_base_ms": 1, "retry_max_s": 1, "timeout_ms": 500, **forwarding}
    if endpoint is not None:
        fwd["endpoints"] = {name: endpoint for name in SECRET_ENV}
    cfg["forwarding"] = fwd
    return cfg


def forwarding_settings(data_dir: Path, endpoint: str | None, **kw: Any) -> Settings:
    env = {**SERVER_SECRETS, **SECRETS}
    return settings_mod.from_mapping(forwarding_config(data_dir, endpoint, **kw), env, data_dir)


def event_row(
    name: str = "apply_complete", *, age_s: float = 5.0, site: str = "shop", **over: Any
) -> dict[str, Any]:
    """A journal ``events`` row as put_rows writes it, with the grant fields (0002) and the identifiers
    the channel tags set (``channel_ids``, ``user_agent``), marketing granted."""
    now = time.time()
    return {
        "event_id": str(uuid.uuid4()),
        "site_id": site,
        "ad_id": "4711",
        "name": name,
        "ts": round(now - age_s, 3),
        "client_ts": round(now - age_s, 3),
        "visitor_id": str(uuid.uuid4()),
        "pageview_id": None,
        "url": "https://jobs.example.no/jobb/4711?fbclid=IwAR-click&li_fat_id=li-click-1",
        "hostname": "jobs.example.no",
        "path": "/jobb/4711",
        "click_id_type": "fbclid",
        "click_ids": {"fbclid": "IwAR-click", "li_fat_id": "li-click-1"},
        "browser": "Chrome",
        "marketing": 1,
        "consent_id": str(uuid.uuid4()),
        "choice_id": str(uuid.uuid4()),
        "grant_issued_at": round(now - age_s - 60, 3),
        "channel_ids": {
            "ga_client_id": "1234567890.1700000000",
            "fbp": "fb.1.1558571054389.1098115397",
            "fbc": "fb.1.1554763741205.AbCdEfGh",
            "scid": "scid-5d1c6a2e",
            "li_fat_id": "li-cookie-7",
        },
        "user_agent": DESKTOP_UA,
        "job": {"title": "Selger", "category": "Salg", "location": "Oslo", "employer": "Acme AS"},
        "props": {"email": "ola@example.no"},
        "retention_days": 395,
        **over,
    }


def wait(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``cond`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@dataclass
class FakeSegment:
    seq: int
    directory: Path

    def read(self) -> tuple[dict[str, bytes], int]:
        out = {}
        for f in sorted(self.directory.glob(f"{self.seq:012d}.*.jsonl")):
            out[f.name.split(".")[1]] = f.read_bytes()
        return out, 0


class FakeCursor:
    def __init__(self, journal: FakeJournal, name: str) -> None:
        self.journal, self.name = journal, name
        self.file = journal.directory / f"cursor.{name}"

    def committed(self) -> set[int]:
        return {int(x) for x in self.file.read_text().split()} if self.file.exists() else set()

    def pending(self) -> list[FakeSegment]:
        done = self.committed()
        return [FakeSegment(s, self.journal.directory) for s in self.journal.sealed() if s not in done]

    def commit(self, segment: FakeSegment) -> None:
        with self.file.open("a") as fh:
            fh.write(f"{segment.seq}\n")


class FakeJournal:
    """Every ``append`` seals its own segment (the real journal groups them; the consumer must not care)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def sealed(self) -> list[int]:
        return sorted({int(f.name.split(".")[0]) for f in self.directory.glob("*.jsonl")})

    async def append(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        seq = max(self.sealed(), default=0) + 1
        (self.directory / f"{seq:012d}.{table}.jsonl").write_bytes(
            b"".join(orjson.dumps(r) + b"\n" for r in rows)
        )

    def add(self, *rows: Mapping[str, Any]) -> None:
        run_async(self.append("events", rows))

    def cursor(self, consumer: str) -> FakeCursor:
        return FakeCursor(self, consumer)


class Revocations:
    """CONTRACTS.md semantics: revoked when a withdrawal for the consent id was logged after the grant."""

    def __init__(self) -> None:
        self.withdrawn: dict[str, float] = {}

    def withdraw(self, consent_id: str, at: float | None = None) -> None:
        self.withdrawn[consent_id] = time.time() if at is None else at

    def is_revoked(self, grant: Any) -> bool:
        at = self.withdrawn.get(grant.consent_id)
        return at is not None and at > grant.issued_at


class MemoryLog:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    async def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.rows += [dict(r) for r in rows]


async def drive(outbox: Outbox, until: Callable[[], bool], timeout: float = 10.0) -> None:
    """Run outbox passes until ``until()`` holds (and the outbox is idle) or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await outbox.run_once()
        if until() and not outbox.store.pending() and not outbox.store.unlogged():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"outbox did not settle: {outbox.status()}")


class FileLog:
    """A delivery log in a JSON-lines file, so a test can read what a killed process logged."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        with self.path.open("ab") as fh:
            fh.write(b"".join(orjson.dumps(dict(r)) + b"\n" for r in rows))

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines()]


class ForwardingServer(LiveServer):
    """The real server (``LiveServer``) with forwarding on for site ``shop``: each channel's endpoint is
    its own local :class:`RecordingServer`. Segments are sealed only by :meth:`flush` (the loader's
    interval and the journal's segment age are set long), so a test decides when the outbox sees them."""

    def __init__(
        self,
        data_dir: Path,
        partner: PartnerSite,
        recorders: Mapping[str, RecordingServer],
        **forwarding: Any,
    ) -> None:
        super().__init__(data_dir, partner)
        self.recorders = recorders
        self.forwarding = forwarding

    @property
    def settings(self) -> Settings:
        cfg = forwarding_config(
            self.data_dir, None, channels=tuple(self.recorders), origin=self.partner.origin, **self.forwarding
        )
        cfg["forwarding"]["endpoints"] = {name: rec.url for name, rec in self.recorders.items()}
        cfg["sites"]["shop"]["channels"]["linkedin"]["conversion"] = LINKEDIN_TAG_CONVERSION
        cfg["storage"]["flush_interval_ms"] = 60_000
        cfg["journal"] = {"segment_seconds": 3600}
        return settings_mod.from_mapping(cfg, {**SERVER_SECRETS, **SECRETS}, self.data_dir)
