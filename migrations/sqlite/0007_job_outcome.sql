-- Why runnerhub will never launch a runner for a job (DESIGN §13): `no_pool`,
-- `unusable_repository`, `unknown_scope`, `not_found`; NULL while it may still get one. Set
-- once, never cleared: a later delivery updates the job's status, not its outcome.
ALTER TABLE jobs ADD COLUMN outcome TEXT;
ALTER TABLE jobs ADD COLUMN outcome_detail TEXT;

-- Jobs recorded before the column: those no pool served were already left alone.
UPDATE jobs SET outcome = 'no_pool', outcome_detail = 'no pool serves its labels'
    WHERE pool IS NULL;
