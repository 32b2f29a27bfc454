-- A fleet of instances on one database (DESIGN §9, `database.fleet`).

-- One row per instance that ever joined: its heartbeat says it is alive. The leader sets
-- `dead_since` on an instance silent for `database.instance_timeout`; the instance clears it
-- when it is heard from again (and then adopts what survived, as after a restart).
CREATE TABLE fleet_instances (
    id           TEXT        PRIMARY KEY,   -- server.instance_id
    version      TEXT        NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,      -- the database's clock, not the instance's
    dead_since   TIMESTAMPTZ,
    pools        TEXT[]      NOT NULL,
    capacity     BIGINT      NOT NULL,      -- limits.max_runners
    runners      BIGINT      NOT NULL       -- live runners at the last heartbeat
);

-- The leader's lease: one row, renewed by the holder's heartbeats, taken over once expired.
CREATE TABLE fleet_leader (
    id         SMALLINT    PRIMARY KEY CHECK (id = 1),
    holder     TEXT        NOT NULL,
    since      TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- The instance that launches for a job: at most one, so no job gets runners from two.
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
ALTER TABLE jobs ADD COLUMN claimed_at TIMESTAMPTZ;
CREATE INDEX jobs_updated_at ON jobs (updated_at);
CREATE INDEX jobs_claimed_by ON jobs (claimed_by) WHERE claimed_by IS NOT NULL;
