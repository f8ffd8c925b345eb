-- Schema cohort_events: the event service's tables, exposures and metric events, written only
-- by its drainer (COPY into session staging tables, then INSERT ... ON CONFLICT DO NOTHING).
-- The drainer keeps no other state in the database: its checkpoint lives in the spool.
--
-- Read-model contract. These tables are the event store's published read model: the analysis
-- service may read them, and nothing but the event service writes them. What analysis may rely
-- on, and what the event service keeps true:
-- - the columns exposures (environment_id, experiment_id, unit, variant, attributes, ts,
--   ingest_xid) and metric_events (environment_id, unit, event, value, ts, ingest_xid), with
--   these names, types and collations (unit, variant and event COLLATE "C");
-- - a row is never updated; rows leave only with a whole day's partition (retention);
-- - ingest_xid is the id of the transaction that inserted the row, set at insert by its
--   default and never written by the drainer; analysis reads "the rows committed since snapshot
--   S" as NOT pg_visible_in_snapshot(ingest_xid, S), served by the ingest indexes;
-- - the (environment_id, experiment_id, unit, ts) and (environment_id, event, unit, ts) indexes
--   stay, for analysis's per-experiment and per-metric reads.
-- Any change to these is a change of the contract: analysis changes with it, in one release.
--
-- Applied with search_path = cohort_events. It is the squash of the single legacy list's
-- 0002_events and the ingest_xid columns and indexes of 0004_analysis_incremental, and adopts an
-- installation made by that list (tables in public, public.schema_migrations at version 6): the
-- tables and every partition of theirs in public move here, with their indexes; whatever
-- already exists is then left alone.
--
-- Both tables are partitioned by day on the event timestamp (UTC). The drainer creates the
-- daily partitions (`<table>_pYYYYMMDD`) a few days ahead and on demand for any day it is about
-- to write, so there is no DEFAULT partition to get in the way of creating one later. Old days
-- are dropped by detaching their partitions.
--
-- Deduplication: a client retries a batch with the same event ids and timestamps, so the key
-- (environment_id, event_id, ts) stores each event once. The partition key must be part of
-- every unique index of a partitioned table, hence ts in the key.
--
-- No foreign keys: the environment comes from a verified API key, and a per-row check would
-- slow the bulk load for nothing. Units, variants and event names are identifiers, compared
-- byte-wise (COLLATE "C"): analysis groups by them and never needs a linguistic order, and
-- byte-wise index maintenance is much cheaper than a locale's.

DO $$
BEGIN
    IF to_regclass('public.exposures') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = to_regclass('public.exposures') AND attname = 'ingest_xid' AND NOT attisdropped
    ) THEN
        RAISE EXCEPTION 'public.exposures has no ingest_xid: apply the legacy migrations up to version 6 (the previous release''s migrate) first';
    END IF;
END $$;

-- ALTER TABLE ... SET SCHEMA moves only the table named, not its partitions (below).
ALTER TABLE IF EXISTS public.exposures SET SCHEMA cohort_events;
ALTER TABLE IF EXISTS public.metric_events SET SCHEMA cohort_events;

CREATE TABLE IF NOT EXISTS exposures (
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
    -- The transaction that stored the row (see the contract above).
    ingest_xid      xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (environment_id, event_id, ts)
) PARTITION BY RANGE (ts);

-- Analysis: each unit's first exposure per experiment, by variant.
CREATE INDEX IF NOT EXISTS exposures_analysis ON exposures (environment_id, experiment_id, unit, ts);
-- Analysis: the rows stored since its last cycle.
CREATE INDEX IF NOT EXISTS exposures_ingest ON exposures (ingest_xid);

CREATE TABLE IF NOT EXISTS metric_events (
    environment_id  uuid NOT NULL,
    event_id        uuid NOT NULL,
    unit            text COLLATE "C" NOT NULL,
    event           text COLLATE "C" NOT NULL,
    -- Null for conversion events without a value.
    value           double precision,
    properties      jsonb NOT NULL DEFAULT '{}',
    ts              timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    ingest_xid      xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (environment_id, event_id, ts)
) PARTITION BY RANGE (ts);

-- Analysis: a metric's events per unit after the unit's first exposure.
CREATE INDEX IF NOT EXISTS metric_events_analysis ON metric_events (environment_id, event, unit, ts);
CREATE INDEX IF NOT EXISTS metric_events_ingest ON metric_events (ingest_xid);

-- The partitions a legacy installation made in public (any number of days, any name).
DO $$
DECLARE
    child name;
BEGIN
    FOR child IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent IN ('cohort_events.exposures'::regclass, 'cohort_events.metric_events'::regclass)
          AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'public')
    LOOP
        EXECUTE format('ALTER TABLE public.%I SET SCHEMA cohort_events', child);
    END LOOP;
END $$;
