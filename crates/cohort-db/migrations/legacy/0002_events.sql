-- The event service's tables: exposures and metric events, written only by its drainer
-- (COPY into a staging table, then INSERT ... ON CONFLICT DO NOTHING) and read by analysis.
--
-- Both are partitioned by day on the event timestamp (UTC). The drainer creates the daily
-- partitions (`<table>_pYYYYMMDD`) a few days ahead and on demand for any day it is about to
-- write, so there is no DEFAULT partition to get in the way of creating one later. Old days are
-- dropped by detaching their partitions.
--
-- Deduplication: a client retries a batch with the same event ids and timestamps, so the key
-- (environment_id, event_id, ts) stores each event once. The partition key must be part of
-- every unique index of a partitioned table, hence ts in the key.
--
-- No foreign keys: the environment comes from a verified API key, and a per-row check would
-- slow the bulk load for nothing. Units, variants and event names are identifiers, compared
-- byte-wise (COLLATE "C"): analysis groups by them and never needs a linguistic order, and
-- byte-wise index maintenance is much cheaper than a locale's.

CREATE TABLE exposures (
    environment_id  uuid NOT NULL,
    event_id        uuid NOT NULL,
    experiment_id   uuid NOT NULL,
    unit            text COLLATE "C" NOT NULL,
    variant         text COLLATE "C" NOT NULL,
    config_version  bigint NOT NULL,
    -- Context attributes named by the experiment, string to string.
    attributes      jsonb NOT NULL DEFAULT '{}',
    ts              timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    PRIMARY KEY (environment_id, event_id, ts)
) PARTITION BY RANGE (ts);

-- Analysis: each unit's first exposure per experiment, by variant.
CREATE INDEX exposures_analysis ON exposures (environment_id, experiment_id, unit, ts);

CREATE TABLE metric_events (
    environment_id  uuid NOT NULL,
    event_id        uuid NOT NULL,
    unit            text COLLATE "C" NOT NULL,
    event           text COLLATE "C" NOT NULL,
    -- Null for conversion events without a value.
    value           double precision,
    properties      jsonb NOT NULL DEFAULT '{}',
    ts              timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    PRIMARY KEY (environment_id, event_id, ts)
) PARTITION BY RANGE (ts);

-- Analysis: a metric's events per unit after the unit's first exposure.
CREATE INDEX metric_events_analysis ON metric_events (environment_id, event, unit, ts);
