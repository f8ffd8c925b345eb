//! PostgreSQL cut off during a load: the service keeps acknowledging into its spool, and when
//! the database returns the backlog drains with nothing lost and nothing duplicated.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::{Cluster, Load, assert_exactly_once, exposures, send, stored_ids, wait_until};

/// How long the database stays unreachable. The issue asks for 30 s: longer than the key
/// cache TTL, so cached keys must outlive their TTL while PostgreSQL is away.
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_only_grows_the_spool() {
    // One PostgreSQL for both services: the outage stops the config service verifying keys.
    let mut cluster = Cluster::behind_postgres_proxy().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let pool = cluster.pool();
    let service = cluster.start_events(&[]).await;
    // The key is verified (and cached) while the database is up.
    let warmup = exposures(1);
    send(&mut service.client().await, &tenant.sdk_key, warmup.clone()).await.unwrap();

    let stop = CancellationToken::new();
    let load = Load {
        addr: service.grpc(),
        key: tenant.sdk_key.clone(),
        tasks: 4,
        batch: 100,
        every: Some(Duration::from_millis(100)),
        stop_on_error: false,
    }
    .spawn(stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.postgres().sever();
    let spool_before = service.metric("cohort_events_spool_bytes").await;
    tokio::time::sleep(OUTAGE).await;
    let spool_during = service.metric("cohort_events_spool_bytes").await;
    let age_during = service.metric("cohort_events_oldest_undrained_event_age_seconds").await;
    cluster.postgres().restore();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let mut report = load.await.unwrap();
    let warmup_id = uuid::Uuid::parse_str(&warmup[0].event_id).unwrap();
    report.acked.push(warmup_id);
    report.sent.push(warmup_id);

    assert!(report.errors.is_empty(), "refusals during the outage: {:?}", report.errors);
    // 4 senders x 10 batches/s x 100 events for ~34 s.
    assert!(report.acked.len() > 100_000, "only {} acknowledged", report.acked.len());
    assert!(spool_during > spool_before + 1_000_000.0, "spool {spool_before} -> {spool_during}");
    assert!(age_during > OUTAGE.as_secs_f64() / 2.0, "oldest undrained age {age_during}");

    let acked = report.acked.clone();
    wait_until(Duration::from_secs(120), "the backlog to drain", || async {
        stored_ids(&pool, tenant.environment_id).await.len() >= acked.len()
    })
    .await;
    assert_exactly_once(&stored_ids(&pool, tenant.environment_id).await, &report.acked, &report.sent);
    wait_until(Duration::from_secs(10), "the age gauge to return to 0", || async {
        service.metric("cohort_events_oldest_undrained_event_age_seconds").await == 0.0
    })
    .await;
    cluster.stop_events().await;
}
