-- Insert deduplication for the loader's chunks. Every insert from the journal carries an
-- insert_deduplication_token (node, segment, table, byte range): a chunk loaded again after a
-- crash between the insert and the cursor commit is dropped by ClickHouse itself, so raw counts
-- (and future materialized views, which see inserted blocks, not FINAL) never count it twice.
-- Replicated tables keep a deduplication window by default; a plain MergeTree (chDB, a single
-- server) honours the token only with non_replicated_deduplication_window > 0 (checked by
-- tests/storage/test_dedup.py). 10,000 blocks is hours of inserts at one per second per table.

ALTER TABLE ${db}.${table:events} ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;

ALTER TABLE ${db}.${table:consent_log} ${on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000;
