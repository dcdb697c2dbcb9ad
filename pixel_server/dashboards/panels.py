"""What the dashboard pages show, built from the report query layer (and so under the same privacy
floor as the API). The CSV exports use the same table definitions, so a download equals the page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pixel_server.core.settings import Site
from pixel_server.core.store import Store
from pixel_server.reports import engine
from pixel_server.reports.floor import OTHER
from pixel_server.reports.query import BadQuery, Query, parse_filters, parse_query, parse_range

RANGE_KEYS = ("today", "7d", "30d", "month", "12mo")
TILES = (
    "visitors",
    "pageviews",
    "time_on_ad",
    "read_rate",
    "apply_clicks",
    "applications",
    "apply_rate",
    "conversion_rate",
)
AD_METRICS = (
    "visitors",
    "pageviews",
    "time_on_ad",
    "read_rate",
    "apply_clicks",
    "applications",
    "conversion_rate",
)
BREAKDOWN_METRICS = ("visitors", "apply_clicks", "applications", "conversion_rate")

# table name → (dimensions, metrics); "ads" only on the site page
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ads": (("ad", "title", "category", "location"), AD_METRICS),
    "sources": (("source",), BREAKDOWN_METRICS),
    "campaigns": (("utm_campaign",), BREAKDOWN_METRICS),
    "devices": (("device",), BREAKDOWN_METRICS),
}
EXPORTS = (*TABLES, "daily", "consent", "funnel")


@dataclass(frozen=True)
class PageRange:
    key: str  # today, 7d, …, custom
    date_range: str | list[str]
    first: str
    last: str
    error: str | None = None

    def query_string(self) -> str:
        if self.key == "custom":
            return f"range=custom&from={self.first}&to={self.last}"
        return f"range={self.key}"


def page_range(params: Mapping[str, str], tz: str) -> PageRange:
    key = params.get("range", "30d")
    value: str | list[str] = [params.get("from", ""), params.get("to", "")] if key == "custom" else key
    try:
        rng = parse_range(value, tz)
    except BadQuery as exc:
        rng = parse_range("30d", tz)
        return PageRange("30d", "30d", rng.first_day.isoformat(), rng.last_day.isoformat(), exc.detail)
    return PageRange(key, value, rng.first_day.isoformat(), rng.last_day.isoformat())


def _time_dim(pr: PageRange) -> str:
    if pr.key == "today" or pr.first == pr.last:
        return "time:hour"
    days = (dt.date.fromisoformat(pr.last) - dt.date.fromisoformat(pr.first)).days + 1
    return "time:day" if days <= 92 else ("time:week" if days <= 400 else "time:month")


def _ad_filter(ad: str | None) -> list[list[Any]]:
    return [["is", "ad", [ad]]] if ad is not None else []


def table_query(
    site: Site,
    pr: PageRange,
    name: str,
    ad: str | None = None,
    sort: str | None = None,
    desc: bool = True,
) -> Query:
    dims, metrics = TABLES[name]
    order = [[sort, "desc" if desc else "asc"]] if sort in (*dims, *metrics) else None
    body: dict[str, Any] = {
        "site": site.id,
        "date_range": pr.date_range,
        "metrics": list(metrics),
        "dimensions": list(dims),
        "filters": _ad_filter(ad),
    }
    if order:
        body["order_by"] = order
    return parse_query(body, site.timezone)


def table(
    store: Store,
    site: Site,
    pr: PageRange,
    name: str,
    ad: str | None = None,
    sort: str | None = None,
    desc: bool = True,
) -> engine.Report:
    return engine.run_query(store, site, table_query(site, pr, name, ad, sort, desc))


def totals_query(site: Site, date_range: str | list[str], ad: str | None = None) -> Query:
    body = {"site": site.id, "date_range": date_range, "metrics": list(TILES), "filters": _ad_filter(ad)}
    return parse_query(body, site.timezone)


def _previous(site: Site, pr: PageRange) -> list[str]:
    rng = parse_range(pr.date_range, site.timezone).previous(site.timezone)
    return [rng.first_day.isoformat(), rng.last_day.isoformat()]


def previous_totals(store: Store, site: Site, pr: PageRange, ad: str | None = None) -> engine.Report:
    return engine.run_query(store, site, totals_query(site, _previous(site, pr), ad))


def tiles(store: Store, site: Site, pr: PageRange, ad: str | None = None) -> list[dict[str, Any]]:
    """The headline numbers against the previous period."""
    current = engine.run_query(store, site, totals_query(site, pr.date_range, ad))
    return compare(current, previous_totals(store, site, pr, ad))


def compare(current: engine.Report, previous: engine.Report) -> list[dict[str, Any]]:
    out = []
    pairs = zip(TILES, current.results[0]["metrics"], previous.results[0]["metrics"], strict=True)
    for name, cur, prev in pairs:
        change = None
        if cur is not None and prev:
            change = round(100.0 * (cur - prev) / prev)
        out.append({"metric": name, "value": cur, "previous": prev, "change": change})
    return out


def series(store: Store, site: Site, pr: PageRange, ad: str | None = None) -> dict[str, Any]:
    """Visitors per bucket, this period and the one before (aligned by position), and its table."""
    dim = _time_dim(pr)
    rng = parse_range(pr.date_range, site.timezone)
    prev = rng.previous(site.timezone)
    out: dict[str, Any] = {"dimension": dim}
    for label, dr in (
        ("current", pr.date_range),
        ("previous", [prev.first_day.isoformat(), prev.last_day.isoformat()]),
    ):
        body = {
            "site": site.id,
            "date_range": dr,
            "metrics": ["visitors", "applications"],
            "dimensions": [dim],
            "filters": _ad_filter(ad),
        }
        report = engine.run_query(store, site, parse_query(body, site.timezone))
        values = {r["dimensions"][0]: r["metrics"] for r in report.results if r["dimensions"][0] != OTHER}
        labels = report.meta["time_labels"]
        out[label] = {
            "labels": labels,
            "visitors": [values.get(t, [None, None])[0] for t in labels],
            "applications": [values.get(t, [None, None])[1] for t in labels],
        }
    return out


def realtime(store: Store, site: Site) -> Any:
    body = {"site": site.id, "date_range": "realtime", "metrics": ["visitors"]}
    return engine.run_query(store, site, parse_query(body, site.timezone)).results[0]["metrics"][0]


def consent(store: Store, site: Site, pr: PageRange, daily: bool = False) -> engine.Report:
    rng = parse_range(pr.date_range, site.timezone)
    dims = ("time:day", "category") if daily else ("category",)
    return engine.run_consent_rates(store, site, rng, dims, {"site": site.id, "date_range": rng.shown()})


def funnel(store: Store, site: Site, pr: PageRange, ad: str | None = None) -> engine.Report:
    rng = parse_range(pr.date_range, site.timezone)
    filters = parse_filters(_ad_filter(ad))
    return engine.run_funnel(store, site, rng, filters, {"site": site.id, "date_range": rng.shown()})


def daily_report(store: Store, site: Site, pr: PageRange, ad: str | None = None) -> engine.Report:
    body = {
        "site": site.id,
        "date_range": pr.date_range,
        "metrics": list(BREAKDOWN_METRICS),
        "dimensions": [_time_dim(pr)],
        "filters": _ad_filter(ad),
    }
    return engine.run_query(store, site, parse_query(body, site.timezone))


def export(store: Store, site: Site, pr: PageRange, name: str, ad: str | None = None) -> engine.Report:
    if name in TABLES:
        return table(store, site, pr, name, ad)
    if name == "daily":
        return daily_report(store, site, pr, ad)
    if name == "consent":
        return consent(store, site, pr, daily=True)
    return funnel(store, site, pr, ad)


def ad_metadata(store: Store, site: Site, ad: str) -> dict[str, Any] | None:
    rows = store.query(
        "SELECT max(latest) AS m, min(first_seen) AS first_seen, max(last_seen) AS last_seen "
        "FROM ${db}.ads WHERE site_id = {site:String} AND ad_id = {ad:String} GROUP BY ad_id",
        {"site": site.id, "ad": ad},
    )
    if not rows:
        return None
    meta = {k: v for k, v in rows[0]["m"].items() if k != "ts"}
    return {**meta, "first_seen": rows[0]["first_seen"][:10], "last_seen": rows[0]["last_seen"][:10]}


# The pages' second lane (see site_panels); two threads: two pages at once still get a lane each.
_LANE = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jobpixel-panels")


@contextmanager
def _abandon_on_error(lane: Future[Any]) -> Iterator[None]:
    """If the page's main statement fails, the page fails (503): drop its lane if it has not started,
    else wait for it, so failing pages never pile up work behind the pool."""
    try:
        yield
    except BaseException:
        if not lane.cancel():
            wait([lane])
        raise


def site_panels(
    store: Store, site: Site, pr: PageRange, sort: str = "visitors", desc: bool = True
) -> dict[str, Any]:
    """Everything the site page shows, in two lanes on chDB's two reader connections: this period's
    totals and the ads, sources and campaigns tables as one statement (``engine.run_queries``: the units
    built and attributed once, not four times), and beside it the smaller queries one after another.
    Measured with bench/reports.py (10M events, 2026-12-07, quiet machine): 581 ms with every panel on
    its own, 357 with the one statement, ~295 with the two lanes. (Every panel on its own, two at a time,
    had gained only 5 % there on 2026-12-02: each of those queries already scans on both cores.)"""
    lane = _LANE.submit(
        lambda: (
            previous_totals(store, site, pr),
            {
                "series": series(store, site, pr),
                "realtime": realtime(store, site),
                "consent": consent(store, site, pr),
            },
        )
    )
    with _abandon_on_error(lane):
        current, ads, sources, campaigns, devices = engine.run_queries(
            store,
            site,
            [
                totals_query(site, pr.date_range),
                table_query(site, pr, "ads", sort=sort, desc=desc),
                table_query(site, pr, "sources"),
                table_query(site, pr, "campaigns"),
                table_query(site, pr, "devices"),  # from the rollup
            ],
        )
    previous, rest = lane.result()
    return {
        "tiles": compare(current, previous),
        **rest,
        "ads": ads,
        "sources": sources,
        "campaigns": campaigns,
        "devices": devices,
    }


def ad_panels(store: Store, site: Site, pr: PageRange, ad: str) -> dict[str, Any]:
    """Everything one ad's page shows, in the same two lanes: its totals and its sources in one
    statement, the rest beside it."""
    lane = _LANE.submit(
        lambda: (
            previous_totals(store, site, pr, ad),
            {
                "series": series(store, site, pr, ad),
                "funnel": funnel(store, site, pr, ad),
                "metadata": ad_metadata(store, site, ad),
            },
        )
    )
    with _abandon_on_error(lane):
        current, sources = engine.run_queries(
            store, site, [totals_query(site, pr.date_range, ad), table_query(site, pr, "sources", ad)]
        )
    previous, rest = lane.result()
    return {"tiles": compare(current, previous), **rest, "sources": sources}
