//! The analysis service's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone)]
pub struct Metrics {
    pub cycles: Counter,
    pub cycle_seconds: Histogram,
    pub experiments: Gauge,
    pub looks: Counter,
    pub guardrail_pauses: Counter,
    /// 1 while this replica leads.
    pub leader: Gauge,
    /// Cycles that failed as a whole (no experiment was analyzed).
    pub cycle_failures: Counter,
    /// Experiments whose work failed, by stage; the others went on.
    experiment_failures: Family<StageLabel, Counter>,
    /// Experiments set aside after failing, waiting for their retry.
    pub quarantined: Gauge,
    /// Age of the data behind the newest results when they were stored (snapshot to store).
    pub result_lag_seconds: Gauge<f64, AtomicU64>,
    /// New rows the last cycle's fold took in (what had waited since the cycle before).
    pub backlog_events: Gauge,
    /// When the snapshot of the last advance was taken: every event stored before it is folded.
    pub folded_through: Gauge<f64, AtomicU64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            cycles: Counter::default(),
            cycle_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            experiments: Gauge::default(),
            looks: Counter::default(),
            guardrail_pauses: Counter::default(),
            leader: Gauge::default(),
            cycle_failures: Counter::default(),
            experiment_failures: Family::default(),
            quarantined: Gauge::default(),
            result_lag_seconds: Gauge::default(),
            backlog_events: Gauge::default(),
            folded_through: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("cohort_analysis");
        r.register("cycles", "Analysis cycles completed", m.cycles.clone());
        r.register("cycle_seconds", "Duration of an analysis cycle", m.cycle_seconds.clone());
        r.register("running_experiments", "Running experiments in the last cycle", m.experiments.clone());
        r.register("looks", "Formal looks recorded", m.looks.clone());
        r.register("guardrail_pauses", "Experiments paused by a guardrail", m.guardrail_pauses.clone());
        r.register("leader", "Whether this replica leads", m.leader.clone());
        r.register("cycle_failures", "Analysis cycles that failed as a whole", m.cycle_failures.clone());
        r.register(
            "experiment_failures",
            "Experiments whose analysis failed in a cycle, by stage (the others went on)",
            m.experiment_failures.clone(),
        );
        r.register("quarantined_experiments", "Experiments set aside after failing", m.quarantined.clone());
        r.register(
            "result_lag_seconds",
            "Age of the data behind the latest results when they were stored: events stored after the cycle's snapshot are not in them",
            m.result_lag_seconds.clone(),
        );
        r.register(
            "backlog_events",
            "New rows the last cycle folded in, stored since the cycle before: units with new exposures plus new metric events (experiments rebuilt from all their rows aside)",
            m.backlog_events.clone(),
        );
        // Its age, time() minus it, grows while cycles stall: a gauge of the age set per
        // cycle would freeze at its last value.
        r.register(
            "folded_through_timestamp_seconds",
            "Unix time of the last advance's snapshot: events stored before it are folded",
            m.folded_through.clone(),
        );
        m
    }

    pub fn experiment_failures(&self, stage: crate::cycle::Stage) -> Counter {
        self.experiment_failures.get_or_create(&StageLabel { stage: stage.as_str() }).clone()
    }
}
