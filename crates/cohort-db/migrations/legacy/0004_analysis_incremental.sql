-- Incremental analysis: each cycle reads only the events stored since the previous one and
-- advances persisted per-unit state and per-variant sums.
--
-- "Stored since" is decided by transaction ids, not timestamps: an event's `ts` can be days
-- old and its `received_at` older than rows already analyzed (a spool drained after a
-- database outage). Every row records the id of the transaction that stored it; a cycle
-- keeps the snapshot it read under, and the next one takes exactly the rows committed after
-- that snapshot (`NOT pg_visible_in_snapshot(ingest_xid, previous)`), so nothing in flight is
-- skipped and nothing is read twice. The default is stable, so existing rows get this
-- migration's id without a rewrite and count as stored before any cycle.
ALTER TABLE exposures ADD COLUMN ingest_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE metric_events ADD COLUMN ingest_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX exposures_ingest ON exposures (ingest_xid);
CREATE INDEX metric_events_ingest ON metric_events (ingest_xid);

-- One row: the snapshot the last cycle advanced to, and the lock every advance takes first,
-- so two replicas that both believe they lead cannot both apply the same events.
CREATE TABLE analysis_watermark (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    through   pg_snapshot,
    advanced  timestamptz
);
INSERT INTO analysis_watermark (id) VALUES (true);

-- The state below is derived data: every row can be rebuilt from the events. It is UNLOGGED
-- (no WAL: rebuilding 10 million events' worth is several times faster), so a crash or a
-- failover to a standby empties it; analysis_state empties with it, and the next cycle
-- rebuilds every experiment.

-- Per running experiment: what its state was built for (metric events and breakdown
-- attributes) and the snapshot it is complete through. A different basis, or a snapshot
-- other than the previous cycle's (the experiment was paused meanwhile), rebuilds it.
CREATE UNLOGGED TABLE analysis_state (
    experiment_id   uuid PRIMARY KEY,
    environment_id  uuid NOT NULL,
    basis           jsonb NOT NULL,
    through         pg_snapshot NOT NULL
);

-- Each exposed unit's first exposure: when, the smallest and largest variant it was exposed
-- to (they differ for a unit that saw two: excluded), and the attributes of that exposure.
-- Each of these folds in new exposures without reading the old ones again.
CREATE UNLOGGED TABLE analysis_units (
    experiment_id   uuid NOT NULL,
    unit            text COLLATE "C" NOT NULL,
    environment_id  uuid NOT NULL,
    first_ts        timestamptz NOT NULL,
    variant         text COLLATE "C" NOT NULL,
    max_variant     text COLLATE "C" NOT NULL,
    multi           boolean GENERATED ALWAYS AS (variant <> max_variant) STORED,
    attributes      jsonb NOT NULL,
    PRIMARY KEY (experiment_id, unit)
);
-- New metric events find the experiments their unit is in.
CREATE INDEX analysis_units_by_unit ON analysis_units (environment_id, unit);

-- Each unit's events of one metric event name after its first exposure: how many, the sum
-- of their values and how many had one.
CREATE UNLOGGED TABLE analysis_unit_events (
    experiment_id  uuid NOT NULL,
    unit           text COLLATE "C" NOT NULL,
    event          text COLLATE "C" NOT NULL,
    events         bigint NOT NULL,
    value_sum      double precision NOT NULL,
    valued         bigint NOT NULL,
    PRIMARY KEY (experiment_id, unit, event)
);

-- The per-unit state reduced per population (`attribute` '' = all units, else a breakdown
-- attribute and its `value`), variant and event ('' = the unit count; variant '' with
-- attribute '' = units excluded for seeing two variants). Kept up to date by adding each
-- changed unit's new contribution and subtracting its old one.
CREATE UNLOGGED TABLE analysis_sums (
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
    PRIMARY KEY (experiment_id, attribute, value, variant, event)
);
