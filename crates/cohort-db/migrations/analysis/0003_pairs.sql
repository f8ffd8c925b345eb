-- Per population, variant and pair of streams (a ratio's numerator and denominator, CUPED's
-- pre-period and post-exposure values): the sums of the per-unit cross products. Derived
-- like analysis_sums, and as unlogged: a crash rebuilds it.
CREATE UNLOGGED TABLE IF NOT EXISTS analysis_pair_sums (
    environment_id  uuid NOT NULL,
    experiment_id   uuid NOT NULL,
    attribute       text COLLATE "C" NOT NULL,
    value           text COLLATE "C" NOT NULL,
    variant         text COLLATE "C" NOT NULL,
    pair            text COLLATE "C" NOT NULL,
    units           bigint NOT NULL,
    count_count     double precision NOT NULL,
    count_value     double precision NOT NULL,
    value_count     double precision NOT NULL,
    value_value     double precision NOT NULL,
    PRIMARY KEY (environment_id, experiment_id, attribute, value, variant, pair)
);
