-- Audit log of every delivery, and the durable queue the processor works from.
CREATE TABLE webhook_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    action          TEXT,
    repository      TEXT,
    signature_valid INTEGER NOT NULL,
    received_at     TEXT    NOT NULL,
    processed       INTEGER NOT NULL DEFAULT 0,
    processed_at    TEXT,
    outcome         TEXT,            -- processed | ignored | failed | rejected
    outcome_detail  TEXT,            -- the reason or the error
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT
);
-- Dedup by GUID among genuine deliveries only: a forged request must not be able to
-- reserve the GUID of a real delivery.
CREATE UNIQUE INDEX webhook_events_delivery ON webhook_events (delivery_id) WHERE signature_valid = 1;
CREATE INDEX webhook_events_pending ON webhook_events (id) WHERE processed = 0;
CREATE INDEX webhook_events_received ON webhook_events (received_at);
CREATE INDEX webhook_events_repository ON webhook_events (repository, id);

-- Payloads apart from the rows the processor updates: SQLite rewrites a whole record on
-- UPDATE, overflow pages included, so keeping 7 KB bodies here makes marking a delivery
-- processed a small write instead of a second copy of the body.
CREATE TABLE webhook_payloads (
    event_id INTEGER PRIMARY KEY REFERENCES webhook_events (id),
    payload  TEXT    NOT NULL
);

CREATE TABLE workflow_runs (
    id            INTEGER PRIMARY KEY,   -- GitHub run id
    repository    TEXT    NOT NULL,
    workflow_name TEXT,
    head_branch   TEXT,
    head_sha      TEXT,
    event         TEXT,
    status        TEXT,
    conclusion    TEXT,
    run_attempt   INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT,
    updated_at    TEXT
);

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY,   -- GitHub job id
    run_id            INTEGER NOT NULL,
    run_attempt       INTEGER NOT NULL,
    repository        TEXT    NOT NULL,
    workflow_name     TEXT,
    name              TEXT    NOT NULL,
    labels            TEXT    NOT NULL,      -- JSON array
    priority          INTEGER NOT NULL,
    pool              TEXT,
    status            TEXT    NOT NULL,
    conclusion        TEXT,
    runner_id         INTEGER,
    runner_name       TEXT,
    runner_group_name TEXT,
    created_at        TEXT,
    started_at        TEXT,
    completed_at      TEXT,
    first_seen_at     TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL
);
CREATE INDEX jobs_status ON jobs (status, id);
CREATE INDEX jobs_repository ON jobs (repository, id);
