-- Audit log of every delivery, and the durable queue the processor works from.
-- Same tables and meaning as migrations/sqlite/0001_init.sql, in PostgreSQL's own types.
CREATE TABLE webhook_events (
    id              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     TEXT        NOT NULL,
    event           TEXT        NOT NULL,
    action          TEXT,
    repository      TEXT,
    signature_valid BOOLEAN     NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL,
    processed       BOOLEAN     NOT NULL DEFAULT FALSE,
    processed_at    TIMESTAMPTZ,
    outcome         TEXT,                -- processed | ignored | failed | rejected
    outcome_detail  TEXT,                -- the reason or the error
    attempts        BIGINT      NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ
);
-- Dedup by GUID among genuine deliveries only: a forged request must not be able to
-- reserve the GUID of a real delivery.
CREATE UNIQUE INDEX webhook_events_delivery ON webhook_events (delivery_id) WHERE signature_valid;
CREATE INDEX webhook_events_pending ON webhook_events (id) WHERE NOT processed;
CREATE INDEX webhook_events_received ON webhook_events (received_at);
CREATE INDEX webhook_events_repository ON webhook_events (repository, id);

-- Payloads apart from the rows the processor updates: every UPDATE writes a whole new row
-- version, and a compressed body (usually under TOAST's 2 KB threshold, so kept inline) would be
-- copied each time a delivery is marked. The bytes are the SQLite store's, compressed as
-- src/webhook/payload_codec.rs says.
CREATE TABLE webhook_payloads (
    event_id BIGINT PRIMARY KEY REFERENCES webhook_events (id),
    payload  BYTEA  NOT NULL
);

CREATE TABLE workflow_runs (
    id            BIGINT PRIMARY KEY,   -- GitHub run id
    repository    TEXT   NOT NULL,
    workflow_name TEXT,
    head_branch   TEXT,
    head_sha      TEXT,
    event         TEXT,
    status        TEXT,
    conclusion    TEXT,
    run_attempt   BIGINT NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ
);

CREATE TABLE jobs (
    id                BIGINT      PRIMARY KEY,   -- GitHub job id
    run_id            BIGINT      NOT NULL,
    run_attempt       BIGINT      NOT NULL,
    repository        TEXT        NOT NULL,
    workflow_name     TEXT,
    name              TEXT        NOT NULL,
    labels            TEXT[]      NOT NULL,      -- in the order GitHub sent them
    priority          BIGINT      NOT NULL,
    pool              TEXT,
    status            TEXT        NOT NULL,
    conclusion        TEXT,
    runner_id         BIGINT,
    runner_name       TEXT,
    runner_group_name TEXT,
    created_at        TIMESTAMPTZ,
    started_at        TIMESTAMPTZ,
    completed_at      TIMESTAMPTZ,
    first_seen_at     TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX jobs_status ON jobs (status, id);
CREATE INDEX jobs_repository ON jobs (repository, id);
