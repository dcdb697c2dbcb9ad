-- jobpixel schema, version 2: the grant (issue #7). Every statement is idempotent.

-- Events carry the grant they were measured under: which consent and which choice,
-- and when that grant was issued (a later revocation of that consent id ends it).
-- The second ALTER is the Distributed table on a cluster and a no-op otherwise.
ALTER TABLE ${db}.${table:events} ${on_cluster}
    ADD COLUMN IF NOT EXISTS consent_id UUID,
    ADD COLUMN IF NOT EXISTS choice_id UUID,
    ADD COLUMN IF NOT EXISTS grant_issued_at DateTime64(3, 'UTC');
ALTER TABLE ${db}.events ${on_cluster}
    ADD COLUMN IF NOT EXISTS consent_id UUID,
    ADD COLUMN IF NOT EXISTS choice_id UUID,
    ADD COLUMN IF NOT EXISTS grant_issued_at DateTime64(3, 'UTC');

-- The consent log becomes append-only proof. Version 1 keyed it on choice_id, so a
-- second body for a choice_id replaced the first. Now every write has its own row_id
-- and the key ends with it: two writes never replace each other, while a journal
-- segment the loader replays (the same rows, the same row_ids) still collapses.
-- visitor_hash: HMAC-SHA256 of the grant's visitor id (JOBPIXEL_HASH_KEY), so an
-- access or erasure request finds the rows; body_hash: what the client chose, so a
-- retry is recognised and another body under the same choice_id refused (409).
ALTER TABLE ${db}.${table:consent_log} ${on_cluster}
    ADD COLUMN IF NOT EXISTS visitor_hash String,
    ADD COLUMN IF NOT EXISTS body_hash String,
    ADD COLUMN IF NOT EXISTS row_id UUID,
    MODIFY ORDER BY (site_id, consent_id, choice_id, row_id);
ALTER TABLE ${db}.consent_log ${on_cluster}
    ADD COLUMN IF NOT EXISTS visitor_hash String,
    ADD COLUMN IF NOT EXISTS body_hash String,
    ADD COLUMN IF NOT EXISTS row_id UUID;
