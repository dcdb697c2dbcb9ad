"""The outbox: a consumer of the journal (cursor ``"outbox"``) that delivers to the ad channels.

One pass (:meth:`Outbox.run_once`):

1. **pump**: read each pending journal segment's ``events`` rows; each marketing-consented row with
   a consent id becomes one delivery per server-enabled channel of its site that forwards the event's
   name; the deliveries are fsynced in the outbox file (:mod:`.store`), then the segment is committed.
   So the journal never waits for a channel, and a crash between the two re-reads the segment and the
   file's keys stop a second queueing.
2. **deliver**: for every due delivery, the consent is checked now (the grant must still stand:
   ``Revocations.is_revoked`` → ``withdrawn``, no request) and its age against the channel's limit less
   :data:`AGE_MARGIN_S` (→ ``too_old``, no request; so a stale event never rides in a Meta batch).
   The rest are grouped by channel, site and batch key, cut at the channel's batch limit, and sent.
3. **log**: final outcomes are fsynced in the outbox file first, then written to the delivery log;
   rows not yet logged are written again after a restart (the table collapses duplicates).

Retries (timeouts, connection errors, 429, 5xx) back off exponentially with jitter, kept in the file,
so they continue after a restart until success, a final answer, or the channel's age limit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson

from pixel_server.core.settings import ForwardTarget, Settings
from pixel_server.forwarding import registry
from pixel_server.forwarding.base import JOB_KEYS, Channel, Event, Options, Unmappable, clip
from pixel_server.forwarding.deliverylog import DeliveryLog, JournalDeliveryLog, Status
from pixel_server.forwarding.metrics import ForwardMetrics
from pixel_server.forwarding.ports import GrantRef, JournalCursor, JournalWithCursors, RevocationCheck
from pixel_server.forwarding.sender import Outcome, Sender, backoff
from pixel_server.forwarding.store import Delivery, OutboxStore, delivery_key

log = logging.getLogger("jobpixel.forwarding")

CONSUMER = "outbox"  # the journal consumer name
AGE_MARGIN_S = 600.0  # an event is too old this long before the channel's limit: it must arrive in time
IDLE_S = 1.0
PASS_S = 2.0  # a pass sends at most about this many seconds' worth of a channel's rate limit
ADS_CACHE_MAX = 100_000
# (site, ad id) -> the ad's job metadata ({title, category, location, employer}); the reports branch keeps
# one row per ad (0003 `ads`): an in-memory lookup over it, never a query per event on the loop.
AdLookup = Callable[[str, str], Mapping[str, Any]]


class Outbox:
    def __init__(
        self,
        settings: Settings,
        cursor: JournalCursor[Any],
        revocations: RevocationCheck,
        delivery_log: DeliveryLog,
        *,
        metrics: ForwardMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        fsync: bool = True,
        directory: Path | None = None,
        ads: AdLookup | None = None,
    ) -> None:
        self.settings = settings
        self.fwd = settings.forwarding
        self.cursor = cursor
        self.revocations = revocations
        self.delivery_log = delivery_log
        self.metrics = metrics if metrics is not None else ForwardMetrics()
        self.sender = Sender(self.fwd, transport)
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self.store = OutboxStore(directory or settings.data_dir / "outbox", fsync=fsync)
        self.ads = ads
        self._ads: dict[tuple[str, str], dict[str, str]] = {}
        self.options = Options(self.fwd.debug, self.fwd.meta_api_version, self.fwd.linkedin_version)
        self._wake = asyncio.Event()
        self._finishing: list[tuple[list[tuple[Delivery, dict[str, Any]]], float, asyncio.Future[None]]] = []
        self._finisher: asyncio.Task[None] | None = None
        self._log_lock = asyncio.Lock()  # one delivery-log flush at a time (the loop's, stop()'s)
        self._task: asyncio.Task[None] | None = None
        self._opened = False

    # -- lifecycle -----------------------------------------------------------------------------------
    async def open(self) -> None:
        if not self._opened:
            await asyncio.to_thread(self.store.open, self.clock())
            self._opened = True
            self._gauges()

    async def start(self) -> None:
        await self.open()
        self._task = asyncio.create_task(self._run(), name="jobpixel-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._finisher is not None:  # channels' answers already in: make them durable first
            with contextlib.suppress(Exception):
                await self._finisher
        if self._opened:
            with contextlib.suppress(Exception):  # what is not logged now is logged at the next start
                await self.flush_log()
        await self.sender.aclose()
        self.store.close()

    def nudge(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or an I/O error must not end delivery for good
                log.exception("outbox pass failed")
            wait = IDLE_S
            due = [d.next_at for d in self.store.pending()]
            if due:
                wait = max(0.01, min(IDLE_S, min(due) - self.clock()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def run_once(self) -> int:
        """Pump the journal, deliver what is due, write the delivery log. Returns requests made."""
        await self.open()
        await self.pump()
        made = await self.deliver_due()
        await self.flush_log()
        self._gauges()
        return made

    # -- 1. journal → outbox -------------------------------------------------------------------------
    async def pump(self) -> int:
        queued = 0
        for segment in self.cursor.pending():
            rows, ads = await asyncio.to_thread(_read, segment)
            self._learn_ads(ads)
            await self._fetch_ads(rows)
            deliveries, finals = self._plan(rows)
            new = await asyncio.to_thread(self.store.enqueue, deliveries)
            for channel, n in collections.Counter(d.channel for d in new).items():
                self.metrics.count(self.metrics.queued, channel, n)
            queued += len(new)
            if finals:
                new_keys = {d.key for d in new}
                await self._finish([(d, st, msg) for d, st, msg in finals if d.key in new_keys])
            await asyncio.to_thread(self.cursor.commit, segment)  # fsyncs: off the loop
        return queued

    def _plan(
        self, rows: Iterable[Mapping[str, Any]]
    ) -> tuple[list[Delivery], list[tuple[Delivery, Status, str]]]:
        """Deliveries to queue, and those already final (unmappable) to log at once."""
        now = self.clock()
        out: list[Delivery] = []
        finals: list[tuple[Delivery, Status, str]] = []
        for row in rows:
            event = Event.from_row(row)
            # Only under a marketing grant we can trace: no consent id, no forwarding.
            if not (event.marketing and event.consent_id and event.choice_id and event.event_id):
                continue
            if not event.job and event.ad_id:
                # apply events carry no job metadata: the ad's, as the pageviews described it
                job = self._ads.get((event.site, event.ad_id))
                if job:
                    event = replace(event, job=job)
            for name, target in self.fwd.targets.get(event.site, {}).items():
                channel = registry.load(name)
                if not channel.server_side or event.name not in channel.events:
                    continue
                d = Delivery(delivery_key(name, event.site, event.event_id), name, event, now)
                out.append(d)
                try:
                    channel.check(event, target)
                except Unmappable as exc:
                    finals.append((d, "failed_final", str(exc)))
        return out, finals

    def _learn_ads(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """The ``ads`` sightings journaled with the events (put_ad): the newest metadata per ad."""
        for row in rows:
            latest = row.get("latest")
            site, ad = row.get("site_id"), row.get("ad_id")
            if isinstance(latest, Mapping) and isinstance(site, str) and isinstance(ad, str) and ad:
                job = _job(latest)
                if job:
                    if len(self._ads) >= ADS_CACHE_MAX:
                        self._ads.clear()
                    self._ads[(site, ad)] = job

    async def _fetch_ads(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Ads not seen in the journal since start: asked of :attr:`ads` (the store) off the loop."""
        if self.ads is None:
            return
        missing = {
            (row["site_id"], row["ad_id"])
            for row in rows
            if row.get("marketing") in (1, True)
            and not row.get("job")
            and isinstance(row.get("site_id"), str)
            and isinstance(row.get("ad_id"), str)
            and row["ad_id"]
            and (row["site_id"], row["ad_id"]) not in self._ads
        }
        if not missing:
            return
        lookup = self.ads
        many = getattr(lookup, "many", None)  # one query for all (StoreAds), else one call per ad
        if many is not None:
            found: Mapping[tuple[str, str], Mapping[str, Any]] = await asyncio.to_thread(many, missing)
        else:
            found = {key: await asyncio.to_thread(lookup, *key) for key in missing}
        for key, meta in found.items():
            if job := _job(meta):
                self._ads[key] = job

    # -- 2. outbox → channels ------------------------------------------------------------------------
    async def deliver_due(self) -> int:
        now = self.clock()
        due = [d for d in self.store.pending() if d.next_at <= now]
        ready: list[Delivery] = []
        finals: list[tuple[Delivery, Status, str]] = []
        # one judgement per grant per pass: an event's deliveries (one per channel) share its grant
        verdicts: dict[tuple[str, str, str, float], tuple[bool, bool]] = {}
        prefetch = getattr(self.revocations, "prefetch", None)  # a remote index (forwarding/child.py)
        if prefetch is not None:
            refs = {
                (e.consent_id, e.choice_id, e.site, e.grant_issued_at): GrantRef(
                    e.consent_id, e.choice_id, e.site, e.grant_issued_at
                )
                for e in (d.event for d in due)
            }
            await asyncio.to_thread(prefetch, list(refs.values()))
        for d in due:
            if d.channel not in registry.CHANNELS or d.channel not in self.fwd.targets.get(d.event.site, {}):
                # queued before a restart whose settings no longer forward this channel for this site
                finals.append((d, "failed_final", "channel no longer configured for this site (secret_env)"))
                continue
            channel = registry.load(d.channel)
            e = d.event
            grant = (e.consent_id, e.choice_id, e.site, e.grant_issued_at)
            verdict = verdicts.get(grant)
            if verdict is None:
                judgeable = self._judgeable(e)
                verdict = verdicts[grant] = (judgeable, judgeable and self._revoked(e))
            judgeable, revoked = verdict
            if revoked:
                finals.append((d, "withdrawn", "consent withdrawn before delivery"))
            elif now - d.event.ts > channel.max_age_s - AGE_MARGIN_S:
                finals.append(
                    (d, "too_old", f"older than {channel.name}'s limit of {channel.max_age_s:.0f} s")
                )
            elif not judgeable:
                continue  # the consent log is not loaded yet (store away at start): wait, never guess
            else:
                ready.append(d)
        await self._finish(finals)
        groups: dict[tuple[str, str, str], list[Delivery]] = {}
        for d in sorted(ready, key=lambda d: d.event.ts):
            channel = registry.load(d.channel)
            groups.setdefault((d.channel, d.event.site, channel.batch_key(d.event)), []).append(d)
        batches: list[tuple[str, str, list[Delivery]]] = []
        per_channel: dict[str, int] = {}
        for (name, site, _), ds in groups.items():
            limit = registry.load(name).batch_limit
            for i in range(0, len(ds), limit):
                # a pass waits for its slowest channel: bounded, so the journal is read again soon;
                # what is left stays due and goes in the next pass
                if per_channel.get(name, 0) >= self._pass_batches(name):
                    break
                per_channel[name] = per_channel.get(name, 0) + 1
                batches.append((name, site, ds[i : i + limit]))
        await asyncio.gather(*(self._send(name, site, batch) for name, site, batch in batches))
        return len(batches)

    def _pass_batches(self, channel: str) -> int:
        limits = self.fwd.limits_for(channel)
        return max(limits.concurrency, int(limits.rate_per_s * PASS_S))

    def _judgeable(self, event: Event) -> bool:
        can_judge = getattr(self.revocations, "can_judge", None)
        if can_judge is None:
            return True
        return bool(can_judge(GrantRef(event.consent_id, event.choice_id, event.site, event.grant_issued_at)))

    def _revoked(self, event: Event) -> bool:
        grant = GrantRef(event.consent_id, event.choice_id, event.site, event.grant_issued_at)
        return bool(self.revocations.is_revoked(grant))

    async def _send(self, name: str, site: str, batch: list[Delivery]) -> None:
        channel = registry.load(name)
        target = self.fwd.targets[site][name]
        request = channel.build([d.event for d in batch], target, self.options)
        started = round(self.clock(), 3)
        outcome = await self.sender.send(channel, request, len(batch))
        now = self.clock()
        for d in batch:
            d.attempts += 1
            d.first_attempt = d.first_attempt if d.first_attempt is not None else started
            d.last_attempt = started
            d.http_status = outcome.status
            d.message = _redact(outcome.message, target)
        if outcome.kind == "retry":
            attempts = max(d.attempts for d in batch)
            delay = backoff(attempts, self.fwd.retry_base_s, self.fwd.retry_max_s, self.rng)
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, self.fwd.retry_max_s))
            for d in batch:
                d.next_at = now + delay
            await asyncio.to_thread(self.store.attempted, batch)
            self.metrics.count(self.metrics.retried, name, len(batch))
            log.info(
                "%s: %s, %d deliveries retry in %.1f s", name, d.message or d.http_status, len(batch), delay
            )
            return
        finals: list[tuple[Delivery, Status, str]] = []
        if outcome.kind == "final":
            finals = [(d, "failed_final", d.message) for d in batch]
        else:
            errors = _per_event(outcome, len(batch))
            for d, err in zip(batch, errors, strict=True):
                finals.append(
                    (d, "sent", d.message) if err is None else (d, "failed_final", _redact(err, target))
                )
        await self._finish(finals)

    async def _finish(self, finals: Sequence[tuple[Delivery, Status, str]]) -> None:
        if not finals:
            return
        now = self.clock()
        rows = [(d, self._row(d, status, message, now)) for d, status, message in finals]
        await self._finish_durably(rows, now)
        counts = collections.Counter((d.channel, status) for d, status, _ in finals)
        for d, status, _ in finals:
            if status == "sent":
                self.metrics.child(self.metrics.latency, d.channel).observe(max(0.0, now - d.event.ts))
        for (channel, status), n in counts.items():
            if status == "sent":
                self.metrics.count(self.metrics.sent, channel, n)
            else:
                self.metrics.drop(channel, status, n)

    async def _finish_durably(self, rows: list[tuple[Delivery, dict[str, Any]]], now: float) -> None:
        """Group commit: the batches of a pass that end at about the same time share one fsync of the
        outbox file (as the journal's requests do); each waits until its own records are durable."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._finishing.append((rows, now, fut))
        if self._finisher is None or self._finisher.done():
            self._finisher = asyncio.create_task(self._finish_groups())
        await fut

    async def _finish_groups(self) -> None:
        while self._finishing:
            await asyncio.sleep(0)  # let the batches answered in this loop iteration join the group
            group, self._finishing = self._finishing, []
            rows = [r for g in group for r in g[0]]
            try:
                await asyncio.to_thread(self.store.finish, rows, max(g[1] for g in group))
            except BaseException as exc:
                for *_, f in group:
                    if not f.done():
                        f.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for *_, f in group:
                if not f.done():
                    f.set_result(None)

    def _row(self, d: Delivery, status: Status, message: str, now: float) -> dict[str, Any]:
        e = d.event
        site = self.settings.sites.get(e.site)
        return {
            "channel": d.channel,
            "site_id": e.site,
            "event_id": e.event_id,
            "event_name": e.name,
            "consent_id": e.consent_id,
            "choice_id": e.choice_id,
            "status": status,
            "attempts": d.attempts,
            "first_attempt": d.first_attempt,
            "last_attempt": d.last_attempt,
            "event_ts": e.ts,
            "ts": round(now, 3),
            "http_status": d.http_status,
            "message": clip(message, 1000),
            # proof of what a consent allowed lives as long as the proof of the consent itself
            "retention_days": site.consent_log_days if site is not None else 1095,
        }

    # -- 3. delivery log -----------------------------------------------------------------------------
    async def flush_log(self) -> int:
        """Write the finished deliveries' rows to the delivery log, then mark them logged. One flush at a
        time, and a flush that was started is finished even if its caller is cancelled (stop() cancels
        the loop, then flushes): rows written but not yet marked would be written twice."""
        async with self._log_lock:
            flush = asyncio.ensure_future(self._flush_log())
            try:
                return await asyncio.shield(flush)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await flush
                raise

    async def _flush_log(self) -> int:
        pending = self.store.unlogged()
        if not pending:
            return 0
        try:
            await self.delivery_log.write(list(pending.values()))
        except Exception as exc:  # the store or journal is down: the rows wait in the outbox file
            log.warning("delivery log write failed (%d rows wait): %s", len(pending), exc)
            return 0
        await asyncio.to_thread(self.store.logged, pending.keys())
        return len(pending)

    # -- status --------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For /readyz: outbox depth and the age of the oldest undelivered event."""
        pending = self.store.pending()
        oldest = min((d.event.ts for d in pending), default=None)
        return {
            "depth": len(pending),
            "oldest_age_s": round(self.clock() - oldest, 1) if oldest is not None else None,
        }

    def _gauges(self) -> None:
        st = self.status()
        self.metrics.depth.set(st["depth"])
        self.metrics.oldest.set(st["oldest_age_s"] or 0)


def _read(segment: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A segment's marketing ``events`` rows and its ``ads`` rows (off the loop)."""
    tables, _torn = segment.read()
    return _rows(tables.get("events", b""), marketing_only=True), _rows(tables.get("ads", b""))


# put_rows writes the flag as `"marketing":1` (orjson, no spaces); a quote inside a JSON string is escaped,
# so a line without these bytes is not a marketing row and is never parsed (most rows are not).
_MARKETING = (b'"marketing":1', b'"marketing":true')


def _rows(data: bytes, marketing_only: bool = False) -> list[dict[str, Any]]:
    out = []
    for line in data.splitlines():
        if marketing_only and _MARKETING[0] not in line and _MARKETING[1] not in line:
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # torn lines are cut by Segment.read; anything else is not ours to judge
        if isinstance(row, dict):
            out.append(row)
    return out


def _job(meta: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k in JOB_KEYS if isinstance(v := meta.get(k), str) and v}


def _per_event(outcome: Outcome, n: int) -> Sequence[str | None]:
    return outcome.per_event if len(outcome.per_event) == n else [None] * n


def _redact(message: str, target: ForwardTarget) -> str:
    return message.replace(target.secret, "[secret]") if target.secret else message


def enabled_channels(settings: Settings) -> dict[str, Channel]:
    """The channels some site forwards to server-side."""
    names = {name for site in settings.forwarding.targets.values() for name in site}
    return {name: registry.load(name) for name in sorted(names)}


def outbox_for(
    settings: Settings,
    journal: JournalWithCursors,
    revocations: RevocationCheck,
    metrics: ForwardMetrics,
) -> Outbox | None:
    """The production wiring (for ``create_app`` once the journal has cursors): ``None`` when no site
    forwards anything — then the journal must not list the ``outbox`` consumer either, or its segments
    would wait for it forever. Delivery-log rows go through the journal like every other row."""
    if not settings.forwarding.enabled:
        return None
    return Outbox(
        settings,
        journal.cursor(CONSUMER),
        revocations,
        JournalDeliveryLog(journal),
        metrics=metrics,
    )
