//! Event retention against a real PostgreSQL and config service: day partitions past the
//! retention are dropped whole, newer ones kept; days a running experiment reads are kept and
//! reported; nothing is dropped when retention is off, when the config service cannot answer,
//! or by a replica while another holds the lock. Old partitions are made directly in SQL; the
//! cycle is called directly with its `now`.

use std::sync::Arc;
use std::time::Duration;

use cohort_core::time::civil_from_days;
use cohort_dev::testing::authed;
use cohort_events::metrics::Metrics;
use cohort_events::retention::{LOCK_KEY, Report, Retention, RetentionError};
use cohort_proto::config::v1 as cpb;
use cohort_proto::config::v1::batch_operation::Operation;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Cluster, now_ms, wait_until};

const DAY_MS: i64 = 86_400_000;
const RETENTION: Duration = Duration::from_secs(10 * 86_400);

/// Today, in days since the epoch (UTC).
fn today() -> i64 {
    now_ms().div_euclid(DAY_MS)
}

fn name(table: &str, day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{table}_p{y:04}{m:02}{d:02}")
}

/// Both tables' partitions of `today() + offset`, each with one row of `environment`.
async fn old_day(cluster: &Cluster, offset: i64, environment: Uuid) {
    let day = today() + offset;
    let client = cluster.pool().get().await.unwrap();
    for table in ["exposures", "metric_events"] {
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF {table}
                 FOR VALUES FROM (to_timestamp({})) TO (to_timestamp({}))",
                name(table, day),
                day * 86_400,
                (day + 1) * 86_400,
            ))
            .await
            .unwrap();
    }
    let noon = (day * DAY_MS + DAY_MS / 2) as f64 / 1000.0;
    client
        .execute(
            "INSERT INTO metric_events (environment_id, event_id, unit, event, value, ts, received_at)
             VALUES ($1, gen_random_uuid(), 'u1', 'checkout', 1, to_timestamp($2), now())",
            &[&environment, &noon],
        )
        .await
        .unwrap();
    exposure_at(cluster, environment, Uuid::new_v4(), day * DAY_MS + DAY_MS / 2).await;
}

async fn exposure_at(cluster: &Cluster, environment: Uuid, experiment: Uuid, ts_ms: i64) {
    cluster
        .pool()
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO exposures (environment_id, event_id, experiment_id, unit, variant, config_version, ts, received_at)
             VALUES ($1, gen_random_uuid(), $2, 'u1', 'control', 1, to_timestamp($3), now())",
            &[&environment, &experiment, &(ts_ms as f64 / 1000.0)],
        )
        .await
        .unwrap();
}

/// Whether both tables' partitions of `today() + offset` exist (and not only one).
async fn exists(cluster: &Cluster, offset: i64) -> bool {
    let day = today() + offset;
    let client = cluster.pool().get().await.unwrap();
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL",
            &[
                &format!("cohort_events.{}", name("exposures", day)),
                &format!("cohort_events.{}", name("metric_events", day)),
            ],
        )
        .await
        .unwrap();
    let (e, m): (bool, bool) = (row.get(0), row.get(1));
    assert_eq!(e, m, "day {offset}: one table's partition without the other's");
    e
}

fn retention(cluster: &Cluster, keep: Duration) -> (Retention, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new(&mut prometheus_client::registry::Registry::default()));
    let r = Retention::new(
        cluster.pool(),
        &cluster.config_endpoint(),
        &cluster.service_key(),
        &Default::default(),
        metrics.clone(),
        keep,
    )
    .unwrap();
    (r, metrics)
}

/// `pYYYYMMDD` of `today() + offset`.
fn suffix(offset: i64) -> String {
    name("", today() + offset)[1..].to_owned()
}

/// The `pYYYYMMDD` of each day dropped, oldest first.
fn dropped_days(report: &Report) -> Vec<String> {
    let mut days: Vec<String> =
        report.dropped.iter().map(|p| p.rsplit('_').next().unwrap().to_owned()).collect();
    days.dedup();
    days
}

fn day_label(offset: i64) -> String {
    let (y, m, d) = civil_from_days(today() + offset);
    format!("{y:04}-{m:02}-{d:02}")
}

#[tokio::test]
async fn whole_days_past_the_retention_are_dropped_and_newer_ones_kept() {
    let cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    for offset in [-20, -12, -10, -3] {
        old_day(&cluster, offset, tenant.environment_id).await;
    }
    let (retention, metrics) = retention(&cluster, RETENTION);
    let report = retention.run_once(now_ms()).await.unwrap();

    // Day -10 ends less than 10 days ago: part of it is within the retention.
    assert_eq!(report.dropped.len(), 4, "{report:?}");
    assert_eq!(dropped_days(&report), [suffix(-20), suffix(-12)]);
    assert!(report.held.is_empty() && !report.skipped);
    assert!(!exists(&cluster, -20).await && !exists(&cluster, -12).await);
    assert!(exists(&cluster, -10).await && exists(&cluster, -3).await);
    let rows = crate::support::count(&cluster.pool(), "metric_events", tenant.environment_id).await;
    assert_eq!(rows, 2, "the kept days' rows are still there");
    assert_eq!(metrics.retention_dropped.get(), 4);
    assert_eq!(metrics.retention_held.get(), 0);

    // Nothing more to do on the next cycle.
    assert_eq!(retention.run_once(now_ms()).await.unwrap(), Report::default());
}

/// Writes `operations` as one batch in the tenant's environment; each entity's definition.
async fn apply(
    cluster: &Cluster,
    tenant: &cohort_db::testing::Tenant,
    operations: Vec<Operation>,
) -> Vec<Value> {
    let mut config = ConfigServiceClient::connect(cluster.config_endpoint()).await.unwrap();
    let request = cpb::ApplyBatchRequest {
        environment: tenant.environment_id.to_string(),
        operations: operations.into_iter().map(|o| cpb::BatchOperation { operation: Some(o) }).collect(),
    };
    let response = config.apply_batch(authed(&tenant.admin_key, request)).await.unwrap().into_inner();
    response
        .results
        .into_iter()
        .map(|r| cohort_proto::convert::structured::to_json(r.entity.unwrap().definition.as_ref()).unwrap())
        .collect()
}

fn create(kind: cpb::EntityKind, definition: Value) -> Operation {
    Operation::Create(cpb::CreateOperation {
        kind: kind as i32,
        definition: cohort_proto::convert::structured::json_struct(&definition),
        reason: String::new(),
    })
}

#[tokio::test]
async fn days_a_running_experiment_reads_are_kept_and_reported() {
    let cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    // A CUPED pre-period of two days before the experiment's first exposure.
    let written = apply(
        &cluster,
        &tenant,
        vec![
            create(
                cpb::EntityKind::Metric,
                json!({"key": "checkouts", "event": "checkout", "aggregation": "count",
                       "cuped": {"pre_period_seconds": 2 * 86_400}}),
            ),
            create(
                cpb::EntityKind::Experiment,
                json!({"key": "new-checkout", "primary_metrics": ["checkouts"],
                       "variants": [{"key": "control", "weight_bp": 5000}, {"key": "treatment", "weight_bp": 5000}]}),
            ),
            Operation::Transition(cpb::TransitionOperation {
                key: "new-checkout".to_owned(),
                action: cpb::ExperimentAction::Start as i32,
                expected_revision: 1,
                reason: String::new(),
            }),
        ],
    )
    .await;
    let experiment = Uuid::parse_str(written[1]["id"].as_str().unwrap()).unwrap();
    for offset in [-20, -15, -14, -13, -12] {
        old_day(&cluster, offset, tenant.environment_id).await;
    }
    // First exposed at noon on day -12: it reads from noon on day -14 on.
    exposure_at(&cluster, tenant.environment_id, experiment, (today() - 12) * DAY_MS + DAY_MS / 2).await;
    // The same experiment id in another environment holds nothing back.
    let other = cluster.db().seed_tenant("globex").await;
    exposure_at(&cluster, other.environment_id, experiment, (today() - 20) * DAY_MS + DAY_MS / 2).await;

    let (retention, metrics) = retention(&cluster, RETENTION);
    let report = retention.run_once(now_ms()).await.unwrap();

    assert_eq!(dropped_days(&report), [suffix(-20), suffix(-15)], "{report:?}");
    assert!(!exists(&cluster, -20).await && !exists(&cluster, -15).await);
    let held: Vec<(&str, &[String])> =
        report.held.iter().map(|h| (h.day.as_str(), h.experiments.as_slice())).collect();
    let expected: Vec<String> = [-14, -13, -12].iter().map(|&o| day_label(o)).collect();
    assert_eq!(held.iter().map(|h| h.0.to_owned()).collect::<Vec<_>>(), expected, "{report:?}");
    assert!(held.iter().all(|h| h.1 == ["new-checkout".to_owned()]), "{held:?}");
    assert!(report.held.iter().all(|h| h.partitions.len() == 2));
    for offset in [-14, -13, -12] {
        assert!(exists(&cluster, offset).await, "day {offset} is kept");
    }
    assert_eq!(metrics.retention_held.get(), 6);
    assert_eq!(metrics.retention_dropped.get(), 4);

    // The first exposure is remembered, not looked up again every cycle (that lookup reads
    // all of a long-running experiment's old days): with its row gone the days are still held.
    cluster
        .pool()
        .get()
        .await
        .unwrap()
        .execute("DELETE FROM cohort_events.exposures WHERE experiment_id = $1", &[&experiment])
        .await
        .unwrap();
    let report = retention.run_once(now_ms()).await.unwrap();
    assert!(report.dropped.is_empty(), "{report:?}");
    assert_eq!(report.held.len(), 3, "{report:?}");

    // Completed, the experiment holds nothing back any more.
    apply(
        &cluster,
        &tenant,
        vec![Operation::Transition(cpb::TransitionOperation {
            key: "new-checkout".to_owned(),
            action: cpb::ExperimentAction::Complete as i32,
            expected_revision: 2,
            reason: String::new(),
        })],
    )
    .await;
    let report = retention.run_once(now_ms()).await.unwrap();
    assert_eq!(dropped_days(&report), [suffix(-14), suffix(-13), suffix(-12)], "{report:?}");
    assert!(report.held.is_empty());
    assert_eq!(metrics.retention_held.get(), 0);
}

#[tokio::test]
async fn nothing_is_dropped_when_retention_is_off_or_another_replica_drops() {
    let cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    old_day(&cluster, -100, tenant.environment_id).await;

    let (off, _) = retention(&cluster, Duration::ZERO);
    assert_eq!(off.run_once(now_ms()).await.unwrap(), Report::default());
    assert!(exists(&cluster, -100).await);

    // Another replica's cycle holds the lock: this one skips its turn.
    let other = cluster.pool().get().await.unwrap();
    other.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY]).await.unwrap();
    let (on, _) = retention(&cluster, RETENTION);
    let report = on.run_once(now_ms()).await.unwrap();
    assert!(report.skipped && report.dropped.is_empty(), "{report:?}");
    assert!(exists(&cluster, -100).await);
    other.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await.unwrap();
    assert_eq!(on.run_once(now_ms()).await.unwrap().dropped.len(), 2);
    assert!(!exists(&cluster, -100).await);
}

#[tokio::test]
async fn nothing_is_dropped_while_the_config_service_cannot_answer() {
    let cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    old_day(&cluster, -30, tenant.environment_id).await;
    let (retention, metrics) = retention(&cluster, RETENTION);

    cluster.sever_config();
    let error = retention.run_once(now_ms()).await.unwrap_err();
    assert!(matches!(error, RetentionError::Config(_)), "{error}");
    assert!(exists(&cluster, -30).await);
    assert_eq!(metrics.retention_failures.get(), 1);

    cluster.restore_config();
    assert_eq!(retention.run_once(now_ms()).await.unwrap().dropped.len(), 2);
    assert!(!exists(&cluster, -30).await);
}

#[tokio::test]
async fn the_service_drops_expired_days_at_start_and_counts_them() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    old_day(&cluster, -40, tenant.environment_id).await;
    old_day(&cluster, -2, tenant.environment_id).await;
    let events = cluster.start_events(&[("--retention", "10d")]).await;
    wait_until(Duration::from_secs(20), "the expired day dropped", || async {
        events.metric("cohort_events_retention_dropped_partitions_total").await == 2.0
    })
    .await;
    assert!(!exists(&cluster, -40).await);
    assert!(exists(&cluster, -2).await);
    assert_eq!(events.metric("cohort_events_retention_held_partitions ").await, 0.0);
}
