-- Analysis state scoped by environment. An experiment id is unique only within its
-- environment: two organizations may hold the same id (copied from an example, or chosen on
-- purpose), and neither may ever see, change or break the other's results. So every table of
-- the analysis service is keyed by (environment_id, experiment_id), and every statement joins
-- on both.

-- The derived state is rebuilt from the events by the next cycles: recreate it keyed anew.
DROP TABLE analysis_sums, analysis_unit_events, analysis_units, analysis_state;

CREATE UNLOGGED TABLE analysis_state (
    environment_id  uuid NOT NULL,
    experiment_id   uuid NOT NULL,
    basis           jsonb NOT NULL,
    through         pg_snapshot NOT NULL,
    PRIMARY KEY (environment_id, experiment_id)
);

CREATE UNLOGGED TABLE analysis_units (
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
CREATE INDEX analysis_units_by_unit ON analysis_units (environment_id, unit);

CREATE UNLOGGED TABLE analysis_unit_events (
    environment_id  uuid NOT NULL,
    experiment_id   uuid NOT NULL,
    unit            text COLLATE "C" NOT NULL,
    event           text COLLATE "C" NOT NULL,
    events          bigint NOT NULL,
    value_sum       double precision NOT NULL,
    valued          bigint NOT NULL,
    PRIMARY KEY (environment_id, experiment_id, unit, event)
);

CREATE UNLOGGED TABLE analysis_sums (
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

-- Plans and latest results already name their environment; their keys now include it.
ALTER TABLE analysis_plans DROP CONSTRAINT analysis_plans_pkey;
ALTER TABLE analysis_plans ADD PRIMARY KEY (environment_id, experiment_id);
ALTER TABLE analysis_latest DROP CONSTRAINT analysis_latest_pkey;
ALTER TABLE analysis_latest ADD PRIMARY KEY (environment_id, experiment_id);

-- Looks learn their environment from the experiment's plan (every look follows a plan), else
-- from its latest result; a look that names neither cannot be attributed and is dropped.
ALTER TABLE analysis_looks ADD COLUMN environment_id uuid;
UPDATE analysis_looks l SET environment_id = p.environment_id
  FROM analysis_plans p WHERE p.experiment_id = l.experiment_id;
UPDATE analysis_looks l SET environment_id = r.environment_id
  FROM analysis_latest r WHERE l.environment_id IS NULL AND r.experiment_id = l.experiment_id;
DELETE FROM analysis_looks WHERE environment_id IS NULL;
ALTER TABLE analysis_looks ALTER COLUMN environment_id SET NOT NULL;
ALTER TABLE analysis_looks DROP CONSTRAINT analysis_looks_pkey;
ALTER TABLE analysis_looks ADD PRIMARY KEY (environment_id, experiment_id, look);
