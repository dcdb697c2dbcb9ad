"""The report statements. Values are bound as ``{name:Type}`` parameters; identifiers and expressions
come only from the allow-lists below (the query parser has already checked every name against them).

The unit of every report is a row of ``u``: one per pageview (``kind = 'pv'``, with its engaged time,
maximum scroll and activity summed/maxed over its engagement events) or per apply event
(``kind = 'click'`` / ``'app'``). An apply event takes the source fields (referrer, UTM, click id)
of the same visitor's first pageview of the same ad in the range, so applications are credited to
the channel that brought the visitor, not to the ATS that sent them back.
"""

from __future__ import annotations

from collections.abc import Sequence

from pixel_server.reports.query import Filter

# -- "read": one place (issue #9) ------------------------------------------------------------------
READ_WPM = 200  # reading speed, words per minute
READ_SHARE_DEN = 3  # engaged for at least a third of the ad's reading time ...
READ_SCROLL = 75  # ... or scrolled at least this far through its text (percent)
READ_EXPR = (
    f"(scroll >= {READ_SCROLL} OR (a.words > 0 AND eng * {READ_WPM} * {READ_SHARE_DEN} >= a.words * 60000))"
)

# -- named channels: click id first, then utm_source, then the referrer's domain --------------------
# (name, click id types, utm_source regexp, referrer domain regexp)
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


def _channel_expr() -> str:
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
    "source": _channel_expr(),
    "referrer_domain": "referrer_domain",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "device": "device",
    "browser": "browser",
    "os": "os",
}

UNITS = """
ad_meta AS (
    SELECT ad_id, tupleElement(m, 'title') AS title, tupleElement(m, 'category') AS category,
           tupleElement(m, 'location') AS location, tupleElement(m, 'words') AS words
    FROM (SELECT ad_id, max(latest) AS m FROM ${db}.ads WHERE site_id = {site:String} GROUP BY ad_id)
),
ev AS (
    SELECT event_id, name, ts, visitor_id, pageview_id, ad_id, referrer_domain, utm_source, utm_medium,
           utm_campaign, click_id_type, device, browser, os, engaged_ms, scroll_pct, activity
    FROM ${db}.events FINAL
    WHERE site_id = {site:String}
      AND ts >= {start:DateTime64(3, 'UTC')} AND ts < {end_ext:DateTime64(3, 'UTC')}
      AND name IN ('pageview', 'engagement', 'apply_click', 'apply_complete')
),
pv AS (
    SELECT if(name = 'pageview', event_id, assumeNotNull(pageview_id)) AS pid,
           anyIf(ts, name = 'pageview') AS p_ts, anyIf(visitor_id, name = 'pageview') AS p_visitor,
           anyIf(ad_id, name = 'pageview') AS p_ad, anyIf(referrer_domain, name = 'pageview') AS p_rd,
           anyIf(utm_source, name = 'pageview') AS p_us, anyIf(utm_medium, name = 'pageview') AS p_um,
           anyIf(utm_campaign, name = 'pageview') AS p_uc, anyIf(click_id_type, name = 'pageview') AS p_ci,
           anyIf(device, name = 'pageview') AS p_dev, anyIf(browser, name = 'pageview') AS p_br,
           anyIf(os, name = 'pageview') AS p_os,
           sum(engaged_ms) AS p_eng, max(scroll_pct) AS p_scroll, sum(activity) AS p_act
    FROM ev
    WHERE name = 'pageview' OR (name = 'engagement' AND pageview_id IS NOT NULL)
    GROUP BY pid
    HAVING countIf(name = 'pageview') > 0 AND p_ts < {end:DateTime64(3, 'UTC')}
),
touch AS (
    SELECT p_visitor AS t_visitor, p_ad AS t_ad, 1 AS t_has,
           argMin(tuple(p_rd, p_us, p_um, p_uc, p_ci), p_ts) AS t_src
    FROM pv GROUP BY p_visitor, p_ad
),
u AS (
    SELECT 'pv' AS kind, p_visitor AS visitor_id, p_ad AS ad_id, p_ts AS ts, p_rd AS referrer_domain,
           p_us AS utm_source, p_um AS utm_medium, p_uc AS utm_campaign, p_ci AS click_id_type,
           p_dev AS device, p_br AS browser, p_os AS os, p_eng AS eng, p_scroll AS scroll, p_act AS act
    FROM pv
    UNION ALL
    SELECT if(e.name = 'apply_click', 'click', 'app') AS kind, e.visitor_id, e.ad_id, e.ts,
           if(t.t_has = 1, tupleElement(t.t_src, 1), e.referrer_domain),
           if(t.t_has = 1, tupleElement(t.t_src, 2), e.utm_source),
           if(t.t_has = 1, tupleElement(t.t_src, 3), e.utm_medium),
           if(t.t_has = 1, tupleElement(t.t_src, 4), e.utm_campaign),
           if(t.t_has = 1, tupleElement(t.t_src, 5), e.click_id_type),
           e.device, e.browser, e.os, toUInt64(0), toUInt8(0), toUInt64(0)
    FROM ev AS e LEFT JOIN touch AS t ON e.visitor_id = t.t_visitor AND e.ad_id = t.t_ad
    WHERE e.name IN ('apply_click', 'apply_complete') AND e.ts < {end:DateTime64(3, 'UTC')}
)
"""

AGGREGATES = f"""
    uniqExact(u.visitor_id) AS _k,
    uniqExactIf(u.visitor_id, kind = 'pv') AS visitors,
    countIf(kind = 'pv') AS pageviews,
    quantileExactInclusiveIf(0.5)(eng, kind = 'pv') AS eng_median,
    avgIf(scroll, kind = 'pv') AS scroll_mean,
    avgIf(act, kind = 'pv') AS act_mean,
    uniqExactIf(u.visitor_id, kind = 'pv' AND {READ_EXPR}) AS readers,
    uniqExactIf(u.visitor_id, kind = 'click') AS apply_clicks,
    uniqExactIf(u.visitor_id, kind = 'app') AS applications
"""

KEY_SEP = "\x1f"


def _where(filters: Sequence[Filter]) -> str:
    clauses = []
    for i, f in enumerate(filters):
        expr = DIMENSION_SQL[f.dimension]
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


def key_expr(dimensions: Sequence[str]) -> str:
    parts = ", ".join(DIMENSION_SQL[d] for d in dimensions)
    return f"arrayStringConcat([{parts}], unhex('1F'))"


def breakdown(dimensions: Sequence[str], filters: Sequence[Filter], folded: bool = False) -> str:
    """One row per combination of ``dimensions`` (none: the total); ``folded``: one row over the keys
    in ``{folded:Array(String)}`` — the privacy floor's "(other)" row, counted over the union."""
    dims = [f"{DIMENSION_SQL[d]} AS d{i}" for i, d in enumerate(dimensions)] if not folded else []
    select = ", ".join([*dims, AGGREGATES])
    where = _where(filters)
    if folded:
        where += f" AND has({{folded:Array(String)}}, {key_expr(dimensions)})"
    group = (" GROUP BY " + ", ".join(f"d{i}" for i in range(len(dimensions)))) if dims else ""
    joined = "u LEFT JOIN ad_meta AS a ON u.ad_id = a.ad_id"
    return f"WITH {UNITS} SELECT {select} FROM {joined} WHERE {where}{group}"


def funnel(filters: Sequence[Filter]) -> str:
    """Each visitor's furthest step on any one ad: view → read → apply click → application, in that
    order of requirement (a step counts only with every step before it on the same ad)."""
    return f"""WITH {UNITS},
    per_ad AS (
        SELECT u.visitor_id AS v,
               countIf(kind = 'pv') > 0 AS s1, countIf(kind = 'pv' AND {READ_EXPR}) > 0 AS s2,
               countIf(kind = 'click') > 0 AS s3, countIf(kind = 'app') > 0 AS s4
        FROM u LEFT JOIN ad_meta AS a ON u.ad_id = a.ad_id
        WHERE {_where(filters)}
        GROUP BY u.visitor_id, u.ad_id
    ),
    per_visitor AS (
        SELECT v, max(if(s1, 1 + if(s2, 1 + if(s3, 1 + if(s4, 1, 0), 0), 0), 0)) AS lvl FROM per_ad GROUP BY v
    )
    SELECT countIf(lvl >= 1) AS s1, countIf(lvl >= 2) AS s2, countIf(lvl >= 3) AS s3, countIf(lvl >= 4) AS s4
    FROM per_visitor"""


CONSENT_CATEGORIES = ("statistics", "marketing")
CONSENT_DIMENSIONS = {"time:day": f"toString(toDate(ts, {TZ}))", "category": "category"}


def consent_rates(dimensions: Sequence[str], folded: bool = False) -> str:
    """Per day and category: choices logged, how many granted it; ``_k`` = distinct consent ids."""
    dims = [f"{CONSENT_DIMENSIONS[d]} AS d{i}" for i, d in enumerate(dimensions)] if not folded else []
    where = (
        "site_id = {site:String} AND ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')}"
    )
    if folded:
        parts = ", ".join(CONSENT_DIMENSIONS[d] for d in dimensions)
        where += f" AND has({{folded:Array(String)}}, arrayStringConcat([{parts}], unhex('1F')))"
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
