"""The report statements. Values are bound as ``{name:Type}`` parameters; identifiers and expressions
come only from the allow-lists below (the query parser has already checked every name against them).

The unit of every report is a row of ``u``: one per pageview (``kind = 'pv'``, with its engaged time,
maximum scroll and activity summed/maxed over its engagement events) or per apply event
(``kind = 'click'`` / ``'app'``). An apply event takes the source fields (referrer, UTM, click id)
of the same visitor's first pageview of the same ad in the range, so applications are credited to
the channel that brought the visitor, not to the ATS that sent them back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pixel_server.reports.query import Filter

# -- "read": one place (issue #9) ------------------------------------------------------------------
READ_WPM = 200  # reading speed, words per minute
READ_SHARE_DEN = 3  # engaged for at least a third of the ad's reading time ...
READ_SCROLL = 75  # ... or scrolled at least this far through its text (percent)
READ_EXPR = (
    f"(scroll >= {READ_SCROLL} OR (a.words > 0 AND eng * {READ_WPM} * {READ_SHARE_DEN} >= a.words * 60000))"
)

# -- named channels: click id first, then utm_source, then the referrer's domain --------------------
# (name, click id types, utm_source regexp, referrer domain regexp). The rule is applied when an event is
# stored: the events' MATERIALIZED column ``channel`` (migration 0008, whose expression is
# ``channel_expr()``; tests/reports/test_source_channel.py holds them together). A change here is a new
# migration.
CHANNELS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("Google", ("gclid", "gbraid", "wbraid"), r"^google", r"(^|\.)google\.[a-z.]+$"),
    ("LinkedIn", ("li_fat_id",), r"^(linkedin|lnkd)", r"(^|\.)(linkedin\.com|lnkd\.in)$"),
    (
        "Facebook",
        ("fbclid",),
        r"^(facebook|fb|meta|instagram|ig)$",
        r"(^|\.)(facebook\.com|fb\.com|fb\.me|instagram\.com)$",
    ),
    ("Snapchat", ("ScCid",), r"^snap", r"(^|\.)snapchat\.com$"),
    ("Finn", (), r"^finn", r"(^|\.)finn\.no$"),
    ("NAV", (), r"^(nav|arbeidsplassen)", r"(^|\.)nav\.no$"),
    ("Bing", (), r"^bing", r"(^|\.)bing\.com$"),
    ("DuckDuckGo", (), r"^duckduckgo", r"(^|\.)duckduckgo\.com$"),
)
EMAIL_MEDIUM = r"^(e-?mail|newsletter)"


def _lit(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def channel_expr() -> str:
    arms: list[str] = []
    for name, clicks, _, _ in CHANNELS:
        if clicks:
            arms.append(f"click_id_type IN ({', '.join(_lit(c) for c in clicks)}), {_lit(name)}")
    for name, _, utm, _ in CHANNELS:
        arms.append(f"match(lower(utm_source), {_lit(utm)}), {_lit(name)}")
    arms.append(f"match(lower(utm_medium), {_lit(EMAIL_MEDIUM)}), 'Email'")
    arms.append("utm_source != '', 'Other campaign'")
    for name, _, _, ref in CHANNELS:
        arms.append(f"match(referrer_domain, {_lit(ref)}), {_lit(name)}")
    arms.append("referrer_domain != '', 'Referral'")
    return "multiIf(" + ", ".join(arms) + ", 'Direct')"


TZ = "{tz:String}"
DIMENSION_SQL = {
    "ad": "u.ad_id",
    "title": "a.title",
    "category": "a.category",
    "location": "a.location",
    "time:hour": f"formatDateTime(u.ts, '%Y-%m-%d %H:00', {TZ})",
    "time:day": f"toString(toDate(u.ts, {TZ}))",
    "time:week": f"toString(toMonday(toDate(u.ts, {TZ})))",
    "time:month": f"toString(toStartOfMonth(toDate(u.ts, {TZ})))",
    "source": "channel",
    "referrer_domain": "referrer_domain",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "device": "device",
    "browser": "browser",
    "os": "os",
}

SOURCE_FIELDS = ("referrer_domain", "utm_source", "utm_medium", "utm_campaign", "click_id_type", "channel")
SOURCE_DIMENSIONS = ("source", "referrer_domain", "utm_source", "utm_medium", "utm_campaign")
_PER_UNIT = ("ts", "visitor_id", "ad_id", *SOURCE_FIELDS, "device", "browser", "os")


def units(attribute: bool, engagement: bool = True) -> str:
    """The ``u`` rows in one pass over the events: pageviews with their engagement folded in, apply
    events as they are. ``attribute``: apply events take the source fields of the visitor's first
    pageview of that ad in the range (a window over visitor and ad); only queries that group or filter
    by a source field pay for it. ``engagement``: fold the engagement events in (time on ad, scroll,
    activity, read); without it a unit is its own event row, no grouping, and eng/scroll/act are 0 —
    for queries that ask none of ``ENGAGEMENT_METRICS``."""
    per_unit = ",\n           ".join(f"anyIf({c}, name != 'engagement') AS u_{c}" for c in _PER_UNIT)
    if attribute:
        window = (
            "WINDOW w AS (PARTITION BY u_visitor_id, u_ad_id ORDER BY u_name != 'pageview', u_ts "
            "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
        )
        sources = ", ".join(
            f"if(u_name = 'pageview', u_{c}, first_value(u_{c}) OVER w) AS {c}" for c in SOURCE_FIELDS
        )
    else:
        window = ""
        sources = ", ".join(f"u_{c} AS {c}" for c in SOURCE_FIELDS)
    if engagement:
        units_body = f"""
    SELECT if(name = 'engagement', assumeNotNull(pageview_id), event_id) AS unit,
           anyIf(name, name != 'engagement') AS u_name,
           {per_unit},
           sum(engaged_ms) AS eng, max(scroll_pct) AS scroll, sum(activity) AS act
    FROM ${{db}}.events FINAL
    WHERE site_id = {{site:String}}
      AND ts >= {{start:DateTime64(3, 'UTC')}} AND ts < {{end_ext:DateTime64(3, 'UTC')}}
      AND (name IN ('pageview', 'apply_click', 'apply_complete')
           OR (name = 'engagement' AND pageview_id IS NOT NULL))
    GROUP BY unit
    HAVING countIf(name != 'engagement') > 0 AND u_ts < {{end:DateTime64(3, 'UTC')}}
"""
    else:
        columns = ", ".join(f"{c} AS u_{c}" for c in _PER_UNIT)
        units_body = f"""
    SELECT event_id AS unit, name AS u_name, {columns}, 0 AS eng, 0 AS scroll, 0 AS act
    FROM ${{db}}.events FINAL
    WHERE site_id = {{site:String}}
      AND ts >= {{start:DateTime64(3, 'UTC')}} AND ts < {{end:DateTime64(3, 'UTC')}}
      AND name IN ('pageview', 'apply_click', 'apply_complete')
"""
    return f"""
ad_meta AS (
    SELECT ad_id, tupleElement(m, 'title') AS title, tupleElement(m, 'category') AS category,
           tupleElement(m, 'location') AS location, tupleElement(m, 'words') AS words
    FROM (SELECT ad_id, max(latest) AS m FROM ${{db}}.ads WHERE site_id = {{site:String}} GROUP BY ad_id)
),
units AS ({units_body}),
u AS (
    SELECT multiIf(u_name = 'pageview', 'pv', u_name = 'apply_click', 'click', 'app') AS kind,
           u_visitor_id AS visitor_id, u_ad_id AS ad_id, u_ts AS ts, {sources},
           u_device AS device, u_browser AS browser, u_os AS os, eng, scroll, act
    FROM units
    {window}
)
"""


# The events table's sorting key holds toDate(ts) and its partition key is toYYYYMM(ts): rows that
# FINAL collapses share a day, so a month, so a partition. FINAL need not merge across partitions
# (ClickHouse does not infer it from toDate(ts) vs toYYYYMM(ts)): ~30 % off a report query (bench/README).
FINAL_SETTINGS = " SETTINGS do_not_merge_across_partitions_select_final = 1"


def _attribute(dimensions: Sequence[str], filters: Sequence[Filter]) -> bool:
    return any(d in SOURCE_DIMENSIONS for d in (*dimensions, *(f.dimension for f in filters)))


# Visitors are counted with ``uniq``, here and in the rollup (reports/rollup.py): exact up to 65,536
# distinct visitors per aggregate (a set of 32-bit hashes), an estimate within about 1 % above, and 4-5
# times cheaper than uniqExact on UUIDs. The floor compares small counts, where it is exact.
ENGAGEMENT_METRICS = frozenset({"time_on_ad", "scroll_depth", "activity", "readers", "read_rate"})
AD_META_DIMENSIONS = ("title", "category", "location")


def aggregates(engagement: bool = True) -> str:
    """The metrics' columns; without ``engagement`` the per-pageview ones are NULL/0 (never shown: the
    query asked none of them) and ``a.words`` is not read."""
    per_pageview = (
        f"""quantileExactInclusiveIf(0.5)(eng, kind = 'pv') AS eng_median,
    avgIf(scroll, kind = 'pv') AS scroll_mean,
    avgIf(act, kind = 'pv') AS act_mean,
    uniqIf(u.visitor_id, kind = 'pv' AND {READ_EXPR}) AS readers"""
        if engagement
        else "NULL AS eng_median, NULL AS scroll_mean, NULL AS act_mean, 0 AS readers"
    )
    return f"""
    uniq(u.visitor_id) AS _k,
    uniqIf(u.visitor_id, kind = 'pv') AS visitors,
    countIf(kind = 'pv') AS pageviews,
    {per_pageview},
    uniqIf(u.visitor_id, kind = 'click') AS apply_clicks,
    uniqIf(u.visitor_id, kind = 'app') AS applications
"""


def _needs(
    sets: Sequence[Sequence[str]], filters: Sequence[Filter], metrics: Sequence[str] | None
) -> tuple[bool, bool, bool]:
    """(attribute, engagement, ad metadata): what a statement over ``sets`` must compute. ``metrics``
    None: every metric."""
    attribute = any(_attribute(ds, filters) for ds in sets) or _attribute((), filters)
    engagement = metrics is None or bool(ENGAGEMENT_METRICS & set(metrics))
    named = {d for ds in sets for d in ds} | {f.dimension for f in filters}
    return attribute, engagement, engagement or bool(named & set(AD_META_DIMENSIONS))


def _from(ad_meta: bool) -> str:
    return "u LEFT JOIN ad_meta AS a ON u.ad_id = a.ad_id" if ad_meta else "u"


KEY_SEP = "\x1f"


def where_sql(filters: Sequence[Filter], columns: Mapping[str, str] = DIMENSION_SQL) -> str:
    """The filters as one SQL condition over ``columns`` (a dimension's expression: the raw events'
    by default, the rollup's from ``reports/rollup.py``)."""
    clauses = []
    for i, f in enumerate(filters):
        expr = columns[f.dimension]
        param = f"{{f{i}:Array(String)}}"
        if f.op == "is":
            clauses.append(f"has({param}, {expr})")
        elif f.op == "is_not":
            clauses.append(f"NOT has({param}, {expr})")
        else:
            clauses.append(f"multiSearchAnyCaseInsensitiveUTF8({expr}, {param})")
    return " AND ".join(clauses) if clauses else "1"


def array_param(values: Sequence[str]) -> str:
    """An ``Array(String)`` parameter in ClickHouse's text form (chDB binds only scalars)."""
    return "[" + ",".join(_lit(v) for v in values) + "]"


def filter_params(filters: Sequence[Filter]) -> dict[str, str]:
    return {f"f{i}": array_param(f.values) for i, f in enumerate(filters)}


def key_expr(dimensions: Sequence[str], columns: Mapping[str, str] = DIMENSION_SQL) -> str:
    parts = ", ".join(columns[d] for d in dimensions)
    return f"arrayStringConcat([{parts}], unhex('1F'))"


def breakdown(
    dimensions: Sequence[str],
    filters: Sequence[Filter],
    folded: bool = False,
    metrics: Sequence[str] | None = None,
) -> str:
    """One row per combination of ``dimensions`` (none: the total); ``folded``: one row over the keys
    in ``{folded:Array(String)}`` — the privacy floor's "(other)" row, counted over the union.
    ``metrics``: what the query asks (None: everything); the engagement fold and the ads' metadata are
    left out when nothing asked needs them."""
    attribute, engagement, ad_meta = _needs([dimensions], filters, metrics)
    dims = [f"{DIMENSION_SQL[d]} AS d{i}" for i, d in enumerate(dimensions)] if not folded else []
    select = ", ".join([*dims, aggregates(engagement)])
    where = where_sql(filters)
    if folded:
        where += f" AND has({{folded:Array(String)}}, {key_expr(dimensions)})"
    group = (" GROUP BY " + ", ".join(f"d{i}" for i in range(len(dimensions)))) if dims else ""
    return (
        f"WITH {units(attribute, engagement)} SELECT {select} FROM {_from(ad_meta)} WHERE {where}{group}"
        + FINAL_SETTINGS
    )


def grouping_sets(
    sets: Sequence[Sequence[str]], filters: Sequence[Filter], metrics: Sequence[str] | None = None
) -> str:
    """Several breakdowns with the same range and filters in one pass over the units: ``GROUPING SETS``,
    one set per breakdown (``()`` is the total). Each dimension is a column ``g<j>`` (j: its place in
    :func:`set_dimensions`); ``_set`` is ``grouping()`` over them in the SQL standard's sense (a bit is 1
    where the column is *not* in the row's set; the first column is the highest bit), which
    :func:`split_sets` turns back into one row list per breakdown, shaped as :func:`breakdown` returns.
    Breakdowns over the same dimensions (in any order) share one set: a set named twice would return its
    rows twice, and the privacy floor must see each row once."""
    dims = set_dimensions(sets)
    attribute, engagement, ad_meta = _needs(sets, filters, metrics)
    with_units = f"WITH {units(attribute, engagement)}"
    joined = _from(ad_meta)
    if not dims:  # totals only: one row, and grouping() takes at least one argument
        select = f"0 AS _set, {aggregates(engagement)}"
        return f"{with_units} SELECT {select} FROM {joined} WHERE {where_sql(filters)}" + FINAL_SETTINGS
    cols = [f"{DIMENSION_SQL[d]} AS g{j}" for j, d in enumerate(dims)]
    marker = f"grouping({', '.join(f'g{j}' for j in range(len(dims)))}) AS _set"
    select = ", ".join([*cols, marker, aggregates(engagement)])
    unique = dict.fromkeys(frozenset(ds) for ds in sets)
    groups = ", ".join(
        "(" + ", ".join(f"g{j}" for j, d in enumerate(dims) if d in members) + ")" for members in unique
    )
    return (
        f"{with_units} SELECT {select} FROM {joined} WHERE {where_sql(filters)} "
        f"GROUP BY GROUPING SETS ({groups})" + FINAL_SETTINGS + ", force_grouping_standard_compatibility = 1"
    )


def set_dimensions(sets: Sequence[Sequence[str]]) -> list[str]:
    return list(dict.fromkeys(d for ds in sets for d in ds))


def split_sets(
    rows: Sequence[Mapping[str, Any]], sets: Sequence[Sequence[str]]
) -> list[list[dict[str, Any]]]:
    dims = set_dimensions(sets)
    n = len(dims)
    masks = [sum(1 << (n - 1 - j) for j, d in enumerate(dims) if d not in ds) for ds in sets]
    out: list[list[dict[str, Any]]] = [[] for _ in sets]
    for r in rows:
        for i, (ds, mask) in enumerate(zip(sets, masks, strict=True)):
            if int(r["_set"]) == mask:
                row = {k: v for k, v in r.items() if k != "_set" and not re.fullmatch(r"g\d+", k)}
                row.update({f"d{x}": r[f"g{dims.index(d)}"] for x, d in enumerate(ds)})
                out[i].append(row)
    return out


def funnel(filters: Sequence[Filter]) -> str:
    """Each visitor's furthest step on any one ad: view → read → apply click → application, in that
    order of requirement (a step counts only with every step before it on the same ad)."""
    return (
        f"""WITH {units(_attribute((), filters))},
    per_ad AS (
        SELECT u.visitor_id AS v,
               countIf(kind = 'pv') > 0 AS s1, countIf(kind = 'pv' AND {READ_EXPR}) > 0 AS s2,
               countIf(kind = 'click') > 0 AS s3, countIf(kind = 'app') > 0 AS s4
        FROM u LEFT JOIN ad_meta AS a ON u.ad_id = a.ad_id
        WHERE {where_sql(filters)}
        GROUP BY u.visitor_id, u.ad_id
    ),
    per_visitor AS (
        SELECT v, max(if(s1, 1 + if(s2, 1 + if(s3, 1 + if(s4, 1, 0), 0), 0), 0)) AS lvl FROM per_ad GROUP BY v
    )
    SELECT countIf(lvl >= 1) AS s1, countIf(lvl >= 2) AS s2, countIf(lvl >= 3) AS s3, countIf(lvl >= 4) AS s4
    FROM per_visitor"""
        + FINAL_SETTINGS
    )


CONSENT_CATEGORIES = ("statistics", "marketing")
CONSENT_DIMENSIONS = {"time:day": f"toString(toDate(ts, {TZ}))", "category": "category"}


def consent_rates(dimensions: Sequence[str], folded: bool = False) -> str:
    """Per day and category: choices logged, how many granted it; ``_k`` = distinct consent ids."""
    dims = [f"{CONSENT_DIMENSIONS[d]} AS d{i}" for i, d in enumerate(dimensions)] if not folded else []
    where = (
        "site_id = {site:String} AND ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')}"
    )
    if folded:
        where += f" AND has({{folded:Array(String)}}, {key_expr(dimensions, CONSENT_DIMENSIONS)})"
    group = (" GROUP BY " + ", ".join(f"d{i}" for i in range(len(dimensions)))) if dims else ""
    cats = ", ".join(_lit(c) for c in CONSENT_CATEGORIES)
    select = ", ".join(
        [
            *dims,
            "uniqExact(consent_id) AS _k",
            "count() AS choices",
            "countIf(has(granted, category)) AS granted",
        ]
    )
    return (
        f"SELECT {select} FROM ${{db}}.consent_log FINAL ARRAY JOIN [{cats}] AS category WHERE {where}{group}"
    )
