-- The live feed (`GET /ws`): every state change with its sequence number, kept so that a client
-- that reconnects with `since=<seq>` gets what it missed. Pruned to a bounded window.
CREATE TABLE live_events (
    seq        BIGINT      PRIMARY KEY,   -- assigned by the event bus, strictly increasing
    type       TEXT        NOT NULL,
    repository TEXT,
    time       TIMESTAMPTZ NOT NULL,
    message    TEXT        NOT NULL       -- the exact JSON text sent to clients
);
CREATE INDEX live_events_time ON live_events (time);

-- One row. `reserved_seq`: seqs up to here may have been handed out (persisted or not), so a
-- restart after a crash continues above it and never reuses a seq a client may have seen.
-- `pruned_through`: every seq up to here has been deleted; `since` below it is too old.
CREATE TABLE live_event_meta (
    id             BIGINT PRIMARY KEY CHECK (id = 1),
    reserved_seq   BIGINT NOT NULL,
    pruned_through BIGINT NOT NULL
);
INSERT INTO live_event_meta (id, reserved_seq, pruned_through) VALUES (1, 0, 0);
