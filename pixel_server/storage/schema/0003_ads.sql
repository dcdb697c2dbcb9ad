-- Job-ad metadata (issue #9): one row per (site, ad) after merges. The pixel sends the page's
-- JobPosting as `job` on pageviews; every such pageview inserts a sighting. min/max are idempotent,
-- so a replayed insert changes nothing; `latest` is a tuple led by the sighting's time, so max()
-- keeps the newest metadata deterministically. Read with GROUP BY site_id, ad_id.
CREATE TABLE IF NOT EXISTS ${db}.${table:ads} ${on_cluster}
(
    site_id     LowCardinality(String),
    ad_id       String,
    first_seen  SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen   SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    latest      SimpleAggregateFunction(max, Tuple(
                    ts DateTime64(3, 'UTC'),
                    title String,
                    category String,
                    location String,
                    employer String,
                    employment_type String,
                    date_posted String,
                    valid_through String,
                    words UInt32))
)
ENGINE = ${engine:AggregatingMergeTree}
ORDER BY (site_id, ad_id);

-- distributed: ads sipHash64(site_id, ad_id)
