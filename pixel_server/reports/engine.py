"""Run a report: SQL through the store, the privacy floor, order and limit, the response body.

Every endpoint (``/api/v1/query``, ``/funnel``, ``/consent-rates``, CSV, the dashboard) comes through
here, and nothing here returns a visitor id, an event id or a URL.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pixel_server.core.settings import Site
from pixel_server.core.store import Store
from pixel_server.reports import rollup, sql
from pixel_server.reports.floor import OTHER, Cell, shown, split
from pixel_server.reports.query import TIME_DIMENSIONS, Filter, Query, Range

# engagement events arrive after their pageview: look this far past the range's end for them
ENGAGEMENT_GRACE = dt.timedelta(hours=6)
FUNNEL_STEPS = ("view", "read", "apply_click", "application")
# Serve what the hourly rollup can answer from it (reports/rollup.py); the bench and the tests switch it
# off to compare with the raw path.
USE_ROLLUP = True


@dataclass(frozen=True)
class Report:
    results: list[dict[str, Any]]
    meta: dict[str, Any]
    query: dict[str, Any]
    columns: tuple[str, ...]  # CSV header: dimensions then metrics

    def body(self) -> dict[str, Any]:
        return {"results": self.results, "meta": self.meta, "query": self.query}


def _ch(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def range_params(site: Site, rng: Range) -> dict[str, Any]:
    return {
        "site": site.id,
        "tz": site.timezone,
        "start": _ch(rng.start),
        "end": _ch(rng.end),
        "end_ext": _ch(rng.end + ENGAGEMENT_GRACE),
    }


def _num(x: Any) -> float | None:
    if x is None:
        return None
    f = float(x)
    return None if math.isnan(f) or math.isinf(f) else f


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def metric_values(values: dict[str, Any], metrics: Sequence[str]) -> list[Any]:
    visitors = int(values["visitors"])
    pageviews = int(values["pageviews"])
    readers = int(values["readers"])
    clicks = int(values["apply_clicks"])
    apps = int(values["applications"])
    eng, scroll, act = (_num(values[c]) for c in ("eng_median", "scroll_mean", "act_mean"))
    table: dict[str, Any] = {
        "visitors": visitors,
        "pageviews": pageviews,
        "time_on_ad": round(eng / 1000, 1) if pageviews and eng is not None else None,
        "scroll_depth": round(scroll, 1) if pageviews and scroll is not None else None,
        "activity": round(act, 2) if pageviews and act is not None else None,
        "readers": readers,
        "read_rate": _rate(readers, visitors),
        "apply_clicks": clicks,
        "applications": apps,
        "apply_rate": _rate(clicks, visitors),
        "conversion_rate": _rate(apps, visitors),
    }
    return [table[m] for m in metrics]


def _cells(rows: list[dict[str, Any]], ndims: int) -> list[Cell]:
    return [Cell(tuple(str(r[f"d{i}"]) for i in range(ndims)), int(r["_k"]), r) for r in rows]


def _sort(
    results: list[dict[str, Any]],
    order: Sequence[tuple[str, str]],
    metrics: Sequence[str],
    dims: Sequence[str],
) -> None:
    """Stable sorts, last key first; nulls last either way; the (other) row always last."""
    for name, direction in reversed(order):
        part, i = ("metrics", metrics.index(name)) if name in metrics else ("dimensions", dims.index(name))
        desc = direction == "desc"

        def key(r: dict[str, Any], part: str = part, i: int = i, desc: bool = desc) -> tuple[bool, Any]:
            v = r[part][i]
            return (v is None) != desc, v if v is not None else 0

        results.sort(key=key, reverse=desc)
    results.sort(key=lambda r: bool(r["dimensions"]) and r["dimensions"][0] == OTHER)


def _params(site: Site, q: Query) -> dict[str, Any]:
    return {**range_params(site, q.range), **sql.filter_params(q.filters)}


def run_query(store: Store, site: Site, q: Query) -> Report:
    params = _params(site, q)
    from_rollup = USE_ROLLUP and rollup.serves(q)
    breakdown = rollup.breakdown if from_rollup else sql.breakdown
    rows = store.query(breakdown(q.dimensions, q.filters, metrics=q.metrics), params)
    return _report(store, site, q, rows, params, from_rollup)


def run_queries(store: Store, site: Site, queries: Sequence[Query]) -> list[Report]:
    """Several queries at once, each answered exactly as :func:`run_query` answers it. Those the rollup
    does not serve and that share a range and filters are one statement (``sql.grouping_sets``, with
    what the most demanding of them needs): the units are built, attributed and joined once for all of
    them instead of once each (measured: also when only some need each pageview's engagement, one
    statement for the site page's four raw tables beat two, 2026-12-07). The privacy floor and its
    "(other)" query then run per query, as in :func:`run_query`."""
    out: dict[int, Report] = {}
    batches: dict[tuple[Range, tuple[Filter, ...]], list[int]] = {}
    for i, q in enumerate(queries):
        if USE_ROLLUP and rollup.serves(q):
            out[i] = run_query(store, site, q)
        else:
            batches.setdefault((q.range, tuple(q.filters)), []).append(i)
    for idxs in batches.values():
        if len(idxs) == 1:
            out[idxs[0]] = run_query(store, site, queries[idxs[0]])
            continue
        first = queries[idxs[0]]
        params = _params(site, first)
        sets = [queries[i].dimensions for i in idxs]
        metrics = list(dict.fromkeys(m for i in idxs for m in queries[i].metrics))
        rows = store.query(sql.grouping_sets(sets, first.filters, metrics), params)
        for i, part in zip(idxs, sql.split_sets(rows, sets), strict=True):
            out[i] = _report(store, site, queries[i], part, params, False)
    return [out[i] for i in range(len(queries))]


def _report(
    store: Store, site: Site, q: Query, rows: list[dict[str, Any]], params: dict[str, Any], from_rollup: bool
) -> Report:
    """The floor (and its "(other)" query), order, limit and meta over a breakdown's rows."""
    breakdown = rollup.breakdown if from_rollup else sql.breakdown
    k = site.k_floor
    cells = _cells(rows, len(q.dimensions))
    results: list[dict[str, Any]] = []
    folded_n = 0
    other_shown = False
    if not q.dimensions:
        cell = cells[0] if cells else None
        values = metric_values(cell.values, q.metrics) if shown(cell, k) and cell else [None] * len(q.metrics)
        results.append({"dimensions": [], "metrics": values})
    else:
        visible, folded = split(cells, k)
        folded_n = len(folded)
        for c in visible:
            results.append({"dimensions": list(c.key), "metrics": metric_values(c.values, q.metrics)})
        _sort(results, q.order_by, q.metrics, q.dimensions)
        if folded:
            keys = [sql.KEY_SEP.join(c.key) for c in folded]
            other = store.query(
                breakdown(q.dimensions, q.filters, folded=True, metrics=q.metrics),
                {**params, "folded": sql.array_param(keys)},
            )
            ocell = _cells(other, 0)[0] if other else None
            if ocell is not None and shown(ocell, k):
                other_shown = True
                results.append(
                    {
                        "dimensions": [OTHER] * len(q.dimensions),
                        "metrics": metric_values(ocell.values, q.metrics),
                    }
                )
    total_rows = len(results)
    results = results[: q.limit]
    meta: dict[str, Any] = {
        "k_floor": k,
        "folded_rows": folded_n,
        "other_row": other_shown,
        "total_rows": total_rows,
        "timezone": site.timezone,
        "rollup": from_rollup,
    }
    time_dim = next((d for d in q.dimensions if d in TIME_DIMENSIONS), None)
    if time_dim is not None:
        meta["time_labels"] = time_labels(time_dim, q.range, site.timezone)
    return Report(results, meta, q.shown(), (*q.dimensions, *q.metrics))


def time_labels(dim: str, rng: Range, tz: str) -> list[str]:
    """Every bucket of the range, empty ones included (the chart fills them with zero)."""
    import zoneinfo

    if dim == "time:hour":
        zone = zoneinfo.ZoneInfo(tz)
        t = rng.start.astimezone(zone).replace(minute=0, second=0, microsecond=0)
        out = []
        while t < rng.end:
            out.append(t.strftime("%Y-%m-%d %H:00"))
            t = (t.astimezone(dt.UTC) + dt.timedelta(hours=1)).astimezone(zone)
        return out
    days = [rng.first_day + dt.timedelta(days=i) for i in range((rng.last_day - rng.first_day).days + 1)]
    if dim == "time:day":
        return [d.isoformat() for d in days]
    if dim == "time:week":
        return sorted({(d - dt.timedelta(days=d.weekday())).isoformat() for d in days})
    return sorted({d.replace(day=1).isoformat() for d in days})


def run_funnel(
    store: Store, site: Site, rng: Range, filters: tuple[Filter, ...], shown_query: dict[str, Any]
) -> Report:
    params = {**range_params(site, rng), **sql.filter_params(filters)}
    rows = store.query(sql.funnel(filters), params)
    counts = [int(rows[0][f"s{i + 1}"]) if rows else 0 for i in range(len(FUNNEL_STEPS))]
    k = site.k_floor
    visible: list[int | None] = [c if c >= k else None for c in counts]
    results = []
    first = visible[0]
    prev: int | None = None
    for i, (label, v) in enumerate(zip(FUNNEL_STEPS, visible, strict=True)):
        if i == 0:
            dropoff, dropoff_pct, step_rate = (
                (0 if v is not None else None),
                (0.0 if v is not None else None),
                (100.0 if v is not None else None),
            )
        else:
            ok = v is not None and prev is not None
            dropoff = (prev - v) if ok and prev is not None and v is not None else None
            dropoff_pct = _rate(dropoff, prev) if dropoff is not None and prev else None
            step_rate = _rate(v, prev) if ok and prev and v is not None else None
        results.append(
            {
                "dimensions": [label],
                "metrics": [
                    v,
                    _rate(v, first) if v is not None and first else None,
                    step_rate,
                    dropoff,
                    dropoff_pct,
                ],
            }
        )
        prev = v
    meta = {"k_floor": k, "suppressed_steps": sum(1 for v in visible if v is None), "timezone": site.timezone}
    columns = ("step", "visitors", "conversion_rate", "conversion_rate_step", "dropoff", "dropoff_percentage")
    return Report(results, meta, shown_query, columns)


def run_consent_rates(
    store: Store, site: Site, rng: Range, dims: tuple[str, ...], shown_query: dict[str, Any]
) -> Report:
    params = range_params(site, rng)
    rows = store.query(sql.consent_rates(dims), params)
    k = site.k_floor
    cells = _cells(rows, len(dims))

    def values(c: Cell) -> list[Any]:
        choices, granted = int(c.values["choices"]), int(c.values["granted"])
        return [choices, granted, _rate(granted, choices)]

    results: list[dict[str, Any]] = []
    folded_n = 0
    if not dims:
        cell = cells[0] if cells else None
        results.append({"dimensions": [], "metrics": values(cell) if cell and shown(cell, k) else [None] * 3})
    else:
        visible, folded = split(cells, k)
        folded_n = len(folded)
        results = [
            {"dimensions": list(c.key), "metrics": values(c)} for c in sorted(visible, key=lambda c: c.key)
        ]
        if folded:
            keys = [sql.KEY_SEP.join(c.key) for c in folded]
            other = store.query(
                sql.consent_rates(dims, folded=True), {**params, "folded": sql.array_param(keys)}
            )
            ocell = _cells(other, 0)[0] if other else None
            if ocell is not None and shown(ocell, k):
                results.append({"dimensions": [OTHER] * len(dims), "metrics": values(ocell)})
    meta = {"k_floor": k, "folded_rows": folded_n, "timezone": site.timezone, "unit": "distinct consent ids"}
    return Report(results, meta, shown_query, (*dims, "choices", "granted", "rate"))
