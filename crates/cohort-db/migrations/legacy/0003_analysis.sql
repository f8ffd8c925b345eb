-- The analysis service's state: each experiment's frozen plan, its formal looks (the
-- group-sequential schedule), the result of every look, and the latest result.

CREATE TABLE analysis_plans (
    experiment_id              uuid PRIMARY KEY,
    environment_id             uuid NOT NULL REFERENCES environments (id),
    planned_units_per_variant  bigint NOT NULL,
    -- How the plan was made: the metric, its control baseline, the effect, alpha and power.
    basis                      jsonb NOT NULL,
    created_at                 timestamptz NOT NULL DEFAULT now()
);

-- One row per look; the primary key is what makes a look impossible to record twice, even
-- if two replicas briefly both believe they lead.
CREATE TABLE analysis_looks (
    experiment_id         uuid NOT NULL,
    look                  integer NOT NULL CHECK (look >= 1),
    information_fraction  double precision NOT NULL,
    boundary              double precision NOT NULL,
    result                jsonb NOT NULL,
    at                    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_id, look)
);

-- Refreshed every cycle, between looks too.
CREATE TABLE analysis_latest (
    experiment_id   uuid PRIMARY KEY,
    environment_id  uuid NOT NULL REFERENCES environments (id),
    look            integer NOT NULL,
    result          jsonb NOT NULL,
    computed_at     timestamptz NOT NULL
);
