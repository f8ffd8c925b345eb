//! SIGKILL in the middle of a load: after a restart, every acknowledged event is in
//! PostgreSQL exactly once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::{Cluster, Load, Process, assert_exactly_once, stored_ids, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_loses_no_acknowledged_event() {
    // The real binary, verifying keys with the cluster's config service.
    let cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let mut process = Process::spawn(&cluster).await;

    let stop = CancellationToken::new();
    let load = Load {
        addr: process.grpc,
        key: tenant.sdk_key.clone(),
        tasks: 8,
        batch: 50,
        every: None,
        stop_on_error: true,
    }
    .spawn(stop.clone());
    // Kill once a fair amount is acknowledged (and, with 8 senders, appends are in flight).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    process.child.start_kill().expect("SIGKILL");
    let _ = process.child.wait().await;
    stop.cancel();
    let report = load.await.unwrap();
    assert!(report.acked.len() >= 1000, "only {} events acknowledged before the kill", report.acked.len());

    let process = Process::spawn(&cluster).await;
    let acked = report.acked.clone();
    wait_until(Duration::from_secs(60), "every acknowledged event after the restart", || async {
        let stored = stored_ids(&cluster.db().pool, tenant.environment_id).await;
        acked.iter().all(|id| stored.contains_key(id))
    })
    .await;
    assert_exactly_once(
        &stored_ids(&cluster.db().pool, tenant.environment_id).await,
        &report.acked,
        &report.sent,
    );
    drop(process);
}
