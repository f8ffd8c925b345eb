//! Event retention: drops whole day partitions of `exposures` and `metric_events` that ended
//! before now − `--retention`, except the days a running experiment's analysis still reads.
//!
//! A running experiment (or enabled holdout, from the config service's `ListRunning`) needs
//! every day from its first stored exposure on, and, for CUPED, its metrics' pre-period before
//! that: analysis may rebuild it from all its rows at any cycle. Metric windows only reach
//! forward from an exposure, so they hold back nothing more. Such days are kept, logged and
//! counted; they go in a later cycle once the experiment is completed. When the config service
//! cannot answer, nothing is dropped that cycle.
//!
//! One replica drops at a time (a session advisory lock held through the cycle); each day is
//! one transaction that also takes the drainer's partition lock, with a lock timeout so that a
//! long analysis read delays the drop instead of queueing every insert behind it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cohort_core::time::{civil_from_days, day_of, unix_ms};
use cohort_proto::config::v1 as pb;
use cohort_transport::ClientTls;
use deadpool_postgres::Pool;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::config::ConfigClient;
use crate::drain::PARTITION_LOCK_KEY;
use crate::metrics::Metrics;

/// The session advisory lock held for a whole cycle by the replica that drops (an arbitrary
/// fixed key, not the drainer's: a cycle must not stop partitions being created).
pub const LOCK_KEY: i64 = 0x636f_686f_7274_7264;
/// Longest one day's drop waits for its locks (an open analysis read holds the parent table)
/// before the cycle gives up until the next one.
const LOCK_TIMEOUT: &str = "5s";
/// Longest wait before a failed cycle is tried again, when the interval is longer.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(300);

/// Why a cycle dropped nothing more.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("database: {0}")]
    Database(String),
    #[error("cannot learn the running experiments, so nothing is dropped: {0}")]
    Config(String),
}

impl From<tokio_postgres::Error> for RetentionError {
    fn from(e: tokio_postgres::Error) -> Self {
        RetentionError::Database(cohort_core::error::chain(&e))
    }
}

impl From<deadpool_postgres::PoolError> for RetentionError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        RetentionError::Database(cohort_core::error::chain(&e))
    }
}

/// A day kept past the retention because a running experiment reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Its partitions (schema-qualified).
    pub partitions: Vec<String>,
    /// The keys of the experiments and holdouts that need it.
    pub experiments: Vec<String>,
}

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Partitions dropped (schema-qualified), oldest first.
    pub dropped: Vec<String>,
    /// Days kept for running experiments, oldest first.
    pub held: Vec<Held>,
    /// Another replica held the retention lock: this one did nothing.
    pub skipped: bool,
}

/// Drops expired day partitions; see the module documentation.
#[derive(Debug, Clone)]
pub struct Retention {
    pool: Pool,
    config: ConfigClient,
    metrics: Arc<Metrics>,
    retention: Duration,
    /// Running experiments' first exposures once found: a long-running experiment or holdout
    /// keeps its old days, and finding its first exposure scans all of them, so it is looked
    /// up once rather than every cycle.
    first_seen: Arc<Mutex<HashMap<(Uuid, Uuid), i64>>>,
}

/// The pooled connection a cycle runs on. Unless released after a clean unlock, it is closed
/// when dropped (an error, or the cycle's future dropped half-way), so the session lock and any
/// open transaction go with it instead of back into the pool.
struct Session(Option<deadpool_postgres::Object>);

impl Session {
    fn client(&self) -> &tokio_postgres::Client {
        self.0.as_ref().expect("a session is used only before it is released")
    }

    /// Hands the connection back to the pool.
    fn release(&mut self) {
        self.0 = None;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

/// A partition of either table with its range, in milliseconds since the epoch.
#[derive(Debug)]
struct Partition {
    name: String,
    from_ms: i64,
    to_ms: i64,
}

/// What retention needs of a running experiment or holdout; other fields are ignored, so a
/// newer config service's definitions still parse.
#[derive(Debug, Deserialize)]
struct RunningDef {
    id: Uuid,
    key: String,
    #[serde(default)]
    primary_metrics: Vec<String>,
    #[serde(default)]
    guardrail_metrics: Vec<String>,
    /// A holdout's metrics.
    #[serde(default)]
    metrics: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct MetricDef {
    key: String,
    #[serde(default)]
    cuped: Option<Cuped>,
}

#[derive(Debug, Deserialize)]
struct Cuped {
    pre_period_seconds: u64,
}

/// A running experiment as retention sees it.
#[derive(Debug)]
struct Need {
    environment_id: Uuid,
    experiment_id: Uuid,
    key: String,
    /// Its metrics' longest CUPED pre-period, in milliseconds.
    pre_period_ms: i64,
}

impl Retention {
    /// Retention over `pool`, asking the config service at `config_endpoint` (with this
    /// service's key) which experiments run. `retention` zero turns it off.
    pub fn new(
        pool: Pool,
        config_endpoint: &str,
        service_key: &str,
        tls: &ClientTls,
        metrics: Arc<Metrics>,
        retention: Duration,
    ) -> Result<Retention, String> {
        let config = ConfigClient::new(config_endpoint, service_key, tls)?;
        Ok(Retention::with_client(pool, config, metrics, retention))
    }

    pub(crate) fn with_client(
        pool: Pool,
        config: ConfigClient,
        metrics: Arc<Metrics>,
        retention: Duration,
    ) -> Retention {
        Retention { pool, config, metrics, retention, first_seen: Arc::default() }
    }

    /// One cycle at start, then one every `interval`, until `stop` fires (a failed cycle is
    /// retried sooner). A drop in progress finishes first.
    pub async fn run(self, interval: Duration, stop: CancellationToken) {
        if self.retention.is_zero() {
            return;
        }
        loop {
            let next = match self.run_once(unix_ms(SystemTime::now())).await {
                Ok(_) => interval,
                Err(e) => {
                    error!(error = %e, "event retention cycle failed");
                    interval.min(RETRY_AFTER_FAILURE)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// One cycle as of `now_ms`: drops every day partition that ended at or before
    /// `now_ms − retention` and that no running experiment needs. Nothing when retention is off.
    pub async fn run_once(&self, now_ms: i64) -> Result<Report, RetentionError> {
        if self.retention.is_zero() {
            return Ok(Report::default());
        }
        let cutoff_ms = now_ms.saturating_sub(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX));
        let result = self.cycle(cutoff_ms).await;
        match &result {
            Ok(report) if !report.skipped => {
                self.metrics.retention_held.set(report.held.iter().map(|h| h.partitions.len() as i64).sum());
            }
            Ok(_) => {}
            Err(_) => {
                self.metrics.retention_failures.inc();
            }
        }
        result
    }

    async fn cycle(&self, cutoff_ms: i64) -> Result<Report, RetentionError> {
        let mut session = Session(Some(self.pool.get().await?));
        let client = session.client();
        let locked: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY]).await?.get(0);
        if !locked {
            session.release();
            return Ok(Report { skipped: true, ..Report::default() });
        }
        let report = self.locked_cycle(client, cutoff_ms).await?;
        client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await?;
        session.release();
        Ok(report)
    }

    async fn locked_cycle(
        &self,
        client: &tokio_postgres::Client,
        cutoff_ms: i64,
    ) -> Result<Report, RetentionError> {
        // Whole days only: a partition that ends after the cutoff keeps all of its rows.
        let mut days: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
        for p in expired_partitions(client, cutoff_ms).await? {
            days.entry((p.from_ms, p.to_ms)).or_default().push(p.name);
        }
        let mut report = Report::default();
        let Some(last_to_ms) = days.keys().map(|&(_, to)| to).max() else {
            return Ok(report);
        };
        let needs = self.running().await?;
        let starts = self.first_exposures(client, &needs, last_to_ms, cutoff_ms).await?;
        for ((from_ms, to_ms), partitions) in days {
            let day = format_day(from_ms);
            // An experiment needs the day when any of it is at or after its first exposure
            // less its pre-period.
            let experiments: Vec<String> = needs
                .iter()
                .zip(&starts)
                .filter_map(|(need, start)| {
                    let needed_from = start.as_ref()?.saturating_sub(need.pre_period_ms);
                    (to_ms > needed_from).then(|| need.key.clone())
                })
                .collect();
            if !experiments.is_empty() {
                warn!(
                    day = %day,
                    experiments = %experiments.join(", "),
                    "event partitions kept past the retention: running experiments read them"
                );
                report.held.push(Held { day, partitions, experiments });
                continue;
            }
            drop_day(client, &partitions).await?;
            self.metrics.retention_dropped.inc_by(partitions.len() as u64);
            info!(day = %day, partitions = %partitions.join(", "), "dropped event partitions past the retention");
            report.dropped.extend(partitions);
        }
        Ok(report)
    }

    /// Each experiment's first exposure before `before_ms`, in the order of `needs` (see
    /// [`first_exposures`]), from the cache when known. Only a first exposure older than
    /// `settled_ms` is kept: by then no event earlier than it can still arrive (events more
    /// than 7 days old are refused, and the retention is longer).
    async fn first_exposures(
        &self,
        client: &tokio_postgres::Client,
        needs: &[Need],
        before_ms: i64,
        settled_ms: i64,
    ) -> Result<Vec<Option<i64>>, RetentionError> {
        let id = |n: &Need| (n.environment_id, n.experiment_id);
        let mut starts: Vec<Option<i64>> = {
            let mut cache = self.first_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Experiments no longer running are forgotten: if one resumes, it is looked up again.
            let running: HashSet<(Uuid, Uuid)> = needs.iter().map(id).collect();
            cache.retain(|k, _| running.contains(k));
            needs.iter().map(|n| cache.get(&id(n)).copied()).collect()
        };
        let unknown: Vec<usize> = (0..needs.len()).filter(|&i| starts[i].is_none()).collect();
        let asked: Vec<&Need> = unknown.iter().map(|&i| &needs[i]).collect();
        let found = first_exposures(client, &asked, before_ms).await?;
        let mut cache = self.first_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (&i, start) in unknown.iter().zip(found) {
            if let Some(start) = start
                && start < settled_ms
            {
                cache.insert(id(&needs[i]), start);
            }
            starts[i] = start;
        }
        Ok(starts)
    }

    /// The running experiments and enabled holdouts, each with its longest pre-period.
    async fn running(&self) -> Result<Vec<Need>, RetentionError> {
        let list = self.config.list_running().await.map_err(|e| RetentionError::Config(e.to_string()))?;
        needs(&list).map_err(RetentionError::Config)
    }
}

/// Parses `ListRunning`'s answer; any definition that does not parse fails the whole cycle
/// rather than risk dropping what it needs.
fn needs(list: &pb::ListRunningResponse) -> Result<Vec<Need>, String> {
    let mut pre_periods: HashMap<(String, String), u64> = HashMap::new();
    for m in &list.metrics {
        let def: MetricDef = serde_json::from_str(&m.definition_json)
            .map_err(|e| format!("a metric that does not parse: {e}"))?;
        if let Some(c) = def.cuped {
            pre_periods.insert((m.environment_id.clone(), def.key), c.pre_period_seconds);
        }
    }
    let running = list
        .experiments
        .iter()
        .map(|e| (&e.environment_id, &e.definition_json))
        .chain(list.holdouts.iter().map(|h| (&h.environment_id, &h.definition_json)));
    let mut needs = Vec::new();
    for (environment, json) in running {
        let def: RunningDef =
            serde_json::from_str(json).map_err(|e| format!("an experiment that does not parse: {e}"))?;
        let environment_id =
            Uuid::parse_str(environment).map_err(|_| format!("{environment:?} for an environment id"))?;
        let pre_period_s = def
            .primary_metrics
            .iter()
            .chain(&def.guardrail_metrics)
            .chain(&def.metrics)
            .filter_map(|key| pre_periods.get(&(environment.clone(), key.clone())))
            .copied()
            .max()
            .unwrap_or(0);
        needs.push(Need {
            environment_id,
            experiment_id: def.id,
            key: def.key,
            pre_period_ms: i64::try_from(pre_period_s.saturating_mul(1000)).unwrap_or(i64::MAX),
        });
    }
    Ok(needs)
}

/// The partitions of both tables whose whole range ended at or before `cutoff_ms`, read from
/// the catalog (any name; a DEFAULT partition has no range and is never dropped).
async fn expired_partitions(
    client: &tokio_postgres::Client,
    cutoff_ms: i64,
) -> Result<Vec<Partition>, RetentionError> {
    let rows = client
        .query(
            "SELECT name, (extract(epoch FROM bounds[1]::timestamptz) * 1000)::int8,
                    (extract(epoch FROM bounds[2]::timestamptz) * 1000)::int8
             FROM (
                 SELECT format('%I.%I', n.nspname, c.relname) AS name,
                        regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                     '^FOR VALUES FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)$') AS bounds
                 FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE i.inhparent IN ('cohort_events.exposures'::regclass, 'cohort_events.metric_events'::regclass)
             ) p
             WHERE bounds IS NOT NULL AND bounds[2]::timestamptz <= to_timestamp($1::float8 / 1000)
             ORDER BY 2, 1",
            &[&(cutoff_ms as f64)],
        )
        .await?;
    Ok(rows.iter().map(|r| Partition { name: r.get(0), from_ms: r.get(1), to_ms: r.get(2) }).collect())
}

/// Each experiment's first exposure before `before_ms` (milliseconds since the epoch), in the
/// order of `needs`; `None` when it has none that early, so it needs no day that ended by
/// then. Partition pruning keeps this to the old days.
async fn first_exposures(
    client: &tokio_postgres::Client,
    needs: &[&Need],
    before_ms: i64,
) -> Result<Vec<Option<i64>>, RetentionError> {
    let mut starts = Vec::with_capacity(needs.len());
    let statement = client
        .prepare(
            "SELECT (extract(epoch FROM min(ts)) * 1000)::int8 FROM cohort_events.exposures
             WHERE environment_id = $1 AND experiment_id = $2 AND ts < to_timestamp($3::float8 / 1000)",
        )
        .await?;
    for need in needs {
        // A day is needed up to `pre_period` before the first exposure, so look that far past
        // the last expired day.
        let horizon = before_ms.saturating_add(need.pre_period_ms) as f64;
        let row =
            client.query_one(&statement, &[&need.environment_id, &need.experiment_id, &horizon]).await?;
        starts.push(row.get(0));
    }
    Ok(starts)
}

/// Drops one day's partitions in one transaction.
async fn drop_day(client: &tokio_postgres::Client, partitions: &[String]) -> Result<(), RetentionError> {
    // The names come from the catalog, already quoted by format('%I.%I').
    let sql = format!(
        "BEGIN; SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; SELECT pg_advisory_xact_lock({PARTITION_LOCK_KEY}); \
         DROP TABLE IF EXISTS {}; COMMIT;",
        partitions.join(", ")
    );
    if let Err(e) = client.batch_execute(&sql).await {
        // Leave no transaction open on the session (it is closed by the caller anyway).
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(e.into());
    }
    Ok(())
}

/// `YYYY-MM-DD` of the UTC day holding `ms`.
fn format_day(ms: i64) -> String {
    let (y, m, d) = civil_from_days(day_of(ms));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests;
