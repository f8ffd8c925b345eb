//! Drain throughput: spools N events (a realistic mix of exposures and metric events), then
//! times the drainer moving them into a fresh PostgreSQL database, and prints rows/s.
//!
//! `cargo bench -p cohort-events --bench drain` (N from `COHORT_BENCH_DRAIN_EVENTS`, default
//! 500000; event ids random (v4) or, with `COHORT_BENCH_DRAIN_IDS=v7`, time-ordered like
//! UUIDv7; the database server from `COHORT_TEST_DATABASE_URL`, default the local one).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cohort_core::time::unix_ms;
use cohort_db::testing::TestDb;
use cohort_events::drain::{DrainConfig, Drainer};
use cohort_events::metrics::Metrics;
use cohort_events::spool::{self, SpoolConfig, SpoolRecord};
use cohort_proto::events::v1 as pb;
use prometheus_client::registry::Registry;
use uuid::Uuid;

/// A time-ordered id shaped like a UUIDv7: 48 bits of milliseconds, version 7, then random
/// bits (with a per-process counter so ids are unique).
fn v7(now_ms: i64, counter: &mut u64) -> Uuid {
    *counter += 1;
    let high = ((now_ms as u64) << 16) | 0x7000 | (*counter >> 48 & 0x0fff);
    let low =
        (0x8000_0000_0000_0000 | (*counter & 0x3fff_ffff_ffff_ffff)) ^ (rand_low() & 0x3fff_0000_0000_0000);
    Uuid::from_u64_pair(high, low)
}

fn rand_low() -> u64 {
    Uuid::new_v4().as_u64_pair().1
}

fn events(n: usize, now_ms: i64, experiment: &str, ordered: Option<&mut u64>) -> Vec<pb::Event> {
    let mut counter = ordered;
    (0..n)
        .map(|i| {
            let kind = if i % 4 == 3 {
                pb::event::Kind::Metric(pb::Metric {
                    unit: format!("user-{}", i % 50_000),
                    name: "checkout".to_owned(),
                    value: Some((i % 100) as f64),
                    properties: HashMap::from([("platform".to_owned(), "ios".to_owned())]),
                })
            } else {
                pb::event::Kind::Exposure(pb::Exposure {
                    unit: format!("user-{}", i % 50_000),
                    experiment_id: experiment.to_owned(),
                    variant: if i % 2 == 0 { "control" } else { "treatment" }.to_owned(),
                    config_version: 42,
                    attributes: HashMap::from([
                        ("country".to_owned(), "NL".to_owned()),
                        ("platform".to_owned(), "ios".to_owned()),
                    ]),
                })
            };
            let id = match counter.as_deref_mut() {
                Some(c) => v7(now_ms, c),
                None => Uuid::new_v4(),
            };
            pb::Event { event_id: id.to_string(), timestamp_ms: now_ms - (i % 1000) as i64, kind: Some(kind) }
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let total: usize =
        std::env::var("COHORT_BENCH_DRAIN_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(500_000);
    let batch_size: usize =
        std::env::var("COHORT_BENCH_DRAIN_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("temporary spool directory");
    let metrics = Arc::new(Metrics::new(&mut Registry::default()));
    let config = SpoolConfig {
        dir: dir.path().to_owned(),
        max_bytes: 64 << 30,
        segment_bytes: 64 << 20,
        fsync_window: Duration::ZERO,
    };
    let (spool, reader) = spool::open(config, metrics.clone()).expect("spool opens");
    let now_ms = unix_ms(SystemTime::now());
    let environment = Uuid::new_v4();
    let ordered_ids = std::env::var("COHORT_BENCH_DRAIN_IDS").is_ok_and(|v| v == "v7");
    let mut counter = 0u64;
    let experiment = Uuid::new_v4().to_string();
    let filled = Instant::now();
    for _ in 0..total / 100 {
        let record = SpoolRecord {
            environment_id: environment.as_bytes().to_vec(),
            received_at_ms: now_ms,
            events: events(100, now_ms, &experiment, ordered_ids.then_some(&mut counter)),
        };
        spool.append(spool::frame(&record)).await.expect("append");
    }
    let spooled = filled.elapsed();
    let bytes = spool.disk_bytes();

    let mut drainer =
        Drainer::new(db.pool.clone(), reader, metrics, DrainConfig { batch_size, ..DrainConfig::default() });
    // Partitions are created outside the timed part, as the running service does ahead of time.
    let warmup = drainer.prepare().await.expect("read").expect("a first batch");
    drainer.store(&warmup).await.expect("store");
    drainer.commit(warmup.end_position()).await.expect("commit");
    let started = Instant::now();
    let rows = warmup.rows() + drainer.drain_available().await.expect("drain");
    let elapsed = started.elapsed();
    let client = db.pool.get().await.expect("connection");
    let stored: i64 = client
        .query_one("SELECT (SELECT count(*) FROM exposures) + (SELECT count(*) FROM metric_events)", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored as usize, total / 100 * 100, "every spooled event is stored once");
    let timed_rows = rows - warmup.rows();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "drain: {timed_rows} rows in {:.2}s = {:.0} rows/s (batch {batch_size}, {} ids); spooled {total} events ({} MiB) in {:.2}s",
        elapsed.as_secs_f64(),
        timed_rows as f64 / elapsed.as_secs_f64(),
        if ordered_ids { "time-ordered" } else { "random" },
        bytes >> 20,
        spooled.as_secs_f64()
    );
}
