//! The config service's Prometheus metrics, registered once per process and passed down.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PushLabels {
    /// snapshot, delta, heartbeat, pong or go_away.
    pub kind: &'static str,
}

/// What a config stream was sent, for the `pushes` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    Snapshot,
    Delta,
    Heartbeat,
    Pong,
    GoAway,
}

impl Push {
    const ALL: [Push; 5] = [Push::Snapshot, Push::Delta, Push::Heartbeat, Push::Pong, Push::GoAway];

    fn label(self) -> &'static str {
        match self {
            Push::Snapshot => "snapshot",
            Push::Delta => "delta",
            Push::Heartbeat => "heartbeat",
            Push::Pong => "pong",
            Push::GoAway => "go_away",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WriteLabels {
    pub action: &'static str,
    /// ok, or the gRPC code of the refusal.
    pub outcome: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub streams: Gauge,
    pub pushes: Family<PushLabels, Counter>,
    /// The `pushes` counters by kind, looked up once: the fan-out counts one push per stream.
    push_counters: [Counter; 5],
    pub acks: Counter,
    /// Commit to acknowledgment, in seconds, for acknowledgments received by this replica.
    pub propagation_seconds: Histogram,
    pub writes: Family<WriteLabels, Counter>,
    pub notifications: Counter,
    pub env_loads: Counter,
}

impl Metrics {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let pushes = Family::<PushLabels, Counter>::default();
        let push_counters =
            Push::ALL.map(|kind| pushes.get_or_create(&PushLabels { kind: kind.label() }).clone());
        let m = Metrics {
            streams: Gauge::default(),
            pushes,
            push_counters,
            acks: Counter::default(),
            propagation_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            writes: Family::default(),
            notifications: Counter::default(),
            env_loads: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("cohort_config");
        r.register("streams", "Connected config streams", m.streams.clone());
        r.register("pushes", "Messages pushed to config streams", m.pushes.clone());
        r.register("acks", "Versions acknowledged by SDKs", m.acks.clone());
        r.register(
            "propagation_seconds",
            "Time from commit to SDK acknowledgment",
            m.propagation_seconds.clone(),
        );
        r.register("writes", "Definition writes by action and outcome", m.writes.clone());
        r.register("notifications", "Change notifications received from PostgreSQL", m.notifications.clone());
        r.register("environment_loads", "Environment states loaded or refreshed", m.env_loads.clone());
        m
    }

    pub(crate) fn pushed(&self, kind: Push) {
        self.push_counters[kind as usize].inc();
    }
}
