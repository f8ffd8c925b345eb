-- Schema cohort_analysis: the analysis service's state: each experiment's frozen plan, its
-- formal looks (the group-sequential schedule), the result of every look, the latest result,
-- and the derived incremental state. Every table is keyed by (environment_id, experiment_id):
-- an experiment id is unique only within its environment. Nothing but the analysis service
-- reads or writes it; analysis reads the events under cohort_events' read-model contract.
--
-- Applied with search_path = cohort_analysis. It is the squash of the single legacy list's
-- 0003_analysis, the analysis tables of 0004_analysis_incremental and 0005_analysis_scoped, and
-- adopts an installation made by that list (tables in public, public.schema_migrations at
-- version 6): each table moves here, whatever already exists is left alone, and the foreign
-- keys to environments (another service's table) are dropped: no foreign key crosses schemas.

DO $$
BEGIN
    IF to_regclass('public.analysis_looks') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = to_regclass('public.analysis_looks') AND attname = 'environment_id' AND NOT attisdropped
    ) THEN
        RAISE EXCEPTION 'public.analysis_looks has no environment_id: apply the legacy migrations up to version 6 (the previous release''s migrate) first';
    END IF;
END $$;

ALTER TABLE IF EXISTS public.analysis_plans SET SCHEMA cohort_analysis;
ALTER TABLE IF EXISTS public.analysis_looks SET SCHEMA cohort_analysis;
ALTER TABLE IF EXISTS public.analysis_latest SET SCHEMA cohort_analysis;
ALTER TABLE IF EXISTS public.analysis_watermark SET SCHEMA cohort_analysis;
ALTER TABLE IF EXISTS public.analysis_state SET SCHEMA cohort_analysis;
ALTER TABLE IF EXISTS public.analysis_units SET SCHEMA cohort_analysis;
ALTER TABLE IF EXISTS public.analysis_unit_events SET SCHEMA cohort_analysis;
ALTER TABLE IF EXISTS public.analysis_sums SET SCHEMA cohort_analysis;

-- Columns stay in the order the legacy list left them (environment_id last in looks), so an
-- adopted installation and a fresh one have the same tables.
CREATE TABLE IF NOT EXISTS analysis_plans (
    experiment_id              uuid NOT NULL,
    environment_id             uuid NOT NULL,
    planned_units_per_variant  bigint NOT NULL,
    -- How the plan was made: the metric, its control baseline, the effect, alpha and power.
    basis                      jsonb NOT NULL,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment_id, experiment_id)
);

-- One row per look; the primary key is what makes a look impossible to record twice, even
-- if two replicas briefly both believe they lead.
CREATE TABLE IF NOT EXISTS analysis_looks (
    experiment_id         uuid NOT NULL,
    look                  integer NOT NULL CHECK (look >= 1),
    information_fraction  double precision NOT NULL,
    boundary              double precision NOT NULL,
    result                jsonb NOT NULL,
    at                    timestamptz NOT NULL DEFAULT now(),
    environment_id        uuid NOT NULL,
    PRIMARY KEY (environment_id, experiment_id, look)
);

-- Refreshed every cycle, between looks too.
CREATE TABLE IF NOT EXISTS analysis_latest (
    experiment_id   uuid NOT NULL,
    environment_id  uuid NOT NULL,
    look            integer NOT NULL,
    result          jsonb NOT NULL,
    computed_at     timestamptz NOT NULL,
    PRIMARY KEY (environment_id, experiment_id)
);

-- Incremental analysis: each cycle reads only the events stored since the previous one (by
-- ingest_xid, see cohort_events) and advances the per-unit state and per-variant sums below.
-- One row: the snapshot the last cycle advanced to, and the lock every advance takes first,
-- so two replicas that both believe they lead cannot both apply the same events.
CREATE TABLE IF NOT EXISTS analysis_watermark (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    through   pg_snapshot,
    advanced  timestamptz
);
INSERT INTO analysis_watermark (id) VALUES (true) ON CONFLICT DO NOTHING;

-- The state below is derived data: every row can be rebuilt from the events. It is UNLOGGED
-- (no WAL: rebuilding 10 million events' worth is several times faster), so a crash or a
-- failover to a standby empties it; analysis_state empties with it, and the next cycle
-- rebuilds every experiment.

-- Per running experiment: what its state was built for (metric events and breakdown
-- attributes) and the snapshot it is complete through. A different basis, or a snapshot
-- other than the previous cycle's (the experiment was paused meanwhile), rebuilds it.
CREATE UNLOGGED TABLE IF NOT EXISTS analysis_state (
    environment_id  uuid NOT NULL,
    experiment_id   uuid NOT NULL,
    basis           jsonb NOT NULL,
    through         pg_snapshot NOT NULL,
    PRIMARY KEY (environment_id, experiment_id)
);

-- Each exposed unit's first exposure: when, the smallest and largest variant it was exposed
-- to (they differ for a unit that saw two: excluded), and the attributes of that exposure.
-- Each of these folds in new exposures without reading the old ones again.
CREATE UNLOGGED TABLE IF NOT EXISTS analysis_units (
    environment_id  uuid NOT NULL,
    experiment_id   uuid NOT NULL,
    unit            text COLLATE "C" NOT NULL,
    first_ts        timestamptz NOT NULL,
    variant         text COLLATE "C" NOT NULL,
    max_variant     text COLLATE "C" NOT NULL,
    multi           boolean GENERATED ALWAYS AS (variant <> max_variant) STORED,
    attributes      jsonb NOT NULL,
    PRIMARY KEY (environment_id, experiment_id, unit)
);
-- New metric events find the experiments their unit is in.
CREATE INDEX IF NOT EXISTS analysis_units_by_unit ON analysis_units (environment_id, unit);

-- Each unit's events of one metric event name after its first exposure: how many, the sum
-- of their values and how many had one.
CREATE UNLOGGED TABLE IF NOT EXISTS analysis_unit_events (
    environment_id  uuid NOT NULL,
    experiment_id   uuid NOT NULL,
    unit            text COLLATE "C" NOT NULL,
    event           text COLLATE "C" NOT NULL,
    events          bigint NOT NULL,
    value_sum       double precision NOT NULL,
    valued          bigint NOT NULL,
    PRIMARY KEY (environment_id, experiment_id, unit, event)
);

-- The per-unit state reduced per population (`attribute` '' = all units, else a breakdown
-- attribute and its `value`), variant and event ('' = the unit count; variant '' with
-- attribute '' = units excluded for seeing two variants). Kept up to date by adding each
-- changed unit's new contribution and subtracting its old one.
CREATE UNLOGGED TABLE IF NOT EXISTS analysis_sums (
    environment_id     uuid NOT NULL,
    experiment_id      uuid NOT NULL,
    attribute          text COLLATE "C" NOT NULL,
    value              text COLLATE "C" NOT NULL,
    variant            text COLLATE "C" NOT NULL,
    event              text COLLATE "C" NOT NULL,
    units              bigint NOT NULL,
    count_sum          double precision NOT NULL,
    count_sum_sq       double precision NOT NULL,
    value_sum          double precision NOT NULL,
    value_sum_sq       double precision NOT NULL,
    mean_units         bigint NOT NULL,
    mean_sum           double precision NOT NULL,
    mean_sum_sq        double precision NOT NULL,
    PRIMARY KEY (environment_id, experiment_id, attribute, value, variant, event)
);

-- The legacy plans and latest results referenced environments (analysis_*_environment_id_fkey).
DO $$
DECLARE
    fk record;
BEGIN
    FOR fk IN
        SELECT c.conrelid::regclass AS tbl, c.conname
        FROM pg_constraint c
        JOIN pg_class t ON t.oid = c.conrelid
        JOIN pg_class r ON r.oid = c.confrelid
        WHERE c.contype = 'f' AND t.relnamespace = 'cohort_analysis'::regnamespace
          AND r.relnamespace <> t.relnamespace
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tbl, fk.conname);
    END LOOP;
END $$;
