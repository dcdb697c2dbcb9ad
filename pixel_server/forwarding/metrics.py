"""Forwarding metrics per channel, registered on the app's registry."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ForwardMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.queued = Counter(
            "jobpixel_forward_queued", "Deliveries queued in the outbox", ["channel"], registry=r
        )
        self.sent = Counter("jobpixel_forward_sent", "Deliveries a channel accepted", ["channel"], registry=r)
        self.retried = Counter(
            "jobpixel_forward_retried", "Delivery attempts that will be retried", ["channel"], registry=r
        )
        self.dropped = Counter(
            "jobpixel_forward_dropped",
            "Deliveries ended without success, by reason (failed_final, too_old, withdrawn)",
            ["channel", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "jobpixel_forward_latency_seconds",
            "From the event (server time) to the channel's acceptance",
            ["channel"],
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
            registry=r,
        )
        self.depth = Gauge("jobpixel_forward_outbox_depth", "Deliveries waiting in the outbox", registry=r)
        self.oldest = Gauge(
            "jobpixel_forward_outbox_oldest_seconds", "Age of the oldest undelivered event", registry=r
        )
        self.registry = r
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, kept: labels() takes a lock and builds a key on every call."""
        key = (id(metric), labels)
        got = self._children.get(key)
        if got is None:
            got = self._children[key] = metric.labels(*labels)
        return got

    def count(self, counter: Any, channel: str, n: int = 1) -> None:
        if n:
            self.child(counter, channel).inc(n)

    def drop(self, channel: str, reason: str, n: int = 1) -> None:
        if n:
            self.child(self.dropped, channel, reason).inc(n)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (tests, /readyz)."""
        got = self.registry.get_sample_value(name, labels)
        return float(got) if got is not None else 0.0
