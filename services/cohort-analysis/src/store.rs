//! Every SQL statement of the analysis service (its own tables and the event store's read
//! model; what config knows comes over gRPC, in [`crate::config`]): the aggregation (incremental in `incremental`, from scratch here as its reference), plans,
//! looks and results.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use cohort_core::model::{ExperimentDef, Span, Stream};
use cohort_db::Pool;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::analyze::{Aggregates, EventSums, ExperimentResult, PairSums, Plan};

mod incremental;
pub use incremental::{Advanced, Basis, Coverage, ExperimentSums, RebuildLimits};

/// What went wrong; the cause is the error's source (log it with
/// `cohort_core::error::chain`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database")]
    Query(#[from] tokio_postgres::Error),
    #[error("stored data does not parse")]
    Decode(#[from] serde_json::Error),
    #[error("asking the config service")]
    Config(#[from] crate::config::ConfigError),
}

impl StoreError {
    /// Whether the database was unreachable (rather than the request being wrong).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Query(e) => e.is_closed() || e.as_db_error().is_none(),
            StoreError::Decode(_) => false,
            StoreError::Config(e) => e.is_unavailable(),
        }
    }

    /// Whether the failure is no experiment's doing and passes by itself: the database is
    /// unreachable or shutting down, or another transaction (a second leader) got there first.
    pub fn is_transient(&self) -> bool {
        use tokio_postgres::error::SqlState;
        if self.is_unavailable() {
            return true;
        }
        let StoreError::Query(e) = self else { return false };
        e.code().is_some_and(|c| {
            [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::QUERY_CANCELED,
            ]
            .contains(c)
        })
    }
}

/// An experiment as analysis keys it: an experiment id is unique only within its environment,
/// so every piece of analysis state and every stored result is keyed by both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExperimentRef {
    pub environment_id: Uuid,
    pub experiment_id: Uuid,
}

impl std::fmt::Display for ExperimentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.environment_id, self.experiment_id)
    }
}

/// A running experiment as the config service stores it.
#[derive(Debug, Clone)]
pub struct Running {
    pub environment_id: Uuid,
    pub revision: i64,
    /// A holdout is analyzed as this experiment ([`crate::analyze::holdout_experiment`]).
    pub definition: ExperimentDef,
    /// Whether it is a holdout (never paused: it has no guardrails).
    pub holdout: bool,
}

impl Running {
    pub fn id(&self) -> ExperimentRef {
        ExperimentRef { environment_id: self.environment_id, experiment_id: self.definition.id }
    }
}

/// A look recorded earlier.
#[derive(Debug, Clone, PartialEq)]
pub struct LookRow {
    pub look: i32,
    pub information_fraction: f64,
    pub result: ExperimentResult,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Store {
    pub fn new(pool: Pool) -> Self {
        Store { pool }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Reduces an experiment's exposures and metric events up to `until` to per-variant sums
    /// from scratch: each unit's first exposure (units that saw two variants are excluded and
    /// counted), then per unit its events in each stream's span, then per variant, with the
    /// cross products of the basis' pairs of streams. Also per value of each breakdown
    /// attribute (from the first exposure's attributes). Cycles read the incremental state
    /// instead ([`Store::advance`], [`Store::sums`]); this is the definition that state is
    /// tested against.
    pub async fn aggregate(
        &self,
        basis: &Basis,
        until: SystemTime,
    ) -> Result<(Aggregates, u64, Vec<(String, Vec<(String, Aggregates)>)>), StoreError> {
        let (environment, experiment) = (basis.environment_id, basis.experiment_id);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Typed values (UUIDs, a number) are formatted in: CREATE TABLE AS takes no parameters.
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE first_exposure ON COMMIT DROP AS
               SELECT unit, min(ts) AS first_ts, min(variant) AS variant, count(DISTINCT variant) AS variants,
                      (array_agg(attributes ORDER BY ts))[1] AS attrs
               FROM exposures
               WHERE environment_id = '{environment}' AND experiment_id = '{experiment}'
                 AND ts <= to_timestamp({until})
               GROUP BY unit;
             ANALYZE first_exposure;
             CREATE TEMP TABLE unit_streams (unit text, variant text, attrs jsonb, stream text, cnt float8,
                 total float8, mean float8) ON COMMIT DROP;",
            until = secs(until)
        ))
        .await?;
        let excluded: i64 =
            tx.query_one("SELECT count(*) FROM first_exposure WHERE variants > 1", &[]).await?.get(0);
        // Per unit and stream ($2) with its event ($4), window and pre-period ($5, $6: seconds
        // or null): its events' count, sum and mean.
        let streams = basis.distinct_events();
        let (names, windows, pres) = split_streams(&streams);
        tx.execute(
            "INSERT INTO unit_streams
             SELECT f.unit, f.variant, f.attrs, s.stream, count(*)::float8, coalesce(sum(m.value), 0), avg(m.value)
             FROM first_exposure f
             CROSS JOIN unnest($2::text[], $4::text[], $5::int8[], $6::int8[]) AS s(stream, event, window_s, pre_s)
             JOIN metric_events m ON m.environment_id = $1 AND m.unit = f.unit AND m.event = s.event
                  AND m.ts >= f.first_ts - coalesce(s.pre_s, 0) * interval '1 second'
                  AND m.ts < CASE WHEN s.pre_s IS NOT NULL THEN f.first_ts
                                  WHEN s.window_s IS NOT NULL THEN f.first_ts + s.window_s * interval '1 second'
                                  ELSE 'infinity'::timestamptz END
                  AND m.ts <= $3 AND (m.value IS NULL OR abs(m.value) <= 1e15)
             WHERE f.variants = 1
             GROUP BY f.unit, f.variant, f.attrs, s.stream",
            &[&environment, &streams, &until, &names, &windows, &pres],
        )
        .await?;
        tx.batch_execute("ANALYZE unit_streams").await?;
        let sums =
            "count(*) FILTER (WHERE cnt > 0), sum(cnt), sum(cnt * cnt), sum(total), sum(total * total),
                    count(mean), coalesce(sum(mean), 0), coalesce(sum(mean * mean), 0)";
        let distinct_pairs = basis.distinct_pairs();
        let pair_keys: Vec<String> =
            distinct_pairs.iter().map(|(a, b)| crate::analyze::pair_key(a, b)).collect();
        let (pair_a, pair_b): (Vec<String>, Vec<String>) = distinct_pairs.into_iter().unzip();
        // Units with events in both streams of a pair (the rest add 0 to every product).
        let pairs = "SELECT a.unit, a.variant, a.attrs, p.pair, a.cnt AS a_cnt, a.total AS a_total,
                            b.cnt AS b_cnt, b.total AS b_total
                     FROM unnest($1::text[], $2::text[], $3::text[]) AS p(pair, a, b)
                     JOIN unit_streams a ON a.stream = p.a
                     JOIN unit_streams b ON b.stream = p.b AND b.unit = a.unit";
        let pair_sums_sql = "count(*), sum(a_cnt * b_cnt), sum(a_cnt * b_total), sum(a_total * b_cnt),
                             sum(a_total * b_total)";

        let mut overall = Aggregates::default();
        for r in tx
            .query("SELECT variant, count(*) FROM first_exposure WHERE variants = 1 GROUP BY variant", &[])
            .await?
        {
            overall.units.insert(r.get(0), r.get::<_, i64>(1) as u64);
        }
        for r in
            &tx.query(&format!("SELECT variant, stream, {sums} FROM unit_streams GROUP BY 1, 2"), &[]).await?
        {
            overall.events.insert((r.get(0), r.get(1)), event_sums(r, 2));
        }
        for r in &tx
            .query(
                &format!("SELECT variant, pair, {pair_sums_sql} FROM ({pairs}) u GROUP BY 1, 2"),
                &[&pair_keys, &pair_a, &pair_b],
            )
            .await?
        {
            overall.pairs.insert((r.get(0), r.get(1)), pair_sums(r, 2));
        }

        let mut segments = Vec::new();
        for attribute in &basis.breakdowns {
            let mut by_value: HashMap<String, Aggregates> = HashMap::new();
            let rows = tx
                .query(
                    "SELECT coalesce(attrs->>$1, '(none)'), variant, count(*) FROM first_exposure
                     WHERE variants = 1 GROUP BY 1, 2",
                    &[attribute],
                )
                .await?;
            for r in &rows {
                by_value.entry(r.get(0)).or_default().units.insert(r.get(1), r.get::<_, i64>(2) as u64);
            }
            let rows = tx
                .query(
                    &format!(
                        "SELECT coalesce(attrs->>$1, '(none)'), variant, stream, {sums} FROM unit_streams GROUP BY 1, 2, 3"
                    ),
                    &[attribute],
                )
                .await?;
            for r in &rows {
                by_value.entry(r.get(0)).or_default().events.insert((r.get(1), r.get(2)), event_sums(r, 3));
            }
            let rows = tx
                .query(
                    &format!(
                        "SELECT coalesce(attrs->>$4, '(none)'), variant, pair, {pair_sums_sql} FROM ({pairs}) u
                         GROUP BY 1, 2, 3"
                    ),
                    &[&pair_keys, &pair_a, &pair_b, attribute],
                )
                .await?;
            for r in &rows {
                by_value.entry(r.get(0)).or_default().pairs.insert((r.get(1), r.get(2)), pair_sums(r, 3));
            }
            segments.push((attribute.clone(), by_value.into_iter().collect()));
        }
        tx.commit().await?;
        Ok((overall, excluded as u64, segments))
    }

    pub async fn plan(&self, id: ExperimentRef) -> Result<Option<Plan>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT planned_units_per_variant, basis FROM analysis_plans
                 WHERE environment_id = $1 AND experiment_id = $2",
                &[&id.environment_id, &id.experiment_id],
            )
            .await?;
        Ok(row.map(|r| Plan { planned_units_per_variant: r.get::<_, i64>(0) as u64, basis: r.get(1) }))
    }

    /// The plans of `experiments` that have one.
    pub async fn plans(
        &self,
        experiments: &[ExperimentRef],
    ) -> Result<HashMap<ExperimentRef, Plan>, StoreError> {
        let client = self.pool.get().await?;
        let (envs, ids): (Vec<Uuid>, Vec<Uuid>) =
            experiments.iter().map(|x| (x.environment_id, x.experiment_id)).unzip();
        let rows = client
            .query(
                "SELECT p.environment_id, p.experiment_id, planned_units_per_variant, basis
                 FROM unnest($1::uuid[], $2::uuid[]) AS x(e, i)
                 JOIN analysis_plans p ON p.environment_id = x.e AND p.experiment_id = x.i",
                &[&envs, &ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    ExperimentRef { environment_id: r.get(0), experiment_id: r.get(1) },
                    Plan { planned_units_per_variant: r.get::<_, i64>(2) as u64, basis: r.get(3) },
                )
            })
            .collect())
    }

    /// Stores a plan unless one exists; returns the stored one (a plan never changes).
    pub async fn save_plan(&self, id: ExperimentRef, plan: &Plan) -> Result<Plan, StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO analysis_plans (environment_id, experiment_id, planned_units_per_variant, basis)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (environment_id, experiment_id) DO NOTHING",
                &[
                    &id.environment_id,
                    &id.experiment_id,
                    &(plan.planned_units_per_variant as i64),
                    &plan.basis,
                ],
            )
            .await?;
        drop(client);
        Ok(self.plan(id).await?.unwrap_or_else(|| plan.clone()))
    }

    /// The information fractions of the recorded looks, in order, and the primary comparisons
    /// that crossed at them: (metric, variant) → the first look at which each did.
    pub async fn look_fractions(
        &self,
        id: ExperimentRef,
    ) -> Result<(Vec<f64>, BTreeMap<(String, String), u32>), StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT information_fraction, look, result->'metrics' FROM analysis_looks
                 WHERE environment_id = $1 AND experiment_id = $2 ORDER BY look",
                &[&id.environment_id, &id.experiment_id],
            )
            .await?;
        let mut crossed = BTreeMap::new();
        for r in &rows {
            let metrics: Option<serde_json::Value> = r.get(2);
            let result = serde_json::json!({ "metrics": metrics });
            for (k, look) in crate::analyze::recorded_crossings(r.get::<_, i32>(1) as u32, &result) {
                crossed.entry(k).or_insert(look);
            }
        }
        Ok((rows.iter().map(|r| r.get(0)).collect(), crossed))
    }

    /// Records a formal look and the latest result together. `Ok(false)` when that look was
    /// recorded already (by another leader): nothing is written.
    pub async fn record_look(
        &self,
        id: ExperimentRef,
        look: u32,
        fraction: f64,
        boundary: f64,
        result: &ExperimentResult,
    ) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let json = serde_json::to_value(result)?;
        let inserted = tx
            .execute(
                "INSERT INTO analysis_looks (environment_id, experiment_id, look, information_fraction, boundary, result)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[&id.environment_id, &id.experiment_id, &(look as i32), &fraction, &boundary, &json],
            )
            .await?;
        if inserted == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO analysis_latest (environment_id, experiment_id, look, result, computed_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (environment_id, experiment_id)
             DO UPDATE SET look = EXCLUDED.look, result = EXCLUDED.result, computed_at = now()",
            &[&id.environment_id, &id.experiment_id, &(look as i32), &json],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Stores the latest results of many experiments in one statement.
    pub async fn record_latest_many(
        &self,
        results: &[(ExperimentRef, ExperimentResult)],
    ) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await?;
        let (mut environments, mut experiments) = (Vec::with_capacity(results.len()), vec![]);
        let (mut looks, mut json) = (vec![], vec![]);
        for (id, result) in results {
            environments.push(id.environment_id);
            experiments.push(id.experiment_id);
            looks.push(result.look as i32);
            // Text, parsed once by the server: building `serde_json::Value` trees first costs
            // more than the statement itself.
            json.push(serde_json::to_string(result)?);
        }
        client
            .execute(
                "INSERT INTO analysis_latest (environment_id, experiment_id, look, result, computed_at)
                 SELECT e, x, l, r::jsonb, now() FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[]) AS t(e, x, l, r)
                 ON CONFLICT (environment_id, experiment_id) DO UPDATE
                 SET look = EXCLUDED.look, result = EXCLUDED.result, computed_at = now()",
                &[&environments, &experiments, &looks, &json],
            )
            .await?;
        Ok(())
    }

    pub async fn latest(&self, id: ExperimentRef) -> Result<Option<ExperimentResult>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT result FROM analysis_latest WHERE environment_id = $1 AND experiment_id = $2",
                &[&id.environment_id, &id.experiment_id],
            )
            .await?;
        row.map(|r| serde_json::from_value(r.get(0)).map_err(StoreError::from)).transpose()
    }

    /// Looks newest first, below `before` when given.
    pub async fn looks(
        &self,
        id: ExperimentRef,
        limit: i64,
        before: Option<i32>,
    ) -> Result<Vec<LookRow>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT look, information_fraction, result FROM analysis_looks
                 WHERE environment_id = $1 AND experiment_id = $2 AND ($3::int IS NULL OR look < $3)
                 ORDER BY look DESC LIMIT $4",
                &[&id.environment_id, &id.experiment_id, &before, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LookRow {
                    look: r.get(0),
                    information_fraction: r.get(1),
                    result: serde_json::from_value(r.get(2))?,
                })
            })
            .collect()
    }
}

/// The event names, windows and pre-periods (seconds, for SQL) of stream keys
/// ([`Stream::key`]), in order.
fn split_streams(streams: &[String]) -> (Vec<String>, Vec<Option<i64>>, Vec<Option<i64>>) {
    let seconds = |s: u64| s.min(i64::MAX as u64) as i64;
    let (mut events, mut windows, mut pres) = (vec![], vec![], vec![]);
    for key in streams {
        let stream = Stream::parse(key);
        events.push(stream.event.to_owned());
        match stream.span {
            Span::After { window } => {
                windows.push(window.map(seconds));
                pres.push(None);
            }
            Span::Before { seconds: s } => {
                windows.push(None);
                pres.push(Some(seconds(s)));
            }
        }
    }
    (events, windows, pres)
}

fn pair_sums(r: &Row, from: usize) -> PairSums {
    PairSums {
        units: r.get::<_, i64>(from) as u64,
        count_count: r.get(from + 1),
        count_value: r.get(from + 2),
        value_count: r.get(from + 3),
        value_value: r.get(from + 4),
    }
}

fn event_sums(r: &Row, from: usize) -> EventSums {
    EventSums {
        units_with_events: r.get::<_, i64>(from) as u64,
        count_sum: r.get(from + 1),
        count_sum_sq: r.get(from + 2),
        value_sum: r.get(from + 3),
        value_sum_sq: r.get(from + 4),
        mean_units: r.get::<_, i64>(from + 5) as u64,
        mean_sum: r.get(from + 6),
        mean_sum_sq: r.get(from + 7),
    }
}
