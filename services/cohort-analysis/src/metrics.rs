//! The analysis service's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct Metrics {
    pub cycles: Counter,
    pub cycle_seconds: Histogram,
    pub experiments: Gauge,
    pub looks: Counter,
    pub guardrail_pauses: Counter,
    /// 1 while this replica leads.
    pub leader: Gauge,
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
        };
        let r = registry.sub_registry_with_prefix("cohort_analysis");
        r.register("cycles", "Analysis cycles completed", m.cycles.clone());
        r.register("cycle_seconds", "Duration of an analysis cycle", m.cycle_seconds.clone());
        r.register("running_experiments", "Running experiments in the last cycle", m.experiments.clone());
        r.register("looks", "Formal looks recorded", m.looks.clone());
        r.register("guardrail_pauses", "Experiments paused by a guardrail", m.guardrail_pauses.clone());
        r.register("leader", "Whether this replica leads", m.leader.clone());
        m
    }
}
