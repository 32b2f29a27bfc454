-- The webhooks runnerhub knows (DESIGN §12): installed by `runnerhub hooks install`, or named
-- by a received delivery's X-GitHub-Hook-ID. Redelivery lists each one's recent deliveries.
CREATE TABLE webhook_hooks (
    kind          TEXT    NOT NULL,   -- repository | organization | integration (the App's hook)
    owner         TEXT    NOT NULL,   -- owner/name, the organization login, '' for the App
    hook_id       INTEGER NOT NULL,   -- GitHub's hook id; 0 for the App's (its path needs none)
    source        TEXT    NOT NULL,   -- installed | received
    first_seen_at TEXT    NOT NULL,
    PRIMARY KEY (kind, owner, hook_id)
);

-- Redeliveries asked of GitHub, one row per delivery GUID (GitHub lists every attempt under
-- it), so that a restart does not ask again what was asked.
CREATE TABLE webhook_redeliveries (
    delivery_guid  TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    hook_id        INTEGER NOT NULL,
    event          TEXT    NOT NULL,
    action         TEXT,
    asks           INTEGER NOT NULL,
    attempt_id     INTEGER NOT NULL,  -- the latest attempt GitHub listed when last asked
    first_asked_at TEXT    NOT NULL,
    last_asked_at  TEXT    NOT NULL,
    next_ask_at    TEXT,              -- NULL once recovered or given up
    recovered_at   TEXT
);
CREATE INDEX webhook_redeliveries_open ON webhook_redeliveries (last_asked_at) WHERE recovered_at IS NULL;
