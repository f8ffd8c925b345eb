//! The analysis cycle and its leader: one replica at a time (a PostgreSQL advisory lock) runs
//! a cycle every interval over every running experiment; another takes over when it dies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cohort_config::domain::{Action, Op};
use cohort_core::model::MetricDef;
use cohort_db::keys::{KeyKind, Principal};
use futures::StreamExt;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::analyze::{self, Looks, Plan, Settings, top_values};
use crate::metrics::Metrics;
use crate::store::{Basis, ExperimentSums, RebuildLimits, Running, Store, StoreError};

/// An arbitrary, fixed advisory-lock key for the analysis leader.
const LEADER_LOCK: i64 = 0x636f_686f_7274_616e;
/// Experiments analyzed at once; the database does the heavy lifting.
const CONCURRENCY: usize = 4;

/// What one cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub experiments: usize,
    /// Experiments whose aggregation state was rebuilt from all their rows.
    pub rebuilt: usize,
    /// Experiments not analyzed: their rebuild waits for a later cycle.
    pub pending: usize,
    /// Time spent advancing and reading the aggregation state.
    pub aggregation: Duration,
    pub looks: usize,
    pub paused: usize,
    pub failed: usize,
}

#[derive(Debug)]
pub struct Analyzer {
    store: Store,
    config: cohort_config::store::Store,
    settings: Settings,
    metrics: Metrics,
    /// Each experiment's look schedule, rebuilt from the database when missing.
    looks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<Looks>>>>,
}

impl Analyzer {
    pub fn new(store: Store, settings: Settings, metrics: Metrics) -> Self {
        let config = cohort_config::store::Store::new(store.pool().clone());
        Analyzer { store, config, settings, metrics, looks: Mutex::new(HashMap::new()) }
    }

    /// Forgets cached schedules (a new leader must trust only the database).
    pub fn reset(&self) {
        self.looks.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Analyzes every running experiment once: advances the aggregation state by what was
    /// stored since the last cycle, then analyzes each experiment from its sums.
    pub async fn cycle(&self) -> Result<CycleReport, StoreError> {
        let started = Instant::now();
        let now = SystemTime::now();
        let (running, metrics) = self.store.running().await?;
        let no_metrics = Vec::new();
        let bases: Vec<Basis> = running
            .iter()
            .map(|exp| basis(exp, metrics.get(&exp.environment_id).unwrap_or(&no_metrics)))
            .collect();
        let limits = RebuildLimits {
            experiments: self.settings.max_rebuilds_per_cycle,
            time: self.settings.rebuild_budget,
        };
        let advanced = self.store.advance(&bases, limits).await?;
        // Experiments still waiting for their state are analyzed once it is built.
        let running: Vec<Running> =
            running.into_iter().filter(|e| !advanced.pending.contains(&e.definition.id)).collect();
        let mut sums = self.store.sums(&bases).await?;
        let aggregation = started.elapsed();
        debug!(
            rebuilt = advanced.rebuilt,
            touched_units = advanced.touched_units,
            ?aggregation,
            "aggregation advanced"
        );
        let ids: Vec<Uuid> = running.iter().map(|e| e.definition.id).collect();
        let mut plans = self.store.plans(&ids).await?;
        // Futures built first: mapping inside the stream trips higher-ranked lifetime inference.
        let jobs: Vec<_> = running
            .iter()
            .map(|exp| {
                let s = sums.remove(&exp.definition.id).unwrap_or_default();
                let plan = plans.remove(&exp.definition.id);
                self.analyze_one(exp, metrics.get(&exp.environment_id).unwrap_or(&no_metrics), s, plan, now)
            })
            .collect();
        let outcomes: Vec<Result<Analyzed, StoreError>> =
            futures::stream::iter(jobs).buffer_unordered(CONCURRENCY).collect().await;
        let mut report = CycleReport {
            experiments: running.len(),
            rebuilt: advanced.rebuilt,
            pending: advanced.pending.len(),
            aggregation,
            ..Default::default()
        };
        let mut latest = Vec::new();
        for o in outcomes {
            match o {
                Ok(a) => {
                    report.looks += usize::from(a.look);
                    report.paused += usize::from(a.paused);
                    latest.extend(a.latest);
                }
                Err(e) => {
                    report.failed += 1;
                    warn!(error = %e, "experiment analysis failed");
                }
            }
        }
        // Results between looks in one statement: a thousand round trips cost more than the rows.
        if let Err(e) = self.store.record_latest_many(&latest).await {
            report.failed += latest.len();
            warn!(error = %e, "storing the latest results failed");
        }
        self.metrics.cycles.inc();
        self.metrics.cycle_seconds.observe(started.elapsed().as_secs_f64());
        self.metrics.experiments.set(report.experiments as i64);
        Ok(report)
    }

    /// Analyzes one experiment; a formal look is recorded (with its latest result) at once,
    /// a result between looks is returned for the cycle to store with the others.
    async fn analyze_one(
        &self,
        exp: &Running,
        metrics: &[MetricDef],
        sums: ExperimentSums,
        plan: Option<Plan>,
        now: SystemTime,
    ) -> Result<Analyzed, StoreError> {
        let def = &exp.definition;
        let ExperimentSums { overall, excluded, segments: breakdowns } = sums;
        let segments: Vec<(String, String, analyze::Aggregates)> = breakdowns
            .into_iter()
            .flat_map(|(attribute, values)| {
                top_values(values, self.settings.max_segment_values)
                    .into_iter()
                    .map(move |(value, agg)| (attribute.clone(), value, agg))
            })
            .collect();

        let plan = match plan {
            Some(p) => Some(p),
            None => match analyze::make_plan(def, metrics, &overall, &self.settings) {
                Some(p) => Some(self.store.save_plan(exp.environment_id, def.id, &p).await?),
                None => None,
            },
        };
        let schedule = self.schedule(def.id).await?;
        let mut looks = schedule.lock().await;
        let now_ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let outcome = analyze::analyze(
            def,
            metrics,
            &overall,
            excluded,
            &segments,
            plan.as_ref(),
            &mut looks,
            &self.settings,
            now_ms,
        );
        let mut recorded = false;
        let mut latest = None;
        match outcome.new_look {
            Some((look, fraction, boundary)) => {
                let stored = self
                    .store
                    .record_look(exp.environment_id, look, fraction, boundary, &outcome.result)
                    .await;
                if !matches!(stored, Ok(true)) {
                    // Not stored (another leader recorded this look, or the write failed): the
                    // in-memory schedule is ahead of the database, so rebuild it from there.
                    drop(looks);
                    self.looks.lock().unwrap_or_else(|p| p.into_inner()).remove(&def.id);
                    return stored.map(|_| Analyzed::default());
                }
                recorded = true;
                self.metrics.looks.inc();
            }
            None => latest = Some((exp.environment_id, outcome.result)),
        }
        let mut paused = false;
        if let Some(reason) = &outcome.breach {
            paused = self.pause(exp, reason).await;
        }
        Ok(Analyzed { look: recorded, paused, latest })
    }

    async fn schedule(&self, experiment: Uuid) -> Result<Arc<tokio::sync::Mutex<Looks>>, StoreError> {
        if let Some(s) = self.looks.lock().unwrap_or_else(|p| p.into_inner()).get(&experiment) {
            return Ok(s.clone());
        }
        let (fractions, decided) = self.store.look_fractions(experiment).await?;
        let looks = Arc::new(tokio::sync::Mutex::new(Looks::from_fractions(
            &fractions,
            self.settings.alpha,
            decided,
        )));
        let mut cache = self.looks.lock().unwrap_or_else(|p| p.into_inner());
        Ok(cache.entry(experiment).or_insert(looks).clone())
    }

    /// Pauses an experiment through the config service's own write path, so the pause has
    /// its version, audit entry (with the reason) and notification like any other change.
    async fn pause(&self, exp: &Running, reason: &str) -> bool {
        let env = match self.config.environment_by_id(exp.environment_id).await {
            Ok(Some(env)) => env,
            Ok(None) => return false,
            Err(e) => {
                warn!(error = %e, "cannot load the environment to pause an experiment");
                return false;
            }
        };
        let actor = Principal {
            key_id: Uuid::nil(),
            key_name: "cohort-analysis guardrail".into(),
            kind: KeyKind::Admin,
            organization_id: env.organization_id,
            environment_id: None,
        };
        let op = Op::Transition {
            key: exp.definition.key.clone(),
            action: Action::Pause,
            expected_revision: exp.revision,
        };
        match self.config.write(&actor, &env, op, Some(reason)).await {
            Ok(w) => {
                info!(experiment = %exp.definition.key, version = w.version, reason, "guardrail paused the experiment");
                self.metrics.guardrail_pauses.inc();
                true
            }
            Err(e) => {
                // Edited meanwhile, or already paused: the next cycle sees the new state.
                warn!(experiment = %exp.definition.key, error = %e, "could not pause on a guardrail breach");
                false
            }
        }
    }
}

/// One experiment's analysis in a cycle.
#[derive(Debug, Default)]
struct Analyzed {
    look: bool,
    paused: bool,
    /// A result between looks, still to be stored (environment, result).
    latest: Option<(Uuid, analyze::ExperimentResult)>,
}

/// What an experiment's aggregation needs: its metrics' event names and its breakdowns.
fn basis(exp: &Running, metrics: &[MetricDef]) -> Basis {
    let def = &exp.definition;
    Basis {
        experiment_id: def.id,
        environment_id: exp.environment_id,
        events: def
            .primary_metrics
            .iter()
            .chain(&def.guardrail_metrics)
            .filter_map(|k| metrics.iter().find(|m| m.key == *k).map(|m| m.event.clone()))
            .collect(),
        breakdowns: def.breakdown_attributes.clone(),
    }
}

/// Holds the leader lock while the process lives: runs cycles when leading, otherwise waits
/// for the lock. The lock lives on a dedicated connection, so a dead leader frees it.
pub async fn lead(
    analyzer: Arc<Analyzer>,
    database_url: String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let retry = interval.min(Duration::from_secs(5));
    loop {
        let (client, connection) = match tokio_postgres::connect(&database_url, NoTls).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot connect for the leader lock");
                if sleep_or_stop(retry, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        let driver = tokio::spawn(connection);
        loop {
            let locked = match client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]).await {
                Ok(row) => row.get::<_, bool>(0),
                Err(e) => {
                    warn!(error = %e, "leader lock connection lost");
                    break;
                }
            };
            if locked {
                info!("leading analysis");
                analyzer.reset();
                analyzer.metrics.leader.set(1);
                let mut tick = tokio::time::interval(interval);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            analyzer.metrics.leader.set(0);
                            let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK]).await;
                            driver.abort();
                            return;
                        }
                        _ = tick.tick() => {}
                    }
                    // Still holding the lock? A broken connection means another may lead now.
                    if client.query_one("SELECT 1", &[]).await.is_err() {
                        warn!("lost the leader lock connection");
                        break;
                    }
                    match analyzer.cycle().await {
                        Ok(r) => {
                            info!(
                                experiments = r.experiments,
                                rebuilt = r.rebuilt,
                                pending = r.pending,
                                looks = r.looks,
                                paused = r.paused,
                                failed = r.failed,
                                "analysis cycle"
                            );
                            // A start-up with state to rebuild: the next share right away, not
                            // an interval later (each cycle stays short either way).
                            if r.pending > 0 {
                                tick.reset_immediately();
                            }
                        }
                        Err(e) => warn!(error = %e, "analysis cycle failed"),
                    }
                }
                analyzer.metrics.leader.set(0);
                break;
            }
            if sleep_or_stop(retry, &shutdown).await {
                driver.abort();
                return;
            }
        }
        driver.abort();
        if sleep_or_stop(retry, &shutdown).await {
            return;
        }
    }
}

/// Sleeps; true when shutdown came first.
async fn sleep_or_stop(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
