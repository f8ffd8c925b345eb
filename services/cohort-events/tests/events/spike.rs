//! A 10x spike: acknowledgements stay fast (the spool absorbs the burst), nothing is refused,
//! and the drain catches up.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::{Cluster, Load, assert_exactly_once, stored_ids, wait_until};

/// Generous on purpose: debug build, 2 shared cores, other tests running. Ack latency is
/// measured properly by `cohort-bench events` on a release build.
const P99_BOUND: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_times_spike_is_absorbed_and_drained() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let pool = cluster.pool();
    let service = cluster.start_events(&[]).await;
    let base = |tasks| Load {
        addr: service.grpc(),
        key: tenant.sdk_key.clone(),
        tasks,
        batch: 100,
        every: Some(Duration::from_millis(100)),
        stop_on_error: false,
    };
    // Baseline: 1 sender x 10 batches/s x 100 = 1,000 events/s for the whole run.
    let baseline_stop = CancellationToken::new();
    let baseline = base(1).spawn(baseline_stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Spike: 9 more senders, 10,000 events/s in total, for 4 s.
    let spike_stop = CancellationToken::new();
    let spike = base(9).spawn(spike_stop.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    spike_stop.cancel();
    let spike = spike.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    baseline_stop.cancel();
    let mut report = baseline.await.unwrap();

    assert!(
        spike.errors.is_empty() && report.errors.is_empty(),
        "refused: {:?} {:?}",
        spike.errors,
        report.errors
    );
    let latency = spike.latency_us.as_ref().unwrap();
    let p99 = Duration::from_micros(latency.value_at_quantile(0.99));
    assert!(p99 <= P99_BOUND, "p99 ack latency during the spike {p99:?}");
    assert!(spike.acked.len() >= 9 * 100 * 20, "spike acknowledged only {}", spike.acked.len());

    report.acked.extend(spike.acked);
    report.sent.extend(spike.sent);
    let acked = report.acked.clone();
    wait_until(Duration::from_secs(60), "the drain to catch up", || async {
        stored_ids(&pool, tenant.environment_id).await.len() >= acked.len()
    })
    .await;
    assert_exactly_once(&stored_ids(&pool, tenant.environment_id).await, &report.acked, &report.sent);
    cluster.stop_events().await;
}
