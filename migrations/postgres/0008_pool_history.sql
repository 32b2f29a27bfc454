-- Pool history for the dashboard's charts (`GET /api/history`, src/history): one row per minute,
-- instance and pool. `busy`, `idle` and `starting` are that instance's own runners, summed over
-- the fleet's instances when read; `queued` is the whole queue's (read from `jobs`, the same for
-- every instance), so reading takes the largest instance's figure for the minute, never the sum.
-- Kept 7 days (src/retention.rs). Same table as migrations/sqlite/0008_pool_history.sql.
CREATE TABLE pool_samples (
    minute   TIMESTAMPTZ NOT NULL,   -- the sample's time, truncated to the minute
    instance TEXT        NOT NULL,   -- server.instance_id
    pool     TEXT        NOT NULL,
    queued   BIGINT      NOT NULL,
    busy     BIGINT      NOT NULL,
    idle     BIGINT      NOT NULL,
    starting BIGINT      NOT NULL,
    PRIMARY KEY (minute, instance, pool)
);

-- Wait percentiles per hour read the jobs that started in the window.
CREATE INDEX jobs_started ON jobs (started_at) WHERE started_at IS NOT NULL;
