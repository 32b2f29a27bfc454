-- One row per runner container / JIT registration, kept after removal for the record.
CREATE TABLE runners (
    id               TEXT        PRIMARY KEY,   -- runnerhub's id (UUID), also a container label
    pool             TEXT        NOT NULL,
    state            TEXT        NOT NULL,      -- requested|creating|idle|busy|finished|removed|failed
    failure_reason   TEXT,
    labels           TEXT[]      NOT NULL,      -- registered at GitHub
    scope            TEXT        NOT NULL,      -- repos/o/r or orgs/o
    name             TEXT        NOT NULL,      -- GitHub runner name = container name
    github_runner_id BIGINT,
    container_id     TEXT,
    instance         TEXT        NOT NULL,
    launched_for     BIGINT,                    -- job id it was started for; NULL = warm
    job_id           BIGINT,                    -- job that took it
    draining         BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at       TIMESTAMPTZ NOT NULL,
    idle_at          TIMESTAMPTZ,
    busy_at          TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    removed_at       TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX runners_name ON runners (name);
CREATE INDEX runners_live ON runners (state) WHERE state <> 'removed';
CREATE INDEX runners_created ON runners (created_at);
