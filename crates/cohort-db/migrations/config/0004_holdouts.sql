-- Holdouts: a sixth kind of entity, kept out of every experiment in its scope. The kind check
-- was created unnamed (by this schema's first migration or the single list before it), so it
-- is found by its definition.
DO $$
DECLARE c record;
BEGIN
    FOR c IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'entities'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%kind%'
    LOOP
        EXECUTE format('ALTER TABLE entities DROP CONSTRAINT %I', c.conname);
    END LOOP;
END $$;
ALTER TABLE entities ADD CONSTRAINT entities_kind
    CHECK (kind IN ('flag', 'experiment', 'layer', 'segment', 'metric', 'holdout'));
