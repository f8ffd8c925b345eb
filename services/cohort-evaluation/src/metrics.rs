//! The evaluation service's Prometheus metrics, registered once per process and passed down.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::environments::EnvMetrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `Evaluate`, `EvaluateBatch`, `http_evaluate`, or `other` (health, reflection).
    pub method: &'static str,
    /// The gRPC code name (`ok`, `unauthenticated`, ...), or the HTTP status for HTTP.
    pub code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency, in seconds, by method.
    pub latency: Family<MethodLabels, Histogram>,
    /// Decisions returned.
    pub decisions: Counter,
    pub environments: EnvMetrics,
}

/// 50 µs to about 1.6 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            decisions: Counter::default(),
            environments: EnvMetrics {
                live: Gauge::default(),
                builds: Family::default(),
                closed: Family::default(),
            },
        };
        let r = registry.sub_registry_with_prefix("cohort_evaluation");
        r.register("requests", "Requests by method and status code", m.requests.clone());
        r.register("request_duration_seconds", "Request latency by method", m.latency.clone());
        r.register("decisions", "Decisions returned", m.decisions.clone());
        r.register("environments", "Environments with a live SDK client", m.environments.live.clone());
        r.register(
            "environment_builds",
            "SDK clients built, by outcome (ready, not_ready, rejected)",
            m.environments.builds.clone(),
        );
        r.register(
            "environment_closes",
            "SDK clients closed, by reason (idle, evicted, rejected, shutdown)",
            m.environments.closed.clone(),
        );
        m
    }
}
