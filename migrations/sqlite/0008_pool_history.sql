-- Pool history for the dashboard's charts (`GET /api/history`, src/history): one row per minute,
-- instance and pool. `busy`, `idle` and `starting` are that instance's own runners, summed over
-- instances when read; `queued` is the whole queue's (read from `jobs`, the same for every
-- instance), so reading takes the largest instance's figure for the minute, never the sum.
-- Kept 7 days (src/retention.rs). No 0006 here: that number is PostgreSQL's fleet.
CREATE TABLE pool_samples (
    minute   TEXT    NOT NULL,   -- the sample's time, truncated to the minute (UTC)
    instance TEXT    NOT NULL,   -- server.instance_id
    pool     TEXT    NOT NULL,
    queued   INTEGER NOT NULL,
    busy     INTEGER NOT NULL,
    idle     INTEGER NOT NULL,
    starting INTEGER NOT NULL,
    PRIMARY KEY (minute, instance, pool)
);

-- Wait percentiles per hour read the jobs that started in the window.
CREATE INDEX jobs_started ON jobs (started_at) WHERE started_at IS NOT NULL;
