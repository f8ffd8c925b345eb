//! The service's Prometheus metrics, registered once into the process registry and passed
//! down as one `Arc<Metrics>` (no global statics).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of rejected events: which rule refused them.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Labels of refused requests (whole batches): why.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub code: &'static str,
}

/// Labels of drained rows: which table.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: &'static str,
}

/// Every metric of the event service.
#[derive(Debug)]
pub struct Metrics {
    /// Events stored durably in the spool and acknowledged.
    pub accepted: Counter,
    /// Events refused by validation, by rule.
    pub rejected: Family<ReasonLabels, Counter>,
    /// Whole requests refused (auth, rate limit, full spool, ...), by status.
    pub refused: Family<RefusalLabels, Counter>,
    /// Bytes of spool segments on disk.
    pub spool_bytes: Gauge,
    /// Age of the oldest event not yet drained to PostgreSQL, in seconds (0 when caught up).
    pub oldest_undrained_seconds: Gauge<f64, AtomicU64>,
    /// Rows inserted into PostgreSQL, by table.
    pub drained_rows: Family<TableLabels, Counter>,
    /// Rows the drainer found already stored (retries, re-drains after a crash).
    pub duplicates_skipped: Counter,
    /// Drain transactions that failed and were retried.
    pub drain_errors: Counter,
    /// Bytes of spool records that could not be read back (disk corruption), never silent.
    pub spool_corrupt_bytes: Counter,
    /// Latency of one group write + fdatasync of the spool, in seconds.
    pub fsync_seconds: Histogram,
    /// Appends (requests) per group commit.
    pub group_size: Histogram,
    /// Latency of one drain transaction (COPY + insert + commit), in seconds.
    pub drain_seconds: Histogram,
    /// Day partitions dropped by retention.
    pub retention_dropped: Counter,
    /// Partitions past the retention kept in the last cycle because a running experiment reads
    /// their day.
    pub retention_held: Gauge,
    /// Retention cycles that failed (config service or database unreachable): nothing dropped.
    pub retention_failures: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them under `cohort_events_`.
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            accepted: Counter::default(),
            rejected: Family::default(),
            refused: Family::default(),
            spool_bytes: Gauge::default(),
            oldest_undrained_seconds: Gauge::default(),
            drained_rows: Family::default(),
            duplicates_skipped: Counter::default(),
            drain_errors: Counter::default(),
            spool_corrupt_bytes: Counter::default(),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            group_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            drain_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            retention_dropped: Counter::default(),
            retention_held: Gauge::default(),
            retention_failures: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("cohort_events");
        r.register("accepted_events", "Events stored durably and acknowledged", m.accepted.clone());
        r.register("rejected_events", "Events refused by validation, by rule", m.rejected.clone());
        r.register("refused_requests", "Whole requests refused, by gRPC status", m.refused.clone());
        r.register("spool_bytes", "Bytes of spool segments on disk", m.spool_bytes.clone());
        r.register(
            "oldest_undrained_event_age_seconds",
            "Age of the oldest event not yet in PostgreSQL",
            m.oldest_undrained_seconds.clone(),
        );
        r.register("drained_rows", "Rows inserted into PostgreSQL, by table", m.drained_rows.clone());
        r.register(
            "duplicates_skipped",
            "Drained rows already stored (retries and re-drains)",
            m.duplicates_skipped.clone(),
        );
        r.register("drain_errors", "Drain transactions that failed and were retried", m.drain_errors.clone());
        r.register(
            "spool_corrupt_bytes",
            "Spool bytes that failed their checksum and were skipped",
            m.spool_corrupt_bytes.clone(),
        );
        r.register("fsync_seconds", "Spool group write and fdatasync latency", m.fsync_seconds.clone());
        r.register("group_commit_size", "Appends per spool group commit", m.group_size.clone());
        r.register("drain_transaction_seconds", "Drain transaction latency", m.drain_seconds.clone());
        r.register(
            "retention_dropped_partitions",
            "Day partitions dropped past the retention",
            m.retention_dropped.clone(),
        );
        r.register(
            "retention_held_partitions",
            "Partitions past the retention kept for running experiments (last cycle)",
            m.retention_held.clone(),
        );
        r.register(
            "retention_failures",
            "Retention cycles that failed and dropped nothing more",
            m.retention_failures.clone(),
        );
        m
    }

    /// Counts a refused request under its status code name.
    pub fn refuse(&self, code: &'static str) {
        self.refused.get_or_create(&RefusalLabels { code }).inc();
    }
}
