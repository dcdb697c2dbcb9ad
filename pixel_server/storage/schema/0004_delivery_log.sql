-- The delivery log (branch channels): one row per delivery of an event to an ad channel, decided.
-- status: sent | failed_final | too_old | withdrawn. consent_id and choice_id name the grant that
-- allowed it (GDPR art. 7(1): which consent let this event reach Meta?); kept as long as the site's
-- consent log (retention_days = consent_log_days). A row re-written after a restart collapses into one.
CREATE TABLE IF NOT EXISTS ${db}.${table:delivery_log} ${on_cluster}
(
    channel         LowCardinality(String),
    site_id         LowCardinality(String),
    event_id        UUID,
    event_name      LowCardinality(String),
    consent_id      UUID,
    choice_id       UUID,
    status          LowCardinality(String),
    attempts        UInt16,
    first_attempt   Nullable(DateTime64(3, 'UTC')),
    last_attempt    Nullable(DateTime64(3, 'UTC')),
    event_ts        DateTime64(3, 'UTC'),
    ts              DateTime64(3, 'UTC'),
    http_status     UInt16,
    message         String,
    retention_days  UInt16
)
ENGINE = ${engine:ReplacingMergeTree}
PARTITION BY toYYYYMM(ts)
ORDER BY (event_id, channel, site_id)  -- looked up by event: `jobpixel deliveries --event ID`
TTL toDateTime(ts) + toIntervalDay(retention_days)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;

-- distributed: delivery_log sipHash64(event_id)
