//! The analysis cycle and its leader: one replica at a time (a PostgreSQL advisory lock) runs
//! a cycle every interval over every running experiment; another takes over when it dies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cohort_backoff::{Backoff, BackoffPolicy};
use cohort_core::error::chain;
use cohort_core::model::MetricDef;
use cohort_runtime::Condition;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::analyze::{self, Looks, Plan, ResultCoverage, Settings, top_values};
use crate::config::ConfigClient;
use crate::metrics::Metrics;
use crate::store::{Basis, ExperimentRef, ExperimentSums, RebuildLimits, Running, Store, StoreError};

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
    /// Experiments whose analysis failed this cycle (the others went on).
    pub failed: usize,
    /// Experiments set aside after failing, waiting for their retry.
    pub quarantined: usize,
}

/// An experiment whose work failed, and when it is tried again.
#[derive(Debug, Clone, Copy)]
struct Quarantine {
    failures: u32,
    until: Instant,
}

/// The first retry of a failed experiment; each failure in a row doubles it, up to the cap.
const QUARANTINE_FIRST: Duration = Duration::from_secs(30);
const QUARANTINE_CAP: Duration = Duration::from_secs(30 * 60);

/// Where in a cycle an experiment's work failed (the `stage` label of the failure counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Aggregate,
    Analyze,
    Store,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Aggregate => "aggregate",
            Stage::Analyze => "analyze",
            Stage::Store => "store",
        }
    }
}

#[derive(Debug)]
pub struct Analyzer {
    store: Store,
    config: ConfigClient,
    settings: Settings,
    metrics: Metrics,
    /// Each experiment's look schedule, rebuilt from the database when missing.
    looks: Mutex<HashMap<ExperimentRef, Arc<tokio::sync::Mutex<Looks>>>>,
    /// Experiments whose work failed: left out of cycles until their retry time, so one
    /// experiment's bad data never stops the analysis of the others.
    quarantine: Mutex<HashMap<ExperimentRef, Quarantine>>,
}

impl Analyzer {
    pub fn new(store: Store, config: ConfigClient, settings: Settings, metrics: Metrics) -> Self {
        Analyzer {
            store,
            config,
            settings,
            metrics,
            looks: Mutex::new(HashMap::new()),
            quarantine: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets cached schedules (a new leader must trust only the database).
    pub fn reset(&self) {
        self.looks.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Analyzes every running experiment once: advances the aggregation state by what was
    /// stored since the last cycle, then analyzes each experiment from its sums. An
    /// experiment whose work fails is set aside (quarantined, retried later) and the others
    /// go on; only a failure that is no experiment's (the database unreachable, another
    /// leader) fails the cycle.
    pub async fn cycle(&self) -> Result<CycleReport, StoreError> {
        let started = Instant::now();
        let (running, metrics) = self.config.running().await?;
        let running: Vec<Running> = {
            let quarantine = self.quarantine.lock().unwrap_or_else(|p| p.into_inner());
            let at = Instant::now();
            running.into_iter().filter(|e| quarantine.get(&e.id()).is_none_or(|q| q.until <= at)).collect()
        };
        let no_metrics = Vec::new();
        let bases: Vec<Basis> = running
            .iter()
            .map(|exp| basis(exp, metrics.get(&exp.environment_id).unwrap_or(&no_metrics)))
            .collect();
        let limits = RebuildLimits {
            experiments: self.settings.max_rebuilds_per_cycle,
            time: self.settings.rebuild_budget,
        };
        let mut failed: Vec<(ExperimentRef, Stage)> = Vec::new();
        let (advanced, bases) = match self.store.advance(&bases, limits, true).await {
            Ok(a) => (a, bases),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                warn!(error = %chain(&e), experiments = bases.len(), "aggregation failed; looking for the experiment that fails it");
                let culprits = self.culprits(&bases, limits).await?;
                if culprits.is_empty() {
                    return Err(e);
                }
                for (id, e) in &culprits {
                    warn!(experiment = %id, error = %chain(e), "aggregation of this experiment fails; it is set aside");
                    failed.push((*id, Stage::Aggregate));
                }
                let bases: Vec<Basis> =
                    bases.into_iter().filter(|b| !culprits.iter().any(|(id, _)| *id == b.id())).collect();
                (self.store.advance(&bases, limits, true).await?, bases)
            }
        };
        // Experiments still waiting for their state are analyzed once it is built.
        let running: Vec<Running> = running
            .into_iter()
            .filter(|e| {
                let id = e.id();
                !advanced.pending.contains(&id) && bases.iter().any(|b| b.id() == id)
            })
            .collect();
        let mut sums = self.store.sums(&bases).await?;
        // Results are computed from the snapshot just taken: after it, never before.
        let now = SystemTime::now();
        let aggregation = started.elapsed();
        debug!(
            rebuilt = advanced.rebuilt,
            touched_units = advanced.touched_units,
            ?aggregation,
            "aggregation advanced"
        );
        let ids: Vec<ExperimentRef> = running.iter().map(Running::id).collect();
        let mut plans = self.store.plans(&ids).await?;
        // Futures built first: mapping inside the stream trips higher-ranked lifetime inference.
        let jobs: Vec<_> = running
            .iter()
            .map(|exp| {
                let s = sums.remove(&exp.id()).unwrap_or_default();
                let plan = plans.remove(&exp.id());
                let coverage = ResultCoverage {
                    as_of_ms: advanced.coverage.as_of_ms,
                    ingest_position: advanced.coverage.ingest_position,
                    newest_event_received_ms: advanced
                        .coverage
                        .newest_received_ms
                        .get(&exp.environment_id)
                        .copied(),
                    lag_ms: 0,
                };
                let job = self.analyze_one(
                    exp,
                    metrics.get(&exp.environment_id).unwrap_or(&no_metrics),
                    s,
                    plan,
                    now,
                    coverage,
                );
                async move { (exp.id(), job.await) }
            })
            .collect();
        let outcomes: Vec<(ExperimentRef, Result<Analyzed, StoreError>)> =
            futures::stream::iter(jobs).buffer_unordered(CONCURRENCY).collect().await;
        let mut report = CycleReport {
            experiments: running.len(),
            rebuilt: advanced.rebuilt,
            pending: advanced.pending.len(),
            aggregation,
            ..Default::default()
        };
        let mut latest = Vec::new();
        for (id, o) in outcomes {
            match o {
                Ok(a) => {
                    report.looks += usize::from(a.look);
                    report.paused += usize::from(a.paused);
                    latest.extend(a.latest);
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    warn!(experiment = %id, error = %chain(&e), "experiment analysis failed; it is set aside");
                    failed.push((id, Stage::Analyze));
                }
            }
        }
        // Results between looks in one statement: a thousand round trips cost more than the
        // rows. Should it fail, one at a time, so only the experiment at fault is left out.
        if let Err(e) = self.store.record_latest_many(&latest).await {
            if e.is_transient() {
                return Err(e);
            }
            warn!(error = %chain(&e), "storing the latest results failed; storing them one by one");
            for one in latest.chunks(1) {
                if let Err(e) = self.store.record_latest_many(one).await {
                    if e.is_transient() {
                        return Err(e);
                    }
                    warn!(experiment = %one[0].0, error = %chain(&e), "storing the latest result failed; it is set aside");
                    failed.push((one[0].0, Stage::Store));
                }
            }
        }
        report.failed = failed.len();
        report.quarantined = self.settle_quarantine(&running, &failed);
        self.metrics.cycles.inc();
        self.metrics.cycle_seconds.observe(started.elapsed().as_secs_f64());
        self.metrics.experiments.set(report.experiments as i64);
        // How old the data of the results just stored were: from the snapshot to now.
        let lag_ms = cohort_core::time::unix_ms(SystemTime::now()) - advanced.coverage.as_of_ms;
        self.metrics.result_lag_seconds.set(lag_ms as f64 / 1000.0);
        self.metrics.backlog_events.set(advanced.folded as i64);
        self.metrics.folded_through.set(advanced.coverage.as_of_ms as f64 / 1000.0);
        Ok(report)
    }

    /// The experiments whose aggregation fails on its own: trial advances, rolled back, over
    /// halves of `bases` until each failing one is alone (a few trials per culprit).
    async fn culprits(
        &self,
        bases: &[Basis],
        limits: RebuildLimits,
    ) -> Result<Vec<(ExperimentRef, StoreError)>, StoreError> {
        let mut found = Vec::new();
        let mut groups = vec![bases.to_vec()];
        while let Some(group) = groups.pop() {
            match self.store.advance(&group, limits, false).await {
                Ok(_) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) if group.len() == 1 => found.push((group[0].id(), e)),
                Err(_) => {
                    let mut group = group;
                    let right = group.split_off(group.len() / 2);
                    groups.push(right);
                    groups.push(group);
                }
            }
        }
        Ok(found)
    }

    /// Records this cycle's failures (counted, quarantined with a doubling retry time) and
    /// releases experiments analyzed without one; returns how many are set aside now.
    fn settle_quarantine(&self, analyzed: &[Running], failed: &[(ExperimentRef, Stage)]) -> usize {
        let mut quarantine = self.quarantine.lock().unwrap_or_else(|p| p.into_inner());
        for exp in analyzed {
            if !failed.iter().any(|(id, _)| *id == exp.id()) {
                quarantine.remove(&exp.id());
            }
        }
        let at = Instant::now();
        for (id, stage) in failed {
            self.metrics.experiment_failures(*stage).inc();
            let q = quarantine.entry(*id).or_insert(Quarantine { failures: 0, until: at });
            q.failures = q.failures.saturating_add(1);
            let wait = QUARANTINE_FIRST.saturating_mul(1 << (q.failures - 1).min(10)).min(QUARANTINE_CAP);
            q.until = at + wait;
        }
        self.metrics.quarantined.set(quarantine.len() as i64);
        quarantine.len()
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
        coverage: ResultCoverage,
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
                Some(p) => Some(self.store.save_plan(exp.id(), &p).await?),
                None => None,
            },
        };
        let schedule = self.schedule(exp.id()).await?;
        let mut looks = schedule.lock().await;
        let now_ms = cohort_core::time::unix_ms(now);
        let mut outcome = analyze::analyze(
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
        outcome.result.coverage = Some(ResultCoverage { lag_ms: now_ms - coverage.as_of_ms, ..coverage });
        outcome.result.holdout = exp.holdout;
        let mut recorded = false;
        let mut latest = None;
        match outcome.new_look {
            Some((look, fraction, boundary)) => {
                let stored =
                    self.store.record_look(exp.id(), look, fraction, boundary, &outcome.result).await;
                if !matches!(stored, Ok(true)) {
                    // Not stored (another leader recorded this look, or the write failed): the
                    // in-memory schedule is ahead of the database, so rebuild it from there.
                    drop(looks);
                    self.looks.lock().unwrap_or_else(|p| p.into_inner()).remove(&exp.id());
                    return stored.map(|_| Analyzed::default());
                }
                recorded = true;
                self.metrics.looks.inc();
            }
            None => latest = Some((exp.id(), outcome.result)),
        }
        let mut paused = false;
        if let Some(reason) = outcome.breach.as_ref().filter(|_| !exp.holdout) {
            paused = self.pause(exp, reason).await;
        }
        Ok(Analyzed { look: recorded, paused, latest })
    }

    async fn schedule(
        &self,
        experiment: ExperimentRef,
    ) -> Result<Arc<tokio::sync::Mutex<Looks>>, StoreError> {
        if let Some(s) = self.looks.lock().unwrap_or_else(|p| p.into_inner()).get(&experiment) {
            return Ok(s.clone());
        }
        let (fractions, crossed) = self.store.look_fractions(experiment).await?;
        let looks = Arc::new(tokio::sync::Mutex::new(Looks::from_fractions(
            &fractions,
            self.settings.alpha,
            crossed,
        )));
        let mut cache = self.looks.lock().unwrap_or_else(|p| p.into_inner());
        Ok(cache.entry(experiment).or_insert(looks).clone())
    }

    /// Pauses an experiment through the config service's API (`TransitionExperiment` with
    /// this service's key), so the pause has its version, audit entry (with the reason, under
    /// the service's name) and notification like any other change.
    async fn pause(&self, exp: &Running, reason: &str) -> bool {
        match self.config.pause(exp, reason).await {
            Ok(version) => {
                info!(experiment = %exp.definition.key, version, reason, "guardrail paused the experiment");
                self.metrics.guardrail_pauses.inc();
                true
            }
            Err(e) => {
                // Edited meanwhile, or already paused: the next cycle sees the new state.
                warn!(experiment = %exp.definition.key, error = %chain(&e), "could not pause on a guardrail breach");
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
    /// A result between looks, still to be stored.
    latest: Option<(ExperimentRef, analyze::ExperimentResult)>,
}

/// What an experiment's aggregation needs: its metrics' streams and pairs of streams, and its
/// breakdowns.
fn basis(exp: &Running, metrics: &[MetricDef]) -> Basis {
    let def = &exp.definition;
    let used: Vec<&MetricDef> = def
        .primary_metrics
        .iter()
        .chain(&def.guardrail_metrics)
        .filter_map(|k| metrics.iter().find(|m| m.key == *k))
        .collect();
    Basis {
        experiment_id: def.id,
        environment_id: exp.environment_id,
        events: used.iter().flat_map(|m| m.streams()).collect(),
        pairs: used.iter().flat_map(|m| m.stream_pairs()).collect(),
        breakdowns: def.breakdown_attributes.clone(),
    }
}

/// Cycles that fail as a whole in a row before readiness says the leader cannot do its job
/// (one failure is usually a second leader's race or a blip).
const FAILED_CYCLES_UNREADY: u32 = 3;

/// Holds the leader lock while the process lives: runs cycles when leading, otherwise waits
/// for the lock. The lock lives on a dedicated connection, so a dead leader frees it.
/// `cycles` holds unless this replica leads and its cycles keep failing.
pub async fn lead(
    analyzer: Arc<Analyzer>,
    database_url: String,
    interval: Duration,
    cycles: Condition,
    shutdown: CancellationToken,
) {
    cycles.set(true);
    let mut failed_in_a_row = 0u32;
    // Standbys poll the lock every `retry`; a lost or failed connection waits a jittered
    // `retry` too (both bounds), so replicas that lost the database do not return in lockstep.
    let retry = interval.min(Duration::from_secs(5));
    let mut backoff = Backoff::new(BackoffPolicy { initial: retry, max: retry });
    loop {
        let (client, connection) = match cohort_db::connect_dedicated(&database_url).await {
            Ok(c) => {
                backoff.reset();
                c
            }
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(error = %chain(&e), retry_in = ?delay, "cannot connect for the leader lock");
                if sleep_or_stop(delay, &shutdown).await {
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
                    warn!(error = %chain(&e), "leader lock connection lost");
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
                            failed_in_a_row = 0;
                            cycles.set(true);
                            info!(
                                experiments = r.experiments,
                                rebuilt = r.rebuilt,
                                pending = r.pending,
                                looks = r.looks,
                                paused = r.paused,
                                failed = r.failed,
                                quarantined = r.quarantined,
                                "analysis cycle"
                            );
                            // A start-up with state to rebuild: the next share right away, not
                            // an interval later (each cycle stays short either way).
                            if r.pending > 0 {
                                tick.reset_immediately();
                            }
                        }
                        Err(e) => {
                            analyzer.metrics.cycle_failures.inc();
                            failed_in_a_row += 1;
                            if failed_in_a_row >= FAILED_CYCLES_UNREADY {
                                cycles.set(false);
                            }
                            warn!(error = %chain(&e), failed_in_a_row, "analysis cycle failed");
                        }
                    }
                }
                analyzer.metrics.leader.set(0);
                // Not leading: whatever failed is another replica's to retry.
                failed_in_a_row = 0;
                cycles.set(true);
                break;
            }
            if sleep_or_stop(retry, &shutdown).await {
                driver.abort();
                return;
            }
        }
        driver.abort();
        if sleep_or_stop(backoff.next_delay(), &shutdown).await {
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
