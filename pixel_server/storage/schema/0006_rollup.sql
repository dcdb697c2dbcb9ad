-- Report rollups (issue #9, speed). report_hourly: one row per (site, UTC hour, ad, device) after merges;
-- report_hourly_site: the same without the ad (a few rows per site and hour, for site-wide tiles, charts
-- and the device table). Each is fed by a materialized view from every insert into events, and
-- backfilled from the events already stored.
--
-- Every column is an idempotent aggregate state: a set of visitor ids (uniq) or of pageview event ids
-- (uniqExact of their 64-bit hashes: 8 bytes each, a collision expected once in ~10^9 pageviews per set). Adding the same event twice changes no state, so
--   * an event a client sends again (same event_id, a later insert) counts once, as in events FINAL;
--   * a journal chunk the loader replays counts once twice over: ClickHouse drops the repeated block by
--     its insert_deduplication_token, and with deduplicate_blocks_in_dependent_materialized_views (on by
--     default) the view's block into report_hourly is dropped too (it has its own dedup window);
--   * the backfill below may overlap what the view already fed (inserts during the migration), or run
--     again (every statement of a migration is idempotent): nothing is counted twice.
-- UTC hours, not site days: a site's day is 24 (23, 25) whole hours in every time zone with a whole-hour
-- offset, so the query layer converts; other zones, realtime and metrics that need each pageview's
-- engagement stay on the raw events (pixel_server/reports/rollup.py says which).
-- It holds no visitor id, only hash sets of them (uniq keeps 32-bit hashes) and hashes of pageview event ids, for
-- as long as the events themselves (the same retention_days TTL).
CREATE TABLE IF NOT EXISTS ${db}.${table:report_hourly} ${on_cluster}
(
    site_id         LowCardinality(String),
    hour            DateTime('UTC'),
    ad_id           String,
    device          LowCardinality(String),
    retention_days  UInt16,
    visitors        AggregateFunction(uniq, UUID),       -- visitors with a pageview
    unit_visitors   AggregateFunction(uniq, UUID),       -- with a pageview, apply click or application: the floor's k
    pageviews       AggregateFunction(uniqExact, UInt64), -- 64-bit hashes of pageview event ids
    clickers        AggregateFunction(uniq, UUID),       -- visitors with an apply click
    appliers        AggregateFunction(uniq, UUID)        -- visitors with an application
)
ENGINE = ${engine:AggregatingMergeTree}
PARTITION BY toYYYYMM(hour)
ORDER BY (site_id, hour, ad_id, device, retention_days)
TTL hour + toIntervalDay(retention_days)
SETTINGS non_replicated_deduplication_window = 10000;

-- distributed: report_hourly sipHash64(site_id)

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${table:report_hourly_mv} ${on_cluster}
TO ${db}.${table:report_hourly}
AS SELECT
    site_id,
    toDateTime(toStartOfHour(ts), 'UTC') AS hour,
    ad_id,
    device,
    retention_days,
    uniqStateIf(visitor_id, name = 'pageview') AS visitors,
    uniqState(visitor_id) AS unit_visitors,
    uniqExactStateIf(cityHash64(event_id), name = 'pageview') AS pageviews,
    uniqStateIf(visitor_id, name = 'apply_click') AS clickers,
    uniqStateIf(visitor_id, name = 'apply_complete') AS appliers
FROM ${db}.${table:events}
WHERE name IN ('pageview', 'apply_click', 'apply_complete')
GROUP BY site_id, hour, ad_id, device, retention_days;

-- Backfill: the events stored before the view existed (through the Distributed tables on a cluster).
INSERT INTO ${db}.report_hourly
SELECT
    site_id,
    toDateTime(toStartOfHour(ts), 'UTC') AS hour,
    ad_id,
    device,
    retention_days,
    uniqStateIf(visitor_id, name = 'pageview') AS visitors,
    uniqState(visitor_id) AS unit_visitors,
    uniqExactStateIf(cityHash64(event_id), name = 'pageview') AS pageviews,
    uniqStateIf(visitor_id, name = 'apply_click') AS clickers,
    uniqStateIf(visitor_id, name = 'apply_complete') AS appliers
FROM ${db}.events
WHERE name IN ('pageview', 'apply_click', 'apply_complete')
GROUP BY site_id, hour, ad_id, device, retention_days;

-- The same per site (no ad): site-wide tiles, charts and devices read a few rows per hour.
CREATE TABLE IF NOT EXISTS ${db}.${table:report_hourly_site} ${on_cluster}
(
    site_id         LowCardinality(String),
    hour            DateTime('UTC'),
    device          LowCardinality(String),
    retention_days  UInt16,
    visitors        AggregateFunction(uniq, UUID),       -- visitors with a pageview
    unit_visitors   AggregateFunction(uniq, UUID),       -- with a pageview, apply click or application: the floor's k
    pageviews       AggregateFunction(uniqExact, UInt64), -- 64-bit hashes of pageview event ids
    clickers        AggregateFunction(uniq, UUID),       -- visitors with an apply click
    appliers        AggregateFunction(uniq, UUID)        -- visitors with an application
)
ENGINE = ${engine:AggregatingMergeTree}
PARTITION BY toYYYYMM(hour)
ORDER BY (site_id, hour, device, retention_days)
TTL hour + toIntervalDay(retention_days)
SETTINGS non_replicated_deduplication_window = 10000;

-- distributed: report_hourly_site sipHash64(site_id)

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${table:report_hourly_site_mv} ${on_cluster}
TO ${db}.${table:report_hourly_site}
AS SELECT
    site_id,
    toDateTime(toStartOfHour(ts), 'UTC') AS hour,
    device,
    retention_days,
    uniqStateIf(visitor_id, name = 'pageview') AS visitors,
    uniqState(visitor_id) AS unit_visitors,
    uniqExactStateIf(cityHash64(event_id), name = 'pageview') AS pageviews,
    uniqStateIf(visitor_id, name = 'apply_click') AS clickers,
    uniqStateIf(visitor_id, name = 'apply_complete') AS appliers
FROM ${db}.${table:events}
WHERE name IN ('pageview', 'apply_click', 'apply_complete')
GROUP BY site_id, hour, device, retention_days;

INSERT INTO ${db}.report_hourly_site
SELECT
    site_id,
    toDateTime(toStartOfHour(ts), 'UTC') AS hour,
    device,
    retention_days,
    uniqStateIf(visitor_id, name = 'pageview') AS visitors,
    uniqState(visitor_id) AS unit_visitors,
    uniqExactStateIf(cityHash64(event_id), name = 'pageview') AS pageviews,
    uniqStateIf(visitor_id, name = 'apply_click') AS clickers,
    uniqStateIf(visitor_id, name = 'apply_complete') AS appliers
FROM ${db}.events
WHERE name IN ('pageview', 'apply_click', 'apply_complete')
GROUP BY site_id, hour, device, retention_days;
