"""A report request in the shape of Plausible's Stats API v2, parsed and validated.

Every error is a :class:`BadQuery` naming the field (``metrics[2]``, ``filters[0][1]``), answered 400.
Dates are calendar days in the site's time zone; the normalised query echoes them as absolute dates.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

METRICS = (
    "visitors",
    "pageviews",
    "time_on_ad",
    "scroll_depth",
    "activity",
    "readers",
    "read_rate",
    "apply_clicks",
    "applications",
    "apply_rate",
    "conversion_rate",
)
TIME_DIMENSIONS = ("time:hour", "time:day", "time:week", "time:month")
DIMENSIONS = (
    "ad",
    "title",
    "category",
    "location",
    *TIME_DIMENSIONS,
    "source",
    "referrer_domain",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "device",
    "browser",
    "os",
)
FILTER_OPS = ("is", "is_not", "contains")
RANGES = ("today", "7d", "30d", "month", "12mo", "realtime")
REALTIME_MINUTES = 30
MAX_RANGE_DAYS = 731  # two years
EARLIEST, LATEST = dt.date(2000, 1, 1), dt.date(2099, 12, 31)
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
MAX_DIMENSIONS = 4
MAX_FILTER_VALUES = 100
MAX_VALUE_LEN = 200


class BadQuery(Exception):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"error": "invalid", "field": self.field, "detail": self.detail}


@dataclass(frozen=True)
class Range:
    """[start, end) in UTC, plus what the client sees: the local dates (or instants for realtime)."""

    start: dt.datetime
    end: dt.datetime
    first_day: dt.date
    last_day: dt.date
    realtime: bool
    label: str  # the keyword asked for, or "custom"

    def shown(self) -> list[str]:
        if self.realtime:
            return [_iso(self.start), _iso(self.end)]
        return [self.first_day.isoformat(), self.last_day.isoformat()]

    def previous(self, tz: str) -> Range:
        """The period of the same length just before this one (for comparisons)."""
        if self.realtime:
            span = self.end - self.start
            return Range(self.start - span, self.start, self.first_day, self.last_day, True, "previous")
        days = (self.last_day - self.first_day).days + 1
        last = self.first_day - dt.timedelta(days=1)
        return days_range(last - dt.timedelta(days=days - 1), last, tz, "previous")


@dataclass(frozen=True)
class Filter:
    op: str
    dimension: str
    values: tuple[str, ...]

    def shown(self) -> list[Any]:
        return [self.op, self.dimension, list(self.values)]


@dataclass(frozen=True)
class Query:
    site: str
    range: Range
    timezone: str
    metrics: tuple[str, ...]
    dimensions: tuple[str, ...]
    filters: tuple[Filter, ...]
    order_by: tuple[tuple[str, str], ...]
    limit: int

    def shown(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "date_range": self.range.shown(),
            "timezone": self.timezone,
            "metrics": list(self.metrics),
            "dimensions": list(self.dimensions),
            "filters": [f.shown() for f in self.filters],
            "order_by": [list(o) for o in self.order_by],
            "limit": self.limit,
        }


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def days_range(first: dt.date, last: dt.date, tz: str, label: str) -> Range:
    zone = zoneinfo.ZoneInfo(tz)
    start = dt.datetime.combine(first, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    return Range(start, end, first, last, False, label)


def parse_range(value: object, tz: str, now: dt.datetime | None = None, field: str = "date_range") -> Range:
    now = now or dt.datetime.now(dt.UTC)
    today = now.astimezone(zoneinfo.ZoneInfo(tz)).date()
    if isinstance(value, str):
        if value == "realtime":
            start = now - dt.timedelta(minutes=REALTIME_MINUTES)
            return Range(start, now, today, today, True, value)
        if value == "today":
            return days_range(today, today, tz, value)
        if value in ("7d", "30d"):
            n = int(value[:-1])
            return days_range(today - dt.timedelta(days=n - 1), today, tz, value)
        if value == "month":
            return days_range(today.replace(day=1), today, tz, value)
        if value == "12mo":
            y, m = today.year, today.month - 11
            if m <= 0:
                y, m = y - 1, m + 12
            return days_range(dt.date(y, m, 1), today, tz, value)
        raise BadQuery(field, f"must be one of {', '.join(RANGES)} or [from, to] as YYYY-MM-DD")
    if isinstance(value, list) and len(value) == 2:
        dates = []
        for i, v in enumerate(value):
            try:
                if not isinstance(v, str) or len(v) != 10:
                    raise ValueError(v)
                d = dt.date.fromisoformat(v)
            except ValueError:
                raise BadQuery(f"{field}[{i}]", "must be a date like 2026-12-01") from None
            if not EARLIEST <= d <= LATEST:
                raise BadQuery(f"{field}[{i}]", f"must be from {EARLIEST} to {LATEST}")
            dates.append(d)
        first, last = dates
        if last < first:
            raise BadQuery(field, "the end is before the start")
        if (last - first).days + 1 > MAX_RANGE_DAYS:
            raise BadQuery(field, f"longer than two years ({MAX_RANGE_DAYS} days)")
        return days_range(first, last, tz, "custom")
    raise BadQuery(field, f"must be one of {', '.join(RANGES)} or [from, to] as YYYY-MM-DD")


def _str_list(value: object, field: str, allowed: tuple[str, ...], max_len: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise BadQuery(field, "must be a list")
    if len(value) > max_len:
        raise BadQuery(field, f"at most {max_len} entries")
    out: list[str] = []
    for i, v in enumerate(value):
        if not isinstance(v, str) or v not in allowed:
            raise BadQuery(f"{field}[{i}]", f"must be one of {', '.join(allowed)}")
        if v in out:
            raise BadQuery(f"{field}[{i}]", f"{v!r} appears twice")
        out.append(v)
    return tuple(out)


def parse_site(body: object) -> str:
    if not isinstance(body, dict):
        raise BadQuery("body", "must be a JSON object")
    site = body.get("site")
    if not isinstance(site, str) or not site:
        raise BadQuery("site", "required: the site id")
    if len(site) > 64:
        raise BadQuery("site", "longer than 64 characters")
    return site


def only_keys(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in body:
        if key not in allowed:
            raise BadQuery(str(key)[:64], f"unknown field (allowed: {', '.join(allowed)})")


def parse_filters(value: object, dimensions: tuple[str, ...] = DIMENSIONS) -> tuple[Filter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadQuery("filters", "must be a list of [op, dimension, [values]]")
    if len(value) > 20:
        raise BadQuery("filters", "at most 20 filters")
    out = []
    for i, f in enumerate(value):
        field = f"filters[{i}]"
        if not isinstance(f, list) or len(f) != 3:
            raise BadQuery(field, "must be [op, dimension, [values]]")
        op, dim, values = f
        if op not in FILTER_OPS:
            raise BadQuery(f"{field}[0]", f"must be one of {', '.join(FILTER_OPS)}")
        filterable = tuple(d for d in dimensions if d not in TIME_DIMENSIONS)
        if dim not in filterable:
            raise BadQuery(f"{field}[1]", f"must be one of {', '.join(filterable)}")
        if not isinstance(values, list) or not values or len(values) > MAX_FILTER_VALUES:
            raise BadQuery(f"{field}[2]", f"must be a list of 1 to {MAX_FILTER_VALUES} strings")
        for j, v in enumerate(values):
            if not isinstance(v, str) or len(v) > MAX_VALUE_LEN:
                raise BadQuery(f"{field}[2][{j}]", f"must be a string of at most {MAX_VALUE_LEN} characters")
        out.append(Filter(op, dim, tuple(values)))
    return tuple(out)


def parse_limit(value: object) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        raise BadQuery("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    return value


QUERY_KEYS = ("site", "date_range", "metrics", "dimensions", "filters", "order_by", "limit")


def parse_query(body: dict[str, Any], tz: str, now: dt.datetime | None = None) -> Query:
    only_keys(body, QUERY_KEYS)
    rng = parse_range(body.get("date_range", "30d"), tz, now)
    if "metrics" not in body:
        raise BadQuery("metrics", "required: a list of metrics")
    metrics = _str_list(body["metrics"], "metrics", METRICS, len(METRICS))
    if not metrics:
        raise BadQuery("metrics", "list at least one metric")
    dimensions = _str_list(body.get("dimensions", []), "dimensions", DIMENSIONS, MAX_DIMENSIONS)
    times = [d for d in dimensions if d in TIME_DIMENSIONS]
    if len(times) > 1:
        raise BadQuery("dimensions", "at most one time dimension")
    if "time:hour" in dimensions and not (
        rng.realtime or rng.label == "today" or rng.first_day == rng.last_day
    ):
        raise BadQuery("dimensions", "time:hour only with date_range realtime, today or a single day")
    filters = parse_filters(body.get("filters"))
    order_by = _order_by(body.get("order_by"), metrics, dimensions)
    return Query(
        body["site"], rng, tz, metrics, dimensions, filters, order_by, parse_limit(body.get("limit"))
    )


def _order_by(value: object, metrics: tuple[str, ...], dims: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    if value is None:
        times = [d for d in dims if d in TIME_DIMENSIONS]
        if times:
            return ((times[0], "asc"),)
        return ((metrics[0], "desc"),) if dims else ()
    if not isinstance(value, list) or len(value) > 5:
        raise BadQuery("order_by", "must be a list of [metric or dimension, 'asc'|'desc'] (at most 5)")
    out = []
    for i, o in enumerate(value):
        if not isinstance(o, list) or len(o) != 2:
            raise BadQuery(f"order_by[{i}]", "must be [metric or dimension, 'asc'|'desc']")
        name, direction = o
        if name not in metrics and name not in dims:
            raise BadQuery(f"order_by[{i}][0]", "must be one of the query's metrics or dimensions")
        if direction not in ("asc", "desc"):
            raise BadQuery(f"order_by[{i}][1]", "must be 'asc' or 'desc'")
        out.append((str(name), str(direction)))
    return tuple(out)
