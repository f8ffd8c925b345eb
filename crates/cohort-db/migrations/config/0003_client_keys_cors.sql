-- Client-side keys (browsers, mobile apps): like SDK keys they belong to one environment, but
-- they may only evaluate through the evaluation service and send that environment's exposures.
-- The kind checks were created unnamed (by this schema's first migration or the single list
-- before it), so they are found by their definition.
DO $$
DECLARE c record;
BEGIN
    FOR c IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'api_keys'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%kind%'
    LOOP
        EXECUTE format('ALTER TABLE api_keys DROP CONSTRAINT %I', c.conname);
    END LOOP;
END $$;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_kind CHECK (kind IN ('admin', 'sdk', 'client'));
ALTER TABLE api_keys ADD CONSTRAINT api_keys_environment
    CHECK ((kind IN ('sdk', 'client')) = (environment_id IS NOT NULL));

-- The browser origins allowed to call the evaluation service with this environment's keys
-- (`*` for any); none by default.
ALTER TABLE environments ADD COLUMN IF NOT EXISTS cors_origins text[] NOT NULL DEFAULT '{}';
