-- Data-subject rights (issue #10). Every statement is idempotent.

-- The erasure log: one row per erasure. It holds none of the erased data: when, which site, a keyed
-- hash (HMAC-SHA256, JOBPIXEL_HASH_KEY) of the id asked for and of each consent id erased (so the
-- revocation of those grants survives a restart and reaches the other nodes), the rows erased per
-- table, and who asked (visitor or operator). Kept as long as the consent log (retention_days =
-- consent_log_days; the TTL is set from the configuration at every migrate, rights/retention.py).
CREATE TABLE IF NOT EXISTS ${db}.${table:erasure_log} ${on_cluster}
(
    ts              DateTime64(3, 'UTC'),
    site_id         LowCardinality(String),
    id_hash         String,
    consent_hashes  Array(String),
    requested_by    LowCardinality(String),
    counts          Map(String, UInt64),
    retention_days  UInt16
)
ENGINE = ${engine:MergeTree}
PARTITION BY toYYYYMM(ts)
ORDER BY (site_id, ts)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;

-- distributed: erasure_log sipHash64(id_hash)
