//! The incremental aggregation: persisted per-unit state and per-population sums, advanced
//! each cycle by the events stored since the previous cycle's snapshot.
//!
//! One advance is one REPEATABLE READ transaction, so every read sees one snapshot: the rows
//! new since the previous snapshot are exactly those committed after it and before this one
//! (`ingest_xid`, migration 0004), late timestamps or not. New exposures fold into each
//! unit's first exposure (earliest time, the attributes of that exposure, smallest and largest
//! variant: two variants exclude the unit) without reading old exposures. Units whose first
//! exposure is new or moved earlier get their metric events read again from there; other
//! touched units add their new events. The sums change by each touched unit's new
//! contribution minus its old one, so a cycle costs what arrived, not what is stored. An
//! experiment that is new, was not advanced by the previous cycle (paused), lost its state
//! (a crash: the tables are unlogged), or whose metric events or breakdowns changed is rebuilt
//! from all its rows, a bounded number per cycle.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use deadpool_postgres::Transaction;
use tokio_postgres::IsolationLevel;
use uuid::Uuid;

use super::{ExperimentRef, Store, StoreError, event_sums, pair_sums};
use crate::analyze::Aggregates;

/// What an experiment's state is built for.
#[derive(Debug, Clone, PartialEq)]
pub struct Basis {
    pub experiment_id: Uuid,
    pub environment_id: Uuid,
    /// The streams of its metrics (`MetricDef::streams`: an event name, within a span).
    pub events: Vec<String>,
    /// The pairs of streams whose per-unit cross products its metrics need
    /// (`MetricDef::stream_pairs`).
    pub pairs: Vec<(String, String)>,
    pub breakdowns: Vec<String>,
}

impl Basis {
    pub fn id(&self) -> ExperimentRef {
        ExperimentRef { environment_id: self.environment_id, experiment_id: self.experiment_id }
    }

    /// Its streams, each once, in order.
    pub fn distinct_events(&self) -> Vec<String> {
        let mut events = self.events.clone();
        events.sort();
        events.dedup();
        events
    }

    /// Its pairs of streams, each once, in order.
    pub fn distinct_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = self.pairs.clone();
        pairs.sort();
        pairs.dedup();
        pairs
    }

    fn json(&self) -> serde_json::Value {
        let events = self.distinct_events();
        let mut json = serde_json::json!({"events": events, "breakdowns": self.breakdowns});
        if !self.pairs.is_empty() {
            json["pairs"] = serde_json::json!(self.distinct_pairs());
        }
        json
    }
}

/// An experiment's aggregates: all units, units excluded for seeing two variants, and per
/// breakdown attribute (in the experiment's order) per value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExperimentSums {
    pub overall: Aggregates,
    pub excluded: u64,
    pub segments: Vec<(String, Vec<(String, Aggregates)>)>,
}

/// An experiment's sums as they are read, segments still keyed by attribute.
#[derive(Debug, Default)]
struct Collected {
    overall: Aggregates,
    excluded: u64,
    segments: HashMap<String, BTreeMap<String, Aggregates>>,
}

/// What one advance did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advanced {
    /// Experiments rebuilt from all their rows.
    pub rebuilt: usize,
    /// Experiments that need a rebuild beyond this advance's share: they have no state yet
    /// and must not be analyzed until a later advance builds it.
    pub pending: Vec<ExperimentRef>,
    /// Units whose state was recomputed or extended.
    pub touched_units: u64,
    /// What the incremental fold took in: units with new exposures plus new metric events of
    /// the experiments' streams, stored since the previous advance (rebuilt experiments aside).
    /// Counted by the fold anyway, so the backlog a cycle found costs no query of its own.
    pub folded: u64,
    /// What the advanced state covers.
    pub coverage: Coverage,
}

/// What an advance covers: every event stored before its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// When the snapshot was taken (Unix ms).
    pub as_of_ms: i64,
    /// The snapshot's xmin: every event stored by a transaction below it is counted.
    pub ingest_position: u64,
    /// Per environment, the newest acknowledgement time (`received_at`, Unix ms) of its events
    /// counted so far.
    pub newest_received_ms: HashMap<Uuid, i64>,
}

const TEMP_TABLES: &str = r#"
SET LOCAL work_mem = '256MB';
SET LOCAL jit = off;
CREATE TEMP TABLE run_exp (environment_id uuid, experiment_id uuid, rebuild boolean NOT NULL,
    PRIMARY KEY (environment_id, experiment_id)) ON COMMIT DROP;
CREATE TEMP TABLE run_events (environment_id uuid, experiment_id uuid, stream text COLLATE "C",
    event text COLLATE "C", window_s bigint, pre_s bigint,
    PRIMARY KEY (environment_id, experiment_id, stream)) ON COMMIT DROP;
CREATE TEMP TABLE run_pairs (environment_id uuid, experiment_id uuid, pair text COLLATE "C", a text COLLATE "C",
    b text COLLATE "C", PRIMARY KEY (environment_id, experiment_id, pair)) ON COMMIT DROP;
CREATE TEMP TABLE run_dims (environment_id uuid, experiment_id uuid, attribute text COLLATE "C",
    PRIMARY KEY (environment_id, experiment_id, attribute)) ON COMMIT DROP;
CREATE TEMP TABLE fresh (environment_id uuid, experiment_id uuid, unit text COLLATE "C",
    first_ts timestamptz NOT NULL, variant text COLLATE "C" NOT NULL, max_variant text COLLATE "C" NOT NULL,
    attributes jsonb NOT NULL, PRIMARY KEY (environment_id, experiment_id, unit)) ON COMMIT DROP;
CREATE TEMP TABLE new_events (environment_id uuid NOT NULL, unit text COLLATE "C" NOT NULL,
    event text COLLATE "C" NOT NULL, value double precision, ts timestamptz NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE touched (environment_id uuid, experiment_id uuid, unit text COLLATE "C",
    PRIMARY KEY (environment_id, experiment_id, unit)) ON COMMIT DROP;
CREATE TEMP TABLE recompute (environment_id uuid, experiment_id uuid, unit text COLLATE "C",
    PRIMARY KEY (environment_id, experiment_id, unit)) ON COMMIT DROP;
CREATE TEMP TABLE contrib (environment_id uuid, experiment_id uuid, attribute text COLLATE "C",
    value text COLLATE "C", variant text COLLATE "C", event text COLLATE "C", units bigint, count_sum float8,
    count_sum_sq float8, value_sum float8, value_sum_sq float8, mean_units bigint, mean_sum float8,
    mean_sum_sq float8) ON COMMIT DROP;
CREATE TEMP TABLE contrib_pairs (environment_id uuid, experiment_id uuid, attribute text COLLATE "C",
    value text COLLATE "C", variant text COLLATE "C", pair text COLLATE "C", units bigint, count_count float8,
    count_value float8, value_count float8, value_value float8) ON COMMIT DROP;
"#;

/// Rows committed after snapshot `$1` (text), found through the `ingest_xid` index.
const NEW_SINCE: &str = "ingest_xid >= pg_snapshot_xmin($1::text::pg_snapshot)
     AND NOT pg_visible_in_snapshot(ingest_xid, $1::text::pg_snapshot)";

/// An event `{m}` of stream `x` counts for unit `u` within the stream's span: from the first
/// exposure until its window closes, or in the pre-period before it. Both bounds are
/// expressions of `u` and `x`, so a probe binds them as an index range.
fn in_span(m: &str) -> String {
    format!(
        "{m}.ts >= u.first_ts - coalesce(x.pre_s, 0) * interval '1 second'
         AND {m}.ts < CASE WHEN x.pre_s IS NOT NULL THEN u.first_ts
                           WHEN x.window_s IS NOT NULL THEN u.first_ts + x.window_s * interval '1 second'
                           ELSE 'infinity'::timestamptz END"
    )
}

/// Metric values analysis takes: events stored before the events service enforced
/// [`cohort_proto::MAX_ABS_METRIC_VALUE`] are left out, so no sum can overflow.
const VALUE_IN_RANGE: &str = "(m.value IS NULL OR abs(m.value) <= 1e15)";

/// Per unit: the first exposure's time, the smallest and largest variant, and the attributes
/// of the first exposure, over the exposures `e` it is applied to.
const FIRST_EXPOSURE: &str = "SELECT e.environment_id, e.experiment_id, e.unit, min(e.ts), min(e.variant),
        max(e.variant), (array_agg(e.attributes ORDER BY e.ts))[1]";

/// How [`unit_events_sql`] reads the event tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// One index range per (unit, event): every column of `metric_events_analysis` bound,
    /// whatever the planner believes of the sizes. For the few units of a steady cycle (a
    /// plain join let the planner bind only the environment and unit, so each probe read the
    /// environment's whole index: minutes).
    Probe,
    /// A join the planner may hash, over analyzed temporary tables: for a backlog or a
    /// rebuild, where most events are read anyway.
    Join,
}

/// Each unit's events of its experiment's streams, for the units `u` of `{from}`, into
/// `{into}` (analysis_unit_events or a table like it).
fn unit_events_sql(into: &str, from: &str, read: Read) -> String {
    let span = in_span("m");
    match read {
        Read::Join => format!(
            "INSERT INTO {into} (environment_id, experiment_id, unit, event, events, value_sum, valued)
             SELECT u.environment_id, u.experiment_id, u.unit, x.stream, count(*), coalesce(sum(m.value), 0),
                    count(m.value)
             FROM {from} JOIN run_events x ON x.environment_id = u.environment_id AND x.experiment_id = u.experiment_id
             JOIN metric_events m ON m.environment_id = u.environment_id AND m.event = x.event
                  AND m.unit = u.unit AND {span} AND {VALUE_IN_RANGE}
             GROUP BY 1, 2, 3, 4"
        ),
        Read::Probe => format!(
            "INSERT INTO {into} (environment_id, experiment_id, unit, event, events, value_sum, valued)
             SELECT u.environment_id, u.experiment_id, u.unit, x.stream, a.events, a.value_sum, a.valued
             FROM {from} JOIN run_events x ON x.environment_id = u.environment_id AND x.experiment_id = u.experiment_id
             CROSS JOIN LATERAL (
                SELECT count(*) AS events, coalesce(sum(m.value), 0) AS value_sum, count(m.value) AS valued
                FROM metric_events m
                WHERE m.environment_id = u.environment_id AND m.event = x.event AND m.unit = u.unit
                  AND {span} AND {VALUE_IN_RANGE}) a
             WHERE a.events > 0"
        ),
    }
}

/// The populations a group `g` of units counts in: all units, then (unless excluded) each
/// breakdown attribute's value.
const DIMENSIONS: &str = "CROSS JOIN LATERAL (
        SELECT ''::text COLLATE \"C\" AS attribute, ''::text COLLATE \"C\" AS value
        UNION ALL
        SELECT b.attribute, coalesce(g.attributes->>b.attribute, '(none)') COLLATE \"C\"
        FROM run_dims b
        WHERE b.environment_id = g.environment_id AND b.experiment_id = g.experiment_id AND g.variant <> ''
     ) d";

/// The contribution of the units `u` of `{from}` to the sums, times `$1` (-1 or 1), into
/// `{into}`: unit counts (excluded units under variant ''), then per-stream sums (their rows
/// of `{unit_events}`); and into `{into_pairs}` the cross products of the pairs of streams.
/// Units are summed per distinct attributes first, so the breakdowns multiply few rows.
fn contribution_sql(into: &str, into_pairs: &str, from: &str, unit_events: &str) -> [String; 3] {
    let sums = "$1::bigint * sum(g.units), $1::float8 * sum(g.count_sum), $1::float8 * sum(g.count_sum_sq),
                $1::float8 * sum(g.value_sum), $1::float8 * sum(g.value_sum_sq), $1::bigint * sum(g.mean_units),
                $1::float8 * sum(g.mean_sum), $1::float8 * sum(g.mean_sum_sq)";
    let units = format!(
        "INSERT INTO {into}
         SELECT g.environment_id, g.experiment_id, d.attribute, d.value, g.variant, '', {sums}
         FROM (SELECT u.environment_id, u.experiment_id, u.attributes,
                      CASE WHEN u.multi THEN '' ELSE u.variant END AS variant,
                      count(*) AS units, 0::float8 AS count_sum, 0::float8 AS count_sum_sq, 0::float8 AS value_sum,
                      0::float8 AS value_sum_sq, 0::bigint AS mean_units, 0::float8 AS mean_sum, 0::float8 AS mean_sum_sq
               FROM {from} GROUP BY 1, 2, 3, 4) g
         {DIMENSIONS}
         GROUP BY 1, 2, 3, 4, 5"
    );
    let events = format!(
        "INSERT INTO {into}
         SELECT g.environment_id, g.experiment_id, d.attribute, d.value, g.variant, g.event, {sums}
         FROM (SELECT u.environment_id, u.experiment_id, u.attributes, u.variant, e.event, count(*) AS units,
                      sum(e.events::float8) AS count_sum, sum(e.events::float8 * e.events) AS count_sum_sq,
                      sum(e.value_sum) AS value_sum, sum(e.value_sum * e.value_sum) AS value_sum_sq,
                      count(*) FILTER (WHERE e.valued > 0) AS mean_units,
                      coalesce(sum(e.value_sum / e.valued) FILTER (WHERE e.valued > 0), 0) AS mean_sum,
                      coalesce(sum((e.value_sum / e.valued) * (e.value_sum / e.valued))
                          FILTER (WHERE e.valued > 0), 0) AS mean_sum_sq
               FROM {from} JOIN {unit_events} e ON e.environment_id = u.environment_id
                    AND e.experiment_id = u.experiment_id AND e.unit = u.unit
               WHERE NOT u.multi
               GROUP BY 1, 2, 3, 4, 5) g
         {DIMENSIONS}
         GROUP BY 1, 2, 3, 4, 5, 6"
    );
    // A unit without events in either stream adds 0 to every product: an inner join.
    let pairs = format!(
        "INSERT INTO {into_pairs}
         SELECT g.environment_id, g.experiment_id, d.attribute, d.value, g.variant, g.pair,
                $1::bigint * sum(g.units), $1::float8 * sum(g.count_count), $1::float8 * sum(g.count_value),
                $1::float8 * sum(g.value_count), $1::float8 * sum(g.value_value)
         FROM (SELECT u.environment_id, u.experiment_id, u.attributes, u.variant, p.pair, count(*) AS units,
                      sum(a.events::float8 * b.events) AS count_count, sum(a.events * b.value_sum) AS count_value,
                      sum(a.value_sum * b.events) AS value_count, sum(a.value_sum * b.value_sum) AS value_value
               FROM {from} JOIN run_pairs p ON p.environment_id = u.environment_id
                    AND p.experiment_id = u.experiment_id
               JOIN {unit_events} a ON a.environment_id = u.environment_id AND a.experiment_id = u.experiment_id
                    AND a.unit = u.unit AND a.event = p.a
               JOIN {unit_events} b ON b.environment_id = u.environment_id AND b.experiment_id = u.experiment_id
                    AND b.unit = u.unit AND b.event = p.b
               WHERE NOT u.multi
               GROUP BY 1, 2, 3, 4, 5) g
         {DIMENSIONS}
         GROUP BY 1, 2, 3, 4, 5, 6"
    );
    [units, events, pairs]
}

/// Above this many new rows, the planner picks its own joins (a backlog); below it, every
/// join is an index probe in the order written, from the new rows into the state and the
/// event tables: the planner prices probes as cold random reads and, misjudging how few
/// rows the small side has, would rather scan millions of rows of state.
const PROBE_LIMIT: i64 = 500_000;

/// Experiments rebuilt together, between checks of the rebuild time budget.
const REBUILD_CHUNK: usize = 8;

/// How much rebuilding one advance may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildLimits {
    /// Experiments at most.
    pub experiments: usize,
    /// No new chunk of experiments starts after this much rebuilding (the first always
    /// does, so every advance makes progress).
    pub time: Duration,
}

impl Store {
    /// Advances the state of the running experiments `bases` to now, rebuilding from all
    /// their rows as many as `limits` allow (so a cold start spreads over cycles of bounded
    /// length); drops the state of experiments no longer running. Fails with a serialization
    /// error when another replica advanced meanwhile (its cycle counts; this one is retried
    /// next interval). With `commit` false everything is rolled back: a trial that only says
    /// whether these bases advance (finding an experiment whose data breaks the statements).
    pub async fn advance(
        &self,
        bases: &[Basis],
        limits: RebuildLimits,
        commit: bool,
    ) -> Result<Advanced, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().await?;
        // First statement: takes the snapshot, then waits for any other advance in flight.
        tx.execute("SELECT 1 FROM analysis_watermark FOR UPDATE", &[]).await?;
        let snapshot = tx
            .query_one(
                "SELECT pg_current_snapshot()::text, (extract(epoch FROM now()) * 1000)::bigint,
                        pg_snapshot_xmin(pg_current_snapshot())::text",
                &[],
            )
            .await?;
        let now: String = snapshot.get(0);
        let previous: Option<String> =
            tx.query_one("SELECT through::text FROM analysis_watermark", &[]).await?.get(0);
        let mut report = Advanced {
            coverage: Coverage {
                as_of_ms: snapshot.get(1),
                ingest_position: snapshot.get::<_, String>(2).parse().unwrap_or(0),
                newest_received_ms: HashMap::new(),
            },
            ..Advanced::default()
        };
        // Coverage first: the newest acknowledgement time among the rows new since the last
        // advance (all rows the first time), per environment.
        let new_rows = match &previous {
            Some(_) => NEW_SINCE,
            None => "true",
        };
        let coverage_sql = format!(
            "INSERT INTO analysis_coverage (environment_id, newest_received_at)
             SELECT environment_id, max(received_at) FROM (
                SELECT environment_id, received_at FROM exposures WHERE {new_rows}
                UNION ALL SELECT environment_id, received_at FROM metric_events WHERE {new_rows}) n
             GROUP BY 1
             ON CONFLICT (environment_id) DO UPDATE
             SET newest_received_at = greatest(analysis_coverage.newest_received_at, EXCLUDED.newest_received_at)"
        );
        match &previous {
            Some(prev) => tx.execute(&coverage_sql, &[prev]).await?,
            None => tx.execute(&coverage_sql, &[]).await?,
        };
        for r in tx
            .query(
                "SELECT environment_id, (extract(epoch FROM newest_received_at) * 1000)::bigint FROM analysis_coverage",
                &[],
            )
            .await?
        {
            report.coverage.newest_received_ms.insert(r.get(0), r.get(1));
        }
        let stored: HashMap<ExperimentRef, (serde_json::Value, String)> = tx
            .query("SELECT environment_id, experiment_id, basis, through::text FROM analysis_state", &[])
            .await?
            .iter()
            .map(|r| {
                (ExperimentRef { environment_id: r.get(0), experiment_id: r.get(1) }, (r.get(2), r.get(3)))
            })
            .collect();

        let mut kept: Vec<(ExperimentRef, bool, serde_json::Value)> = Vec::with_capacity(bases.len());
        let (mut ev_envs, mut ev_ids, mut ev_names) = (vec![], vec![], vec![]);
        let (mut dim_envs, mut dim_ids, mut dim_names) = (vec![], vec![], vec![]);
        let (mut pair_envs, mut pair_ids, mut pair_a, mut pair_b) = (vec![], vec![], vec![], vec![]);
        for b in bases {
            let json = b.json();
            let current = match (stored.get(&b.id()), &previous) {
                (Some((basis, through)), Some(prev)) => *basis == json && through == prev,
                _ => false,
            };
            if !current && report.rebuilt >= limits.experiments {
                report.pending.push(b.id());
                continue;
            }
            report.rebuilt += usize::from(!current);
            kept.push((b.id(), !current, json));
            for e in b.distinct_events() {
                ev_envs.push(b.environment_id);
                ev_ids.push(b.experiment_id);
                ev_names.push(e);
            }
            for (a, z) in b.distinct_pairs() {
                pair_envs.push(b.environment_id);
                pair_ids.push(b.experiment_id);
                pair_a.push(a);
                pair_b.push(z);
            }
            for a in &b.breakdowns {
                dim_envs.push(b.environment_id);
                dim_ids.push(b.experiment_id);
                dim_names.push(a.clone());
            }
        }
        // No longer running, or waiting for a rebuild: their state is of no use now.
        let running: HashSet<ExperimentRef> = kept.iter().map(|(id, _, _)| *id).collect();
        let stale: Vec<ExperimentRef> = kept
            .iter()
            .filter(|(_, rebuild, _)| *rebuild)
            .map(|(id, _, _)| *id)
            .chain(stored.keys().filter(|id| !running.contains(id)).copied())
            .collect();
        if !stale.is_empty() {
            let (envs, ids) = split(&stale);
            for table in [
                "analysis_units",
                "analysis_unit_events",
                "analysis_sums",
                "analysis_pair_sums",
                "analysis_state",
            ] {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} t USING unnest($1::uuid[], $2::uuid[]) AS s(e, x)
                         WHERE t.environment_id = s.e AND t.experiment_id = s.x"
                    ),
                    &[&envs, &ids],
                )
                .await?;
            }
        }

        tx.batch_execute(TEMP_TABLES).await?;
        let (envs, ids) = split(&kept.iter().map(|(id, _, _)| *id).collect::<Vec<_>>());
        let rebuild: Vec<bool> = kept.iter().map(|(_, r, _)| *r).collect();
        tx.execute(
            "INSERT INTO run_exp SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bool[])",
            &[&envs, &ids, &rebuild],
        )
        .await?;
        let (ev_events, ev_windows, ev_pres) = super::split_streams(&ev_names);
        tx.execute(
            "INSERT INTO run_events
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int8[], $6::int8[])",
            &[&ev_envs, &ev_ids, &ev_names, &ev_events, &ev_windows, &ev_pres],
        )
        .await?;
        let pair_keys: Vec<String> =
            pair_a.iter().zip(&pair_b).map(|(a, b)| crate::analyze::pair_key(a, b)).collect();
        tx.execute(
            "INSERT INTO run_pairs SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[])",
            &[&pair_envs, &pair_ids, &pair_keys, &pair_a, &pair_b],
        )
        .await?;
        tx.execute(
            "INSERT INTO run_dims SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[]) ON CONFLICT DO NOTHING",
            &[&dim_envs, &dim_ids, &dim_names],
        )
        .await?;
        tx.batch_execute("ANALYZE run_exp; ANALYZE run_events; ANALYZE run_pairs; ANALYZE run_dims").await?;

        if let (true, Some(prev)) = (rebuild.iter().any(|r| !r), &previous) {
            (report.touched_units, report.folded) = advance_incremental(&tx, prev).await?;
            tx.batch_execute("RESET enable_hashjoin; RESET enable_mergejoin; RESET join_collapse_limit")
                .await?;
        }
        if report.rebuilt > 0 {
            let rebuilt: Vec<ExperimentRef> =
                kept.iter().filter(|(_, r, _)| *r).map(|(id, _, _)| *id).collect();
            let started = Instant::now();
            let mut done = 0;
            for chunk in rebuilt.chunks(REBUILD_CHUNK) {
                if done > 0 && started.elapsed() >= limits.time {
                    break;
                }
                rebuild_all(&tx, chunk).await?;
                done += chunk.len();
            }
            // Out of time: the rest wait for a later advance, with no state until then.
            if done < rebuilt.len() {
                report.rebuilt = done;
                report.pending.extend_from_slice(&rebuilt[done..]);
                let unbuilt: HashSet<ExperimentRef> = rebuilt[done..].iter().copied().collect();
                kept.retain(|(id, _, _)| !unbuilt.contains(id));
            }
        }

        let (envs, ids) = split(&kept.iter().map(|(id, _, _)| *id).collect::<Vec<_>>());
        let bases_json: Vec<serde_json::Value> = kept.into_iter().map(|(_, _, json)| json).collect();
        tx.execute(
            "INSERT INTO analysis_state (environment_id, experiment_id, basis, through)
             SELECT e, i, b, $4::text::pg_snapshot FROM unnest($1::uuid[], $2::uuid[], $3::jsonb[]) AS t(e, i, b)
             ON CONFLICT (environment_id, experiment_id)
             DO UPDATE SET basis = EXCLUDED.basis, through = EXCLUDED.through",
            &[&envs, &ids, &bases_json, &now],
        )
        .await?;
        tx.execute(
            "UPDATE analysis_watermark SET through = $1::text::pg_snapshot, advanced = now()",
            &[&now],
        )
        .await?;
        if commit {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(report)
    }
}

/// Environments and experiment ids as two parallel arrays, for `unnest`.
fn split(refs: &[ExperimentRef]) -> (Vec<Uuid>, Vec<Uuid>) {
    refs.iter().map(|r| (r.environment_id, r.experiment_id)).unzip()
}

/// Folds the rows stored since snapshot `prev` into the state of the experiments that are
/// not rebuilt; returns how many units it touched and how many new rows (units' exposures,
/// metric events) it folded. Every join between an event, the state and
/// the running experiments matches the environment as well as the experiment id.
async fn advance_incremental(tx: &Transaction<'_>, prev: &String) -> Result<(u64, u64), StoreError> {
    // The new exposures, folded per unit.
    tx.execute(
        &format!(
            "INSERT INTO fresh {FIRST_EXPOSURE}
             FROM exposures e JOIN run_exp r
               ON r.environment_id = e.environment_id AND r.experiment_id = e.experiment_id AND NOT r.rebuild
             WHERE e.{NEW_SINCE}
             GROUP BY 1, 2, 3"
        ),
        &[prev],
    )
    .await?;
    // The new metric events of these experiments' metrics.
    tx.execute(
        &format!(
            "INSERT INTO new_events SELECT m.environment_id, m.unit, m.event, m.value, m.ts
             FROM metric_events m
             WHERE m.{NEW_SINCE} AND {VALUE_IN_RANGE} AND EXISTS (
                SELECT 1 FROM run_events x JOIN run_exp r USING (environment_id, experiment_id)
                WHERE NOT r.rebuild AND x.environment_id = m.environment_id AND x.event = m.event)"
        ),
        &[prev],
    )
    .await?;
    tx.batch_execute("ANALYZE fresh; ANALYZE new_events").await?;
    let sizes =
        tx.query_one("SELECT (SELECT count(*) FROM fresh), (SELECT count(*) FROM new_events)", &[]).await?;
    let folded = sizes.get::<_, i64>(0) + sizes.get::<_, i64>(1);
    let backlog = folded >= PROBE_LIMIT;
    if !backlog {
        tx.batch_execute(
            "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL join_collapse_limit = 1",
        )
        .await?;
    }

    // Touched: units with new exposures, and exposed units with new events.
    tx.execute("INSERT INTO touched SELECT environment_id, experiment_id, unit FROM fresh", &[]).await?;
    tx.execute(
        "INSERT INTO touched SELECT DISTINCT u.environment_id, u.experiment_id, u.unit
         FROM new_events n JOIN analysis_units u ON u.environment_id = n.environment_id AND u.unit = n.unit
         JOIN run_exp r ON r.environment_id = u.environment_id AND r.experiment_id = u.experiment_id
              AND NOT r.rebuild
         ON CONFLICT DO NOTHING",
        &[],
    )
    .await?;
    tx.batch_execute("ANALYZE touched").await?;
    let touched: i64 = tx.query_one("SELECT count(*) FROM touched", &[]).await?.get(0);
    if touched == 0 {
        return Ok((0, folded as u64));
    }
    let touched_units = "touched t JOIN analysis_units u ON u.environment_id = t.environment_id
         AND u.experiment_id = t.experiment_id AND u.unit = t.unit";
    let contribution = contribution_sql("contrib", "contrib_pairs", touched_units, "analysis_unit_events");
    for sql in &contribution {
        tx.execute(sql, &[&-1i64]).await?;
    }

    // Units whose first exposure is new or earlier: their events are read again from there.
    tx.execute(
        "INSERT INTO recompute SELECT f.environment_id, f.experiment_id, f.unit
         FROM fresh f LEFT JOIN analysis_units u ON u.environment_id = f.environment_id
              AND u.experiment_id = f.experiment_id AND u.unit = f.unit
         WHERE u.unit IS NULL OR f.first_ts < u.first_ts",
        &[],
    )
    .await?;
    tx.execute(
        "INSERT INTO analysis_units AS u (environment_id, experiment_id, unit, first_ts, variant, max_variant, attributes)
         SELECT environment_id, experiment_id, unit, first_ts, variant, max_variant, attributes FROM fresh
         ON CONFLICT (environment_id, experiment_id, unit) DO UPDATE SET
             first_ts = least(u.first_ts, EXCLUDED.first_ts),
             variant = least(u.variant, EXCLUDED.variant),
             max_variant = greatest(u.max_variant, EXCLUDED.max_variant),
             attributes = CASE WHEN EXCLUDED.first_ts < u.first_ts THEN EXCLUDED.attributes ELSE u.attributes END",
        &[],
    )
    .await?;
    tx.batch_execute("ANALYZE recompute").await?;
    tx.execute(
        "DELETE FROM analysis_unit_events e USING recompute c
         WHERE e.environment_id = c.environment_id AND e.experiment_id = c.experiment_id AND e.unit = c.unit",
        &[],
    )
    .await?;
    let recomputed = if backlog {
        // After a backlog they are hundreds of thousands: their state as merged above goes to
        // an analyzed temporary table, since with analysis_units' statistics from before this
        // transaction the planner would probe the events unit by unit (minutes) instead of
        // one hash join.
        tx.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS recompute_units (LIKE analysis_units INCLUDING GENERATED) ON COMMIT DROP;
             TRUNCATE recompute_units;
             INSERT INTO recompute_units (environment_id, experiment_id, unit, first_ts, variant, max_variant, attributes)
             SELECT u.environment_id, u.experiment_id, u.unit, u.first_ts, u.variant, u.max_variant, u.attributes
             FROM recompute c JOIN analysis_units u ON u.environment_id = c.environment_id
                  AND u.experiment_id = c.experiment_id AND u.unit = c.unit;
             ANALYZE recompute_units",
        )
        .await?;
        "recompute_units u"
    } else {
        // Few: index probes in the order written (the join settings above).
        "recompute c JOIN analysis_units u ON u.environment_id = c.environment_id
         AND u.experiment_id = c.experiment_id AND u.unit = c.unit"
    };
    let read = if backlog { Read::Join } else { Read::Probe };
    tx.execute(&unit_events_sql("analysis_unit_events", recomputed, read), &[]).await?;
    // The other touched units add their new events.
    let span = in_span("n");
    tx.execute(
        &format!("INSERT INTO analysis_unit_events AS a (environment_id, experiment_id, unit, event, events, value_sum, valued)
         SELECT u.environment_id, u.experiment_id, u.unit, x.stream, count(*), coalesce(sum(n.value), 0),
                count(n.value)
         FROM new_events n JOIN analysis_units u ON u.environment_id = n.environment_id AND u.unit = n.unit
         JOIN run_exp r ON r.environment_id = u.environment_id AND r.experiment_id = u.experiment_id
              AND NOT r.rebuild
         JOIN run_events x ON x.environment_id = u.environment_id AND x.experiment_id = u.experiment_id
              AND x.event = n.event AND {span}
         WHERE NOT EXISTS (SELECT 1 FROM recompute c WHERE c.environment_id = u.environment_id
                           AND c.experiment_id = u.experiment_id AND c.unit = u.unit)
         GROUP BY 1, 2, 3, 4
         ON CONFLICT (environment_id, experiment_id, unit, event) DO UPDATE SET events = a.events + EXCLUDED.events,
             value_sum = a.value_sum + EXCLUDED.value_sum, valued = a.valued + EXCLUDED.valued"),
        &[],
    )
    .await?;
    for sql in &contribution {
        tx.execute(sql, &[&1i64]).await?;
    }
    tx.execute(
        "INSERT INTO analysis_sums AS s
         SELECT environment_id, experiment_id, attribute, value, variant, event, sum(units), sum(count_sum),
                sum(count_sum_sq), sum(value_sum), sum(value_sum_sq), sum(mean_units), sum(mean_sum), sum(mean_sum_sq)
         FROM contrib GROUP BY 1, 2, 3, 4, 5, 6
         -- Most touched units only moved within their populations: nothing to write for those.
         HAVING sum(units) <> 0 OR sum(count_sum) <> 0 OR sum(count_sum_sq) <> 0 OR sum(value_sum) <> 0
             OR sum(value_sum_sq) <> 0 OR sum(mean_units) <> 0 OR sum(mean_sum) <> 0 OR sum(mean_sum_sq) <> 0
         ON CONFLICT (environment_id, experiment_id, attribute, value, variant, event) DO UPDATE SET
             units = s.units + EXCLUDED.units, count_sum = s.count_sum + EXCLUDED.count_sum,
             count_sum_sq = s.count_sum_sq + EXCLUDED.count_sum_sq, value_sum = s.value_sum + EXCLUDED.value_sum,
             value_sum_sq = s.value_sum_sq + EXCLUDED.value_sum_sq, mean_units = s.mean_units + EXCLUDED.mean_units,
             mean_sum = s.mean_sum + EXCLUDED.mean_sum, mean_sum_sq = s.mean_sum_sq + EXCLUDED.mean_sum_sq",
        &[],
    )
    .await?;
    tx.execute(
        "INSERT INTO analysis_pair_sums AS s
         SELECT environment_id, experiment_id, attribute, value, variant, pair, sum(units), sum(count_count),
                sum(count_value), sum(value_count), sum(value_value)
         FROM contrib_pairs GROUP BY 1, 2, 3, 4, 5, 6
         HAVING sum(units) <> 0 OR sum(count_count) <> 0 OR sum(count_value) <> 0 OR sum(value_count) <> 0
             OR sum(value_value) <> 0
         ON CONFLICT (environment_id, experiment_id, attribute, value, variant, pair) DO UPDATE SET
             units = s.units + EXCLUDED.units, count_count = s.count_count + EXCLUDED.count_count,
             count_value = s.count_value + EXCLUDED.count_value,
             value_count = s.value_count + EXCLUDED.value_count,
             value_value = s.value_value + EXCLUDED.value_value",
        &[],
    )
    .await?;
    Ok((touched as u64, folded as u64))
}

/// Builds the state of the experiments `rebuilt` from all their rows, set-based. Every read
/// names them, so it costs their rows, not all the state there is.
async fn rebuild_all(tx: &Transaction<'_>, rebuilt: &[ExperimentRef]) -> Result<(), StoreError> {
    let (envs, ids) = split(rebuilt);
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS chunk (environment_id uuid, experiment_id uuid,
             PRIMARY KEY (environment_id, experiment_id)) ON COMMIT DROP;
         TRUNCATE chunk",
    )
    .await?;
    tx.execute("INSERT INTO chunk SELECT * FROM unnest($1::uuid[], $2::uuid[])", &[&envs, &ids]).await?;
    // The chunk's units go to a temporary table first and are analyzed there: the planner's
    // statistics of analysis_units predate this transaction's rows, and with them it would
    // take tens of thousands of units for none and join them to every metric event.
    tx.batch_execute(
        "ANALYZE chunk;
         CREATE TEMP TABLE IF NOT EXISTS chunk_units (LIKE analysis_units INCLUDING GENERATED) ON COMMIT DROP;
         TRUNCATE chunk_units",
    )
    .await?;
    tx.execute(
        &format!(
            "INSERT INTO chunk_units (environment_id, experiment_id, unit, first_ts, variant, max_variant, attributes)
             {FIRST_EXPOSURE}
             FROM chunk c JOIN exposures e
               ON e.environment_id = c.environment_id AND e.experiment_id = c.experiment_id
             GROUP BY 1, 2, 3"
        ),
        &[],
    )
    .await?;
    tx.batch_execute(
        "ANALYZE chunk_units;
         INSERT INTO analysis_units (environment_id, experiment_id, unit, first_ts, variant, max_variant, attributes)
         SELECT environment_id, experiment_id, unit, first_ts, variant, max_variant, attributes FROM chunk_units",
    )
    .await?;
    let units = "chunk_units u";
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS chunk_unit_events (LIKE analysis_unit_events) ON COMMIT DROP;
         TRUNCATE chunk_unit_events",
    )
    .await?;
    tx.execute(&unit_events_sql("chunk_unit_events", units, Read::Join), &[]).await?;
    tx.batch_execute(
        "ANALYZE chunk_unit_events;
         INSERT INTO analysis_unit_events SELECT * FROM chunk_unit_events",
    )
    .await?;
    for sql in contribution_sql("analysis_sums", "analysis_pair_sums", units, "chunk_unit_events") {
        tx.execute(&sql, &[&1i64]).await?;
    }
    Ok(())
}

impl Store {
    /// The sums of the experiments `bases`, as analysis reads them.
    pub async fn sums(&self, bases: &[Basis]) -> Result<HashMap<ExperimentRef, ExperimentSums>, StoreError> {
        let client = self.pool.get().await?;
        let (envs, ids) = split(&bases.iter().map(Basis::id).collect::<Vec<_>>());
        let rows = client
            .query(
                "SELECT s.environment_id, s.experiment_id, attribute, value, variant, event, units, count_sum,
                        count_sum_sq, value_sum, value_sum_sq, mean_units, mean_sum, mean_sum_sq
                 FROM unnest($1::uuid[], $2::uuid[]) AS b(e, x)
                 JOIN analysis_sums s ON s.environment_id = b.e AND s.experiment_id = b.x
                 WHERE units > 0",
                &[&envs, &ids],
            )
            .await?;
        let mut by_experiment: HashMap<ExperimentRef, Collected> = HashMap::new();
        for r in &rows {
            let id = ExperimentRef { environment_id: r.get(0), experiment_id: r.get(1) };
            let (attribute, value, variant, event): (String, String, String, String) =
                (r.get(2), r.get(3), r.get(4), r.get(5));
            let Collected { overall, excluded, segments } = by_experiment.entry(id).or_default();
            let agg = if attribute.is_empty() {
                if variant.is_empty() {
                    *excluded += r.get::<_, i64>(6) as u64;
                    continue;
                }
                overall
            } else {
                segments.entry(attribute).or_default().entry(value).or_default()
            };
            if event.is_empty() {
                agg.units.insert(variant, r.get::<_, i64>(6) as u64);
            } else {
                agg.events.insert((variant, event), event_sums(r, 6));
            }
        }
        let rows = client
            .query(
                "SELECT s.environment_id, s.experiment_id, attribute, value, variant, pair, units, count_count,
                        count_value, value_count, value_value
                 FROM unnest($1::uuid[], $2::uuid[]) AS b(e, x)
                 JOIN analysis_pair_sums s ON s.environment_id = b.e AND s.experiment_id = b.x",
                &[&envs, &ids],
            )
            .await?;
        for r in &rows {
            let id = ExperimentRef { environment_id: r.get(0), experiment_id: r.get(1) };
            let (attribute, value, variant, pair): (String, String, String, String) =
                (r.get(2), r.get(3), r.get(4), r.get(5));
            let Some(Collected { overall, segments, .. }) = by_experiment.get_mut(&id) else { continue };
            // A population whose units all left keeps its pair rows (zeros, or rounding
            // residue): only populations with units are read.
            let agg = if attribute.is_empty() {
                Some(overall)
            } else {
                segments.get_mut(&attribute).and_then(|values| values.get_mut(&value))
            };
            if let Some(agg) = agg {
                agg.pairs.insert((variant, pair), pair_sums(r, 6));
            }
        }
        Ok(bases
            .iter()
            .map(|b| {
                let Collected { overall, excluded, mut segments } =
                    by_experiment.remove(&b.id()).unwrap_or_default();
                let segments = b
                    .breakdowns
                    .iter()
                    .map(|a| (a.clone(), segments.remove(a).unwrap_or_default().into_iter().collect()))
                    .collect();
                (b.id(), ExperimentSums { overall, excluded, segments })
            })
            .collect())
    }
}
