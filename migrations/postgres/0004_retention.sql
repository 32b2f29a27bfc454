-- Retention (`database.retention`, src/retention.rs) deletes old rows oldest first, in small
-- batches: each batch must find its rows without walking past the ones it keeps. Same indexes
-- as migrations/sqlite/0004_retention.sql.
-- Forged deliveries have their own, shorter, retention: without this index each batch would
-- walk over the weeks of genuine deliveries received before them.
CREATE INDEX webhook_events_forged ON webhook_events (received_at) WHERE NOT signature_valid;
CREATE INDEX jobs_completed ON jobs (updated_at) WHERE status = 'completed';
CREATE INDEX workflow_runs_last_update ON workflow_runs (COALESCE(updated_at, created_at));
CREATE INDEX runners_removed ON runners (COALESCE(removed_at, updated_at)) WHERE state = 'removed';
