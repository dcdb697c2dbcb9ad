"""Reports served from the hourly rollup (``report_hourly``, migration 0006) instead of raw events.

The rollup keeps, per site, UTC hour, ad and device (``report_hourly``; ``report_hourly_site`` without the
ad, for queries that neither group nor filter by one), the sets of visitors with a pageview, with any unit
(pageview, apply click, application: the privacy floor's k), with an apply click, with an application, and
the set of pageview event ids (64-bit hashes). A query is served from it when everything it asks can be
answered from those sets exactly as the raw path (:mod:`pixel_server.reports.sql`) answers it:

* metrics: visitors, pageviews, apply_clicks, applications, apply_rate, conversion_rate — not time on
  ad, scroll depth, activity, readers or read rate (they need each pageview's engagement, folded in from
  engagement events that arrive later, so they stay on the raw path);
* dimensions and filters: ad, title, category, location, device and the time buckets — not the source
  fields (the raw path credits an apply event to the visitor's first pageview of the ad *in the range*,
  which no fixed bucket can know), nor browser or os (not in the rollup's key);
* a range of whole UTC hours in a time zone with a whole-hour offset at both ends, so every local day
  and hour is a union of UTC hours — not realtime (the last 30 minutes), nor zones like Asia/Kolkata.

Counting is the same on both paths: ``uniq`` for visitors (exact up to 65,536 distinct visitors per
aggregate, an estimate within about 1 % above — the floor only ever compares small counts), distinct
event ids for pageviews (exact but for 64-bit hash collisions; a replayed event counts once).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence

from pixel_server.core.store import Store
from pixel_server.reports import sql
from pixel_server.reports.query import Filter, Query, Range

METRICS = frozenset(
    {"visitors", "pageviews", "apply_clicks", "applications", "apply_rate", "conversion_rate"}
)

_TZ = sql.TZ
DIMENSION_SQL = {
    "ad": "r.ad_id",
    "title": "a.title",
    "category": "a.category",
    "location": "a.location",
    "device": "r.device",
    "time:hour": f"formatDateTime(r.hour, '%Y-%m-%d %H:00', {_TZ})",
    "time:day": f"toString(toDate(r.hour, {_TZ}))",
    "time:week": f"toString(toMonday(toDate(r.hour, {_TZ})))",
    "time:month": f"toString(toStartOfMonth(toDate(r.hour, {_TZ})))",
}
_AD_META = ("title", "category", "location")

# each state column, and the metrics that read it (visitors and the floor's k are always read)
_STATE_METRICS = {
    "pageviews": ("uniqExactMerge(r.pageviews)", {"pageviews"}),
    "apply_clicks": ("uniqMerge(r.clickers)", {"apply_clicks", "apply_rate"}),
    "applications": ("uniqMerge(r.appliers)", {"applications", "conversion_rate"}),
}


def aggregates(metrics: Sequence[str] | None = None) -> str:
    """The same columns as the raw path's; a state no asked metric reads is not merged (0: never shown).
    Merging the pageview id sets is a third of a rollup query (bench/README.md)."""
    asked = set(METRICS if metrics is None else metrics)
    merged = [f"{expr if asked & used else '0'} AS {name}" for name, (expr, used) in _STATE_METRICS.items()]
    return f"""
    uniqMerge(r.unit_visitors) AS _k,
    uniqMerge(r.visitors) AS visitors,
    {merged[0]},
    NULL AS eng_median,
    NULL AS scroll_mean,
    NULL AS act_mean,
    0 AS readers,
    {merged[1]},
    {merged[2]}
"""


def _whole_hours(rng: Range, tz: str) -> bool:
    zone = zoneinfo.ZoneInfo(tz)
    for t in (rng.start, rng.end):
        if t.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0) != t:
            return False
        offset = t.astimezone(zone).utcoffset() or dt.timedelta()
        if offset % dt.timedelta(hours=1):
            return False
    return True


def serves(q: Query) -> bool:
    """Whether ``q`` can be answered from the rollup with the raw path's numbers."""
    if q.range.realtime or not set(q.metrics) <= METRICS:
        return False
    if any(d not in DIMENSION_SQL for d in (*q.dimensions, *(f.dimension for f in q.filters))):
        return False
    return _whole_hours(q.range, q.timezone)


def breakdown(
    dimensions: Sequence[str],
    filters: Sequence[Filter],
    folded: bool = False,
    metrics: Sequence[str] | None = None,
) -> str:
    """The rollup's twin of :func:`pixel_server.reports.sql.breakdown`: the same columns (the metrics it
    cannot serve as NULL/0, never shown), the same parameters, the same ``(other)`` fold. ``metrics``:
    what the query asks (None: everything); states nothing asked reads are not merged."""
    dims = [f"{DIMENSION_SQL[d]} AS d{i}" for i, d in enumerate(dimensions)] if not folded else []
    select = ", ".join([*dims, aggregates(metrics)])
    where = (
        "r.site_id = {site:String} AND r.hour >= toDateTime({start:DateTime64(3, 'UTC')}) "
        "AND r.hour < toDateTime({end:DateTime64(3, 'UTC')}) AND " + sql.where_sql(filters, DIMENSION_SQL)
    )
    if folded:
        where += f" AND has({{folded:Array(String)}}, {sql.key_expr(dimensions, DIMENSION_SQL)})"
    group = (" GROUP BY " + ", ".join(f"d{i}" for i in range(len(dimensions)))) if dims else ""
    named = {*dimensions, *(f.dimension for f in filters)}
    # without an ad dimension or filter, the per-site table: a few rows per hour instead of one per ad
    source = "${db}.report_hourly AS r" if named & {"ad", *_AD_META} else "${db}.report_hourly_site AS r"
    if named & set(_AD_META):
        meta = (
            "SELECT ad_id, tupleElement(m, 'title') AS title, tupleElement(m, 'category') AS category, "
            "tupleElement(m, 'location') AS location FROM (SELECT ad_id, max(latest) AS m FROM ${db}.ads "
            "WHERE site_id = {site:String} GROUP BY ad_id)"
        )
        source += f" LEFT JOIN ({meta}) AS a ON r.ad_id = a.ad_id"
    return f"SELECT {select} FROM {source} WHERE {where}{group}"


# -- rebuild: after events are deleted (an erasure request), the rollup must forget them too ---------------

_STATES = """
    uniqStateIf(visitor_id, name = 'pageview') AS visitors,
    uniqState(visitor_id) AS unit_visitors,
    uniqExactStateIf(cityHash64(event_id), name = 'pageview') AS pageviews,
    uniqStateIf(visitor_id, name = 'apply_click') AS clickers,
    uniqStateIf(visitor_id, name = 'apply_complete') AS appliers
"""
TABLES = {"report_hourly": ("ad_id", "device"), "report_hourly_site": ("device",)}


def rebuild(store: Store, site_id: str, start: dt.datetime, end: dt.datetime) -> None:
    """Recompute the rollup rows of ``site_id`` for the UTC hours that overlap [start, end) from the events
    now stored (the same states as migration 0006 and its views). A state cannot lose one visitor, so
    whoever deletes events (erasure, ``ALTER TABLE events DELETE``) calls this for the hours they were in.
    Safe while events arrive: every state is idempotent, so an insert the view feeds during the rebuild
    is at worst counted into the same set twice."""
    first = start.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    last = end.astimezone(dt.UTC)
    if last.replace(minute=0, second=0, microsecond=0) != last:
        last = last.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    params = {
        "site": site_id,
        "start": first.strftime("%Y-%m-%d %H:%M:%S"),
        "end": last.strftime("%Y-%m-%d %H:%M:%S"),
    }
    cluster = getattr(store, "cluster", None)
    for table, keys in TABLES.items():
        local = f"{table}_local ON CLUSTER {cluster}" if cluster else table
        store.execute(
            f"ALTER TABLE ${{db}}.{local} DELETE WHERE site_id = {{site:String}} "
            "AND hour >= toDateTime({start:String}, 'UTC') AND hour < toDateTime({end:String}, 'UTC') "
            "SETTINGS mutations_sync = 2",
            params,
        )
        key = ", ".join(keys)
        store.execute(
            f"INSERT INTO ${{db}}.{table} SELECT site_id, toDateTime(toStartOfHour(ts), 'UTC') AS hour, "
            f"{key}, retention_days, {_STATES} FROM ${{db}}.events "
            "WHERE site_id = {site:String} AND name IN ('pageview', 'apply_click', 'apply_complete') "
            "AND ts >= toDateTime64({start:String}, 3, 'UTC') AND ts < toDateTime64({end:String}, 3, 'UTC') "
            f"GROUP BY site_id, hour, {key}, retention_days",
            params,
        )
