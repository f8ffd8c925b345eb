-- Batch writes: one environment version may hold several changes (cohortctl apply of a file,
-- ApplyBatch). Each change keeps its own audit row, which is still the change log; the rows
-- of one version are told apart, in operation order, by batch_index (0 for single writes).
ALTER TABLE audit_log ADD COLUMN batch_index integer NOT NULL DEFAULT 0;

DROP INDEX audit_log_version;
CREATE UNIQUE INDEX audit_log_version ON audit_log (environment_id, version, batch_index) WHERE version IS NOT NULL;
