"""Prometheus metrics, one registry per app (so tests can run several apps in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pixel_server.core.errors import DropReason

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series only add noise to every scrape


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.accepted = Counter("jobpixel_events_accepted", "Events durably spooled", ["site"], registry=r)
        self.dropped = Counter(
            "jobpixel_events_dropped", "Events (or requests) dropped, by reason", ["reason"], registry=r
        )
        self._dropped = {reason: self.dropped.labels(reason.value) for reason in DropReason}
        self._accepted: dict[str, Any] = {}
        self.consent_choices = Counter(
            "jobpixel_consent_choices", "Consent choices logged", ["site", "action"], registry=r
        )
        self.spool_rows = Gauge("jobpixel_spool_rows", "Rows on disk waiting for ClickHouse", registry=r)
        self.spool_bytes = Gauge("jobpixel_spool_bytes", "Bytes on disk waiting for ClickHouse", registry=r)
        self.spool_commit_seconds = Histogram(
            "jobpixel_spool_commit_seconds",
            "Time to write+fsync one commit group",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.spool_group_size = Histogram(
            "jobpixel_spool_group_requests",
            "Requests made durable by one fsync",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.spool_torn_lines = Counter(
            "jobpixel_spool_torn_lines",
            "Unreadable spool lines skipped (unacknowledged torn writes)",
            registry=r,
        )
        self.spool_quarantined = Counter(
            "jobpixel_spool_quarantined_rows",
            "Rows ClickHouse refused, kept in spool/quarantine/",
            registry=r,
        )
        self.flush_seconds = Histogram(
            "jobpixel_flush_seconds",
            "Time to insert one spool segment into ClickHouse",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.flush_rows = Histogram(
            "jobpixel_flush_batch_rows",
            "Rows per insert batch",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000),
            registry=r,
        )
        self.flush_failures = Counter(
            "jobpixel_flush_failures", "Failed inserts (rows stay spooled)", registry=r
        )
        # the journal (branch journal)
        self.journal_bytes = Gauge(
            "jobpixel_journal_bytes", "Bytes kept in the journal (limit: journal.max_bytes)", registry=r
        )
        self.journal_full = Gauge(
            "jobpixel_journal_full",
            "1 while appends are refused (max_bytes or free-disk reserve)",
            registry=r,
        )
        self.journal_lag_bytes = Gauge(
            "jobpixel_journal_consumer_lag_bytes",
            "Journal bytes a consumer has not committed yet",
            ["consumer"],
            registry=r,
        )
        self.quarantine_files = Gauge(
            "jobpixel_quarantine_files",
            "Files of rows ClickHouse refused, in journal/quarantine/",
            registry=r,
        )
        self.quarantine_bytes = Gauge(
            "jobpixel_quarantine_bytes",
            "Bytes of rows ClickHouse refused, in journal/quarantine/",
            registry=r,
        )

        # door: the front door's refusals
        self.rate_limited = Counter(
            "jobpixel_rate_limited",
            "Requests refused with 429, by the limit that refused them (ip, grant)",
            ["reason"],
            registry=r,
        )
        self._limited = {reason: self.rate_limited.labels(reason) for reason in ("ip", "grant")}
        self.ops_refused = Counter(
            "jobpixel_ops_unauthorized",
            "Requests to /metrics or the full /readyz without the ops token",
            registry=r,
        )

    def limited(self, reason: str) -> None:
        self._limited[reason].inc()

    def drop(self, reason: DropReason, n: int = 1) -> None:
        self._dropped[reason].inc(n)

    def accept(self, site: str, n: int) -> None:
        child = self._accepted.get(site)
        if child is None:
            child = self._accepted[site] = self.accepted.labels(site)
        child.inc(n)

    def observe_commit(self, seconds: float, requests: int) -> None:
        self.spool_commit_seconds.observe(seconds)
        self.spool_group_size.observe(requests)

    def render(self) -> bytes:
        return generate_latest(self.registry)
