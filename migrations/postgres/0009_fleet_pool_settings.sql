-- A fleet's dashboards show every instance's pools (DESIGN §9): each heartbeat writes the
-- instance's pools as configured, `[{"name", "labels", "max_runners", "min_idle"}]`, so that
-- another instance can show "2 of 4 runners" for a pool it does not serve itself. The counters
-- come from `runners` (their `instance` and `pool`), never from here.
ALTER TABLE fleet_instances ADD COLUMN pool_settings JSONB NOT NULL DEFAULT '[]';
