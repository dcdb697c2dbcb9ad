"""One HTTP request to a channel, classified for the outbox.

- 2xx → ``ok`` (the channel may still refuse single events inside it: :meth:`Channel.results`);
- a timeout, a connection error, 429 or 5xx → ``retry`` (exponential backoff with jitter; a
  ``Retry-After`` in seconds is honoured up to the cap);
- any other status (4xx, 3xx: redirects are not followed) → ``final``, keeping the channel's message.

Per channel, at most ``concurrency`` requests are in flight and at most ``rate_per_s`` start per
second (``[forwarding.limits.<channel>]``).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Literal

import httpx

from pixel_server.core.settings import Forwarding
from pixel_server.forwarding.base import Channel, OutRequest, clip, with_base

MESSAGE_MAX = 1000


@dataclass(frozen=True)
class Outcome:
    kind: Literal["ok", "retry", "final"]
    status: int  # HTTP status; 0 when no answer came
    message: str
    per_event: tuple[str | None, ...] = ()  # ok: the channel's error per event, None = accepted
    retry_after: float | None = None


def backoff(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential with "equal jitter": half fixed, half random, so retries of a batch spread out."""
    delay = float(min(cap, base * 2.0 ** max(0, attempts - 1)))
    return delay / 2 + float(rng.uniform(0, delay / 2))


class _Limiter:
    """A semaphore for concurrency and a token bucket for the request rate."""

    def __init__(self, concurrency: int, rate_per_s: float) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.rate = rate_per_s
        self.capacity = float(concurrency)
        self.tokens = float(concurrency)
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class Sender:
    def __init__(self, forwarding: Forwarding, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.forwarding = forwarding
        self.client = httpx.AsyncClient(
            transport=transport,
            timeout=forwarding.timeout_s,
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: requests go where the settings say
        )
        self._limiters: dict[str, _Limiter] = {}

    def prepare(self, channel: Channel, request: OutRequest) -> OutRequest:
        """Apply ``[forwarding.endpoints]`` (scheme and host replaced, path and query kept)."""
        base = self.forwarding.endpoints.get(channel.name)
        if not base:
            return request
        return OutRequest(request.method, with_base(request.url, base), request.headers, request.content)

    async def send(self, channel: Channel, request: OutRequest, n: int) -> Outcome:
        limiter = self._limiters.get(channel.name)
        if limiter is None:
            limits = self.forwarding.limits_for(channel.name)
            limiter = self._limiters[channel.name] = _Limiter(limits.concurrency, limits.rate_per_s)
        request = self.prepare(channel, request)
        async with limiter.slots:
            await limiter.take()
            try:
                response = await self.client.request(
                    request.method, request.url, headers=dict(request.headers), content=request.content
                )
            except httpx.TimeoutException as exc:
                return Outcome("retry", 0, f"timeout: {type(exc).__name__}")
            except httpx.TransportError as exc:
                return Outcome("retry", 0, f"connection error: {type(exc).__name__}: {exc}")
        return classify(channel, response, n)

    async def aclose(self) -> None:
        await self.client.aclose()


def classify(channel: Channel, response: httpx.Response, n: int) -> Outcome:
    status = response.status_code
    message = clip(response.text.strip(), MESSAGE_MAX)
    if 200 <= status < 300:
        return Outcome("ok", status, message, tuple(channel.results(status, response.content, n)))
    if status == 429 or status >= 500:
        return Outcome("retry", status, message, retry_after=_retry_after(response))
    return Outcome("final", status, message)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None
