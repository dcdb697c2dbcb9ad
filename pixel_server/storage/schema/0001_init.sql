-- jobpixel schema, version 1. Run by `jobpixel migrate` and at start-up; every
-- statement is idempotent. Placeholders: ${db}, ${on_cluster}, ${table:NAME}
-- (NAME, or NAME_local on a cluster), ${engine:ENGINE} (ENGINE, or its
-- Replicated variant on a cluster). `-- distributed: NAME KEY` lines become a
-- Distributed table over NAME_local on a cluster and vanish otherwise.

CREATE DATABASE IF NOT EXISTS ${db} ${on_cluster};

-- One row per measured event. ReplacingMergeTree keyed on event_id: a replayed
-- or retried event collapses into one row; reads use FINAL.
CREATE TABLE IF NOT EXISTS ${db}.${table:events} ${on_cluster}
(
    event_id        UUID,
    site_id         LowCardinality(String),
    ad_id           String,
    name            LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    client_ts       Nullable(DateTime64(3, 'UTC')),
    visitor_id      UUID,
    pageview_id     Nullable(UUID),
    url             String,
    hostname        LowCardinality(String),
    path            String,
    referrer        String,
    referrer_domain LowCardinality(String),
    utm_source      LowCardinality(String),
    utm_medium      LowCardinality(String),
    utm_campaign    String,
    utm_term        String,
    utm_content     String,
    click_id_type   LowCardinality(String),
    click_ids       Map(LowCardinality(String), String),
    browser         LowCardinality(String),
    browser_version LowCardinality(String),
    os              LowCardinality(String),
    os_version      LowCardinality(String),
    device          LowCardinality(String),
    engaged_ms      UInt32,
    scroll_pct      UInt8,
    activity        UInt16,
    marketing       UInt8,
    props           Map(String, String),
    retention_days  UInt16
)
ENGINE = ${engine:ReplacingMergeTree}
PARTITION BY toYYYYMM(ts)
ORDER BY (site_id, ad_id, toDate(ts), event_id)
TTL toDateTime(ts) + toIntervalDay(retention_days)
-- The writer deletes a spool segment once its insert returns: the part must be on disk by then.
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;

-- distributed: events sipHash64(event_id)

-- Proof of consent (GDPR art. 7(1)): one row per choice, kept for the site's
-- consent_log_days. choice_id is client-made, so a retried POST is one row.
CREATE TABLE IF NOT EXISTS ${db}.${table:consent_log} ${on_cluster}
(
    choice_id       UUID,
    consent_id      UUID,
    site_id         LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    action          LowCardinality(String),
    granted         Array(LowCardinality(String)),
    denied          Array(LowCardinality(String)),
    revision        UInt32,
    lang            LowCardinality(String),
    gpc             UInt8,
    layer           UInt8,
    ua_family       LowCardinality(String),
    retention_days  UInt16
)
ENGINE = ${engine:ReplacingMergeTree}
PARTITION BY toYYYYMM(ts)
ORDER BY (site_id, consent_id, choice_id)
TTL toDateTime(ts) + toIntervalDay(retention_days)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;

-- distributed: consent_log sipHash64(consent_id)
