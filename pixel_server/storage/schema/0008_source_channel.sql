-- The source channel of an event (issue #9, speed), computed once when the event is stored instead of in
-- every report query (the regular expressions were a third of a sources query: bench/README.md). The
-- rule, first match wins: the click id's type, then utm_source, then utm_medium (e-mail), then the
-- referrer's domain; nothing at all is Direct. pixel_server/reports/sql.py keeps the same rule as data
-- (CHANNELS) and tests/reports/test_source_channel.py checks that the newest migration's expression is the
-- one it builds: a change to the rule is a new migration (MODIFY COLUMN, then MATERIALIZE COLUMN), never
-- an edit of this one (its text is pinned by a checksum in that test).
--
-- MATERIALIZED: computed from the event's own columns at insert; never sent by a client, never in
-- SELECT *. Rows stored before this migration get it in the background (MATERIALIZE COLUMN, a
-- mutation); until then ClickHouse computes it when a query reads it, with the same result.
-- The second ALTER is the Distributed table on a cluster and a no-op otherwise.
ALTER TABLE ${db}.${table:events} ${on_cluster}
    ADD COLUMN IF NOT EXISTS channel LowCardinality(String) MATERIALIZED multiIf(
        click_id_type IN ('gclid', 'gbraid', 'wbraid'), 'Google',
        click_id_type IN ('li_fat_id'), 'LinkedIn',
        click_id_type IN ('fbclid'), 'Facebook',
        click_id_type IN ('ScCid'), 'Snapchat',
        match(lower(utm_source), '^google'), 'Google',
        match(lower(utm_source), '^(linkedin|lnkd)'), 'LinkedIn',
        match(lower(utm_source), '^(facebook|fb|meta|instagram|ig)$'), 'Facebook',
        match(lower(utm_source), '^snap'), 'Snapchat',
        match(lower(utm_source), '^finn'), 'Finn',
        match(lower(utm_source), '^(nav|arbeidsplassen)'), 'NAV',
        match(lower(utm_source), '^bing'), 'Bing',
        match(lower(utm_source), '^duckduckgo'), 'DuckDuckGo',
        match(lower(utm_medium), '^(e-?mail|newsletter)'), 'Email',
        utm_source != '', 'Other campaign',
        match(referrer_domain, '(^|\\.)google\\.[a-z.]+$'), 'Google',
        match(referrer_domain, '(^|\\.)(linkedin\\.com|lnkd\\.in)$'), 'LinkedIn',
        match(referrer_domain, '(^|\\.)(facebook\\.com|fb\\.com|fb\\.me|instagram\\.com)$'), 'Facebook',
        match(referrer_domain, '(^|\\.)snapchat\\.com$'), 'Snapchat',
        match(referrer_domain, '(^|\\.)finn\\.no$'), 'Finn',
        match(referrer_domain, '(^|\\.)nav\\.no$'), 'NAV',
        match(referrer_domain, '(^|\\.)bing\\.com$'), 'Bing',
        match(referrer_domain, '(^|\\.)duckduckgo\\.com$'), 'DuckDuckGo',
        referrer_domain != '', 'Referral',
        'Direct');
ALTER TABLE ${db}.events ${on_cluster}
    ADD COLUMN IF NOT EXISTS channel LowCardinality(String) MATERIALIZED multiIf(
        click_id_type IN ('gclid', 'gbraid', 'wbraid'), 'Google',
        click_id_type IN ('li_fat_id'), 'LinkedIn',
        click_id_type IN ('fbclid'), 'Facebook',
        click_id_type IN ('ScCid'), 'Snapchat',
        match(lower(utm_source), '^google'), 'Google',
        match(lower(utm_source), '^(linkedin|lnkd)'), 'LinkedIn',
        match(lower(utm_source), '^(facebook|fb|meta|instagram|ig)$'), 'Facebook',
        match(lower(utm_source), '^snap'), 'Snapchat',
        match(lower(utm_source), '^finn'), 'Finn',
        match(lower(utm_source), '^(nav|arbeidsplassen)'), 'NAV',
        match(lower(utm_source), '^bing'), 'Bing',
        match(lower(utm_source), '^duckduckgo'), 'DuckDuckGo',
        match(lower(utm_medium), '^(e-?mail|newsletter)'), 'Email',
        utm_source != '', 'Other campaign',
        match(referrer_domain, '(^|\\.)google\\.[a-z.]+$'), 'Google',
        match(referrer_domain, '(^|\\.)(linkedin\\.com|lnkd\\.in)$'), 'LinkedIn',
        match(referrer_domain, '(^|\\.)(facebook\\.com|fb\\.com|fb\\.me|instagram\\.com)$'), 'Facebook',
        match(referrer_domain, '(^|\\.)snapchat\\.com$'), 'Snapchat',
        match(referrer_domain, '(^|\\.)finn\\.no$'), 'Finn',
        match(referrer_domain, '(^|\\.)nav\\.no$'), 'NAV',
        match(referrer_domain, '(^|\\.)bing\\.com$'), 'Bing',
        match(referrer_domain, '(^|\\.)duckduckgo\\.com$'), 'DuckDuckGo',
        referrer_domain != '', 'Referral',
        'Direct');

ALTER TABLE ${db}.${table:events} ${on_cluster} MATERIALIZE COLUMN channel;
