"""Report query speed: synthetic events in chDB, every dashboard query for one site over 30 days.

    .venv/bin/python bench/reports.py                 # 10M events (the issue's size)
    .venv/bin/python bench/reports.py --events 1000000 --repeat 5
.venv/bin/python bench/reports.py --visible-only          # /collect → report, real server

Data, made inside ClickHouse from ``numbers()`` (deterministic hashes, so a run is repeatable):
20 sites, ~300 ads per site with a long tail (ad rank ~ u^2.5), 90 days, ~1.5M visitors; the event
mix 53 % pageview, 42 % engagement (one per 4 of 5 pageviews, pointing at it), 3.7 % apply_click,
1.6 % apply_complete; referrers, UTM, devices spread like real traffic; one consent choice per
visitor; one ``ads`` row per ad. Then, for one site over the last 30 days, it times every query the
site page runs (the same functions the page calls, so the privacy floor and its second "(other)"
query are included) and the whole page, ``--repeat`` times each: p50 and p95.

Each query runs twice in the same run: as the server runs it (what the hourly rollup of migration 0006
can answer comes from it, the rest from raw events, ``FINAL``) and with the rollup switched off (every
query on raw events: the baseline). Also, as before, the same breakdowns as one plain GROUP BY over raw
events without ``FINAL`` and without the per-pageview engagement fold. Before the queries, the rollups
are emptied and backfilled as migration 0006 does (timed), then merged like the events. Then the
rollup's size, and
"event → visible": pageviews inserted the way the loader inserts a journal chunk (with a deduplication
token), polled through the report query until they show.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pixel_server.core.settings import Site  # noqa: E402
from pixel_server.dashboards import panels  # noqa: E402
from pixel_server.reports import engine  # noqa: E402
from pixel_server.reports.query import parse_query  # noqa: E402
from pixel_server.storage.base import load_migrations  # noqa: E402
from pixel_server.storage.chdb_store import ChdbStore  # noqa: E402

SITES = 20
ADS_PER_SITE = 300
DAYS = 90
VISITORS = 1_500_000


def uuid_expr(seed_expr: str) -> str:
    return (
        "toUUID(UUIDNumToString(toFixedString(unhex(concat("
        f"leftPad(hex(cityHash64({seed_expr}, 1)), 16, '0'), "
        f"leftPad(hex(cityHash64({seed_expr}, 2)), 16, '0')"
        ")), 16)))"
    )


def load(store: ChdbStore, events: int) -> float:
    pageviews = int(events / 1.9)
    t0 = time.perf_counter()
    r = "(cityHash64(number, {k}) % 1000000) / 1000000.0"
    store.execute(f"""
        INSERT INTO jobpixel.events (event_id, site_id, ad_id, name, ts, visitor_id, url, hostname, path,
            referrer_domain, utm_source, utm_medium, utm_campaign, click_id_type, browser, os, device,
            scroll_pct, retention_days)
        SELECT {uuid_expr("number, 11")},
               concat('site', toString(number % {SITES})),
               toString(toUInt32(pow({r.format(k=3)}, 2.5) * {ADS_PER_SITE})),
               'pageview',
               now64(3) - toIntervalSecond(toUInt32({r.format(k=4)} * {DAYS * 86400})),
               {uuid_expr(f"cityHash64(number, 5) % {VISITORS}")},
               'https://jobs.example/jobb/1', 'jobs.example', '/jobb/1',
               ['', '', 'google.com', 'google.com', 'linkedin.com', 'facebook.com', 'finn.no', 'nav.no',
                'bing.com', 'example.org'][1 + cityHash64(number, 6) % 10],
               ['', '', '', '', 'finn', 'linkedin', 'facebook', 'newsletter'][1 + cityHash64(number, 7) % 8],
               ['', '', 'cpc', 'social', 'email'][1 + cityHash64(number, 8) % 5],
               ['', '', '', 'vinter', 'sommer', 'sykepleie', 'ingenior'][1 + cityHash64(number, 9) % 7],
               ['', '', '', '', 'gclid', 'fbclid'][1 + cityHash64(number, 10) % 6],
               ['Chrome', 'Safari', 'Firefox', 'Edge', 'Samsung Internet'][1 + cityHash64(number, 12) % 5],
               ['Android', 'iOS', 'Windows', 'Mac OS X', 'Linux'][1 + cityHash64(number, 13) % 5],
               ['mobile', 'mobile', 'desktop', 'desktop', 'tablet'][1 + cityHash64(number, 14) % 5],
               toUInt8(cityHash64(number, 15) % 30),
               3650
        FROM numbers({pageviews})
    """)
    store.execute("""
        INSERT INTO jobpixel.events (event_id, site_id, ad_id, name, ts, visitor_id, pageview_id, url,
            hostname, path, referrer_domain, utm_source, utm_medium, utm_campaign, click_id_type,
            browser, os, device,
            engaged_ms, scroll_pct, activity, retention_days)
        SELECT generateUUIDv4(cityHash64(event_id)), site_id, ad_id, 'engagement',
               ts + toIntervalSecond(cityHash64(event_id, 1) % 300), visitor_id, event_id,
               url, hostname, path,
               referrer_domain, utm_source, utm_medium, utm_campaign, click_id_type, browser, os, device,
               toUInt32(pow((cityHash64(event_id, 2) % 1000) / 1000.0, 2) * 240000),
               toUInt8(least(100, scroll_pct + cityHash64(event_id, 3) % 90)),
               toUInt16(cityHash64(event_id, 4) % 40), 3650
        FROM jobpixel.events WHERE name = 'pageview' AND cityHash64(event_id, 5) % 5 != 0
    """)
    for name, modulo in (("apply_click", 14), ("apply_complete", 33)):
        store.execute(f"""
            INSERT INTO jobpixel.events (event_id, site_id, ad_id, name, ts, visitor_id, pageview_id, url,
                hostname, path, referrer_domain, browser, os, device, retention_days)
            SELECT generateUUIDv4(cityHash64(event_id, 9)), site_id, ad_id, '{name}',
                   ts + toIntervalSecond(60 + cityHash64(event_id, 6) % 600), visitor_id, event_id, url,
                   hostname, path, if('{name}' = 'apply_complete', 'ats.example', referrer_domain),
                   browser, os, device, 3650
            FROM jobpixel.events WHERE name = 'pageview' AND cityHash64(event_id, 7) % {modulo} = 0
        """)
    store.execute(f"""
        INSERT INTO jobpixel.ads
        SELECT concat('site', toString(s)), toString(a), now64(3) - toIntervalDay(90), now64(3),
               tuple(now64(3), concat('Stilling ', toString(a)), ['Helse', 'IT', 'Bygg', 'Salg'][1 + a % 4],
                     ['Oslo', 'Bergen', 'Trondheim', 'Stavanger', 'Tromsø'][1 + a % 5], 'Arbeidsgiver AS',
                     'FULL_TIME', '', '', toUInt32(200 + cityHash64(a) % 800))
        FROM (SELECT number % {SITES} AS s, intDiv(number, {SITES}) AS a
              FROM numbers({SITES * (ADS_PER_SITE + 1)}))
    """)
    store.execute(f"""
        INSERT INTO jobpixel.consent_log (choice_id, consent_id, site_id, ts, action, granted, denied,
            revision, lang, retention_days)
        SELECT {uuid_expr("number, 21")}, {uuid_expr("number, 22")},
               concat('site', toString(number % {SITES})),
               now64(3) - toIntervalSecond(
                   toUInt32(((cityHash64(number, 23) % 1000000) / 1000000.0) * {DAYS * 86400})),
               'custom',
               if(cityHash64(number, 24) % 10 < 7, ['necessary', 'statistics'], ['necessary']),
               [], 1, 'nb', 3650
        FROM numbers({VISITORS})
    """)
    store.execute("OPTIMIZE TABLE jobpixel.events FINAL")
    return time.perf_counter() - t0


ROLLUPS = ("report_hourly", "report_hourly_site")


def backfill(store: ChdbStore) -> float:
    """Empty the rollups the views filled during the load and time migration 0006's backfill of them
    (what `jobpixel migrate` does on a store that has events but no rollup yet), then merge them."""
    for table in ROLLUPS:
        store.execute(f"TRUNCATE TABLE jobpixel.{table}")
    [mig] = [m for m in load_migrations("jobpixel") if m.version == 6]
    t0 = time.perf_counter()
    for stmt in mig.statements:
        if stmt.startswith("INSERT"):
            store.execute(stmt)
    secs = time.perf_counter() - t0
    for table in ROLLUPS:
        store.execute(f"OPTIMIZE TABLE jobpixel.{table} FINAL")
    return secs


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    fn()  # warm: caches, marks
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, max(0, round(0.95 * len(samples)) - 1))]
    return statistics.median(samples), p95


BASELINE = {
    "tiles": "SELECT uniqExactIf(visitor_id, name = 'pageview') v, countIf(name = 'pageview') pv, "
    "uniqExactIf(visitor_id, name = 'apply_click') c, uniqExactIf(visitor_id, name = 'apply_complete') a, "
    "quantileExactInclusiveIf(0.5)(engaged_ms, name = 'engagement') e FROM jobpixel.events "
    "WHERE site_id = {site:String} AND ts >= {start:DateTime64(3, 'UTC')}",
    "ads": "SELECT ad_id, uniqExact(visitor_id) v, count() pv FROM jobpixel.events "
    "WHERE site_id = {site:String} "
    "AND ts >= {start:DateTime64(3, 'UTC')} AND name = 'pageview' GROUP BY ad_id",
    "sources": "SELECT referrer_domain, uniqExact(visitor_id) v FROM jobpixel.events "
    "WHERE site_id = {site:String} "
    "AND ts >= {start:DateTime64(3, 'UTC')} GROUP BY referrer_domain",
    "series": "SELECT toDate(ts, 'Europe/Oslo') d, uniqExact(visitor_id) v FROM jobpixel.events "
    "WHERE site_id = {site:String} AND ts >= {start:DateTime64(3, 'UTC')} AND name = 'pageview' GROUP BY d",
}


def visible_latency(store: ChdbStore, site: Site) -> float:
    """Seconds from inserting pageviews of a new ad by as many visitors as the privacy floor asks (as the
    loader inserts a chunk) until the report shows them."""
    n = site.k_floor
    ad = "visible-" + uuid.uuid4().hex[:8]
    now = time.time()
    rows = [
        {
            "event_id": str(uuid.uuid4()),
            "site_id": site.id,
            "ad_id": ad,
            "name": "pageview",
            "ts": now,
            "visitor_id": str(uuid.uuid4()),
            "url": "https://jobs.example/jobb/x",
            "device": "desktop",
            "retention_days": 3650,
        }
        for _ in range(n)
    ]
    body = {"site": site.id, "date_range": "today", "metrics": ["visitors"], "filters": [["is", "ad", [ad]]]}
    t0 = time.perf_counter()
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    store.insert_jsonl("events", data, dedup_token=f"bench:{ad}:events:0-{len(data)}")
    while True:
        q = parse_query(body, site.timezone)
        if engine.run_query(store, site, q).results[0]["metrics"] == [n]:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > 30:
            raise SystemExit("event not visible after 30 s")


def end_to_end(tries: int = 5) -> list[float]:
    """Seconds from POST /collect of k pageviews to /api/v1/query showing them, through the real server
    (tests/harness.py: uvicorn, journal, loader with the default 1 s flush, chDB, the rollup)."""
    from tests.harness import PartnerSite
    from tests.reports.conftest import ReportsServer

    partner = PartnerSite()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        server = ReportsServer(Path(tmp) / "data", partner, k_floor=3)
        server.start()
        try:
            for i in range(tries):
                ad = f"visible{i}"
                events = [server.event(server.consent()["token"], "pageview", ad) for _ in range(3)]
                body = {"site": "test", "date_range": "today", "metrics": ["visitors"]}
                body["filters"] = [["is", "ad", [ad]]]
                t0 = time.perf_counter()
                for e in events:
                    server.collect([e])
                while True:
                    doc = server.api("/api/v1/query", body).json()
                    if doc["results"][0]["metrics"] == [3] and doc["meta"]["rollup"]:
                        out.append(time.perf_counter() - t0)
                        break
                    if time.perf_counter() - t0 > 30:
                        raise SystemExit("not visible after 30 s")
                    time.sleep(0.02)
                time.sleep(1.3)  # the next try starts at another point of the flush cycle
        finally:
            server.stop()
            partner.close()
    return out


def sizes(store: ChdbStore) -> list[dict[str, Any]]:
    return store.query(
        "SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts "
        "WHERE database = 'jobpixel' AND active "
        "AND table IN ('events', 'report_hourly', 'report_hourly_site') "
        "GROUP BY table ORDER BY table"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--site", default="site3")
    ap.add_argument(
        "--visible-only",
        action="store_true",
        help="only time /collect → report through the real server (small store, no 10M load)",
    )
    args = ap.parse_args()
    if args.visible_only:
        secs = end_to_end()
        print("POST /collect → /api/v1/query shows it: " + ", ".join(f"{x * 1000:.0f}" for x in secs) + " ms")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        store = ChdbStore(Path(tmp) / "chdb")
        store.migrate()
        secs = load(store, args.events)
        [count] = store.query(
            "SELECT count() n, uniqExact(visitor_id) v, uniqExact(site_id, ad_id) a FROM jobpixel.events"
        )
        print(f"loaded {count['n']:,} events ({count['v']:,} visitors, {count['a']:,} ads) in {secs:.1f} s")
        print(
            f"backfill of the rollups (migration 0006 on a store with these events): {backfill(store):.1f} s"
        )
        for r in sizes(store):
            print(f"  {r['table']}: {int(r['rows']):,} rows, {int(r['bytes']) / 2**20:.1f} MiB")
        site = Site(id=args.site, partner="bench", origins=frozenset({"https://jobs.example"}))
        pr = panels.page_range({"range": "30d"}, site.timezone)
        queries: dict[str, Callable[[], Any]] = {
            "tiles (this + previous period)": lambda: panels.tiles(store, site, pr),
            "series (this + previous period)": lambda: panels.series(store, site, pr),
            "realtime": lambda: panels.realtime(store, site),
            "ads table": lambda: panels.table(store, site, pr, "ads"),
            "sources": lambda: panels.table(store, site, pr, "sources"),
            "campaigns": lambda: panels.table(store, site, pr, "campaigns"),
            "devices": lambda: panels.table(store, site, pr, "devices"),
            "consent rates": lambda: panels.consent(store, site, pr),
            "funnel (ad page)": lambda: panels.funnel(store, site, pr, "1"),
            "site page's one statement (totals, ads, sources, campaigns)": lambda: engine.run_queries(
                store,
                site,
                [
                    panels.totals_query(site, pr.date_range),
                    *(panels.table_query(site, pr, n) for n in ("ads", "sources", "campaigns")),
                ],
            ),
            "ad page": lambda: panels.ad_panels(store, site, pr, "1"),
        }

        def page() -> None:  # as the site page runs them: panels.site_panels (one statement + a lane)
            panels.site_panels(store, site, pr)

        queries["whole site page"] = page
        rows = []
        for name, fn in queries.items():
            engine.USE_ROLLUP = True
            fast = timed(fn, args.repeat)
            engine.USE_ROLLUP = False
            raw = timed(fn, args.repeat)
            rows.append((name, *fast, *raw))
        engine.USE_ROLLUP = True
        start = {"site": args.site, "start": pr.first + " 00:00:00.000"}
        base = [
            (f"plain GROUP BY: {n}", *timed(lambda s=sql: store.query(s, start), args.repeat))
            for n, sql in BASELINE.items()
        ]
        latencies = sorted(visible_latency(store, site) for _ in range(5))
        print(f"\none site ({args.site}) over 30 days, {args.repeat} runs each after one warm-up\n")
        print("| query | p50 ms | p95 ms | raw p50 ms | raw p95 ms |\n| --- | ---: | ---: | ---: | ---: |")
        for name, p50, p95, rp50, rp95 in rows:
            print(f"| {name} | {p50:.0f} | {p95:.0f} | {rp50:.0f} | {rp95:.0f} |")
        for name, p50, p95 in base:
            print(f"| {name} | {p50:.0f} | {p95:.0f} | | |")
        print(
            "\nevent → visible (insert as the loader does + report query), 5 tries: "
            + ", ".join(f"{x * 1000:.0f}" for x in latencies)
            + " ms"
        )
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
