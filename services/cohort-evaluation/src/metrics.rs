//! The evaluation service's Prometheus metrics, registered once per process and passed down
//! (requests by method and code are the skeleton's, `cohort_grpc_requests` and
//! `cohort_http_requests`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::environments::EnvMetrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Decisions returned.
    pub decisions: Counter,
    pub environments: EnvMetrics,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            decisions: Counter::default(),
            environments: EnvMetrics {
                live: Gauge::default(),
                builds: Family::default(),
                closed: Family::default(),
            },
        };
        let r = registry.sub_registry_with_prefix("cohort_evaluation");
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
