//! A restart while the config service cannot answer: keys verified before it are accepted from
//! the record in the spool directory (so the spool absorbs the outage), keys never verified,
//! expired entries and keys revoked meanwhile are not. And keys are verified only by the
//! config service: the events service runs with a role that cannot read config's tables.

use std::time::Duration;

use cohort_db::keys::{KeyKind, generate};
use cohort_db::testing::Privilege;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tonic::Code;
use uuid::Uuid;

use crate::support::{Cluster, exposures, metric, send, stored_ids, wait_until};

/// Starts the event service, has `key` verified with one batch, and stops it.
async fn verify_once(cluster: &mut Cluster, key: &str) -> Vec<Uuid> {
    let service = cluster.start_events(&[]).await;
    let batch = exposures(5);
    let ids = batch.iter().map(|e| Uuid::parse_str(&e.event_id).unwrap()).collect();
    send(&mut service.client().await, key, batch).await.expect("verified while the config service is up");
    cluster.stop_events().await;
    ids
}

#[tokio::test]
async fn a_restart_during_a_config_outage_keeps_accepting_known_keys() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let other = cluster.db().seed_tenant("other").await;
    let pool = cluster.pool();
    let mut sent = verify_once(&mut cluster, &tenant.sdk_key).await;

    let record = std::fs::read_to_string(cluster.spool_dir().join("verified-keys.json")).expect("the record");
    assert!(!record.contains(&tenant.sdk_key), "the secret is on disk");
    assert!(record.contains(&tenant.environment_id.to_string()), "{record}");

    cluster.sever_config();
    let service = cluster.start_events(&[]).await;
    let mut client = service.client().await;
    for _ in 0..3 {
        let batch = exposures(100);
        sent.extend(batch.iter().map(|e| Uuid::parse_str(&e.event_id).unwrap()));
        let r = send(&mut client, &tenant.sdk_key, batch).await.expect("a known key during the outage");
        assert_eq!(r.accepted, 100);
    }
    // Never verified by this replica: the config service must say, and it cannot.
    let unknown = generate(KeyKind::Sdk).secret;
    for key in [unknown.as_str(), other.sdk_key.as_str()] {
        let status = send(&mut client, key, exposures(1)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    cluster.stop_events().await;

    // The outage's events were spooled, and are stored (the drain never needed the config
    // service).
    cluster.restore_config();
    cluster.start_events(&[]).await;
    wait_until(Duration::from_secs(30), "the events spooled during the outage", || async {
        let stored = stored_ids(&pool, tenant.environment_id).await;
        sent.iter().all(|id| stored.contains_key(id))
    })
    .await;
    cluster.stop_events().await;
}

#[tokio::test]
async fn an_expired_record_entry_is_not_used() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    verify_once(&mut cluster, &tenant.sdk_key).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    cluster.sever_config();
    let service = cluster.start_events(&[("--verified-key-max-age", "1s")]).await;
    let status = send(&mut service.client().await, &tenant.sdk_key, exposures(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    cluster.stop_events().await;
}

#[tokio::test]
async fn a_key_revoked_during_the_outage_is_refused_once_the_config_service_answers() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    verify_once(&mut cluster, &tenant.sdk_key).await;

    cluster.sever_config();
    let service = cluster.start_events(&[]).await;
    let mut client = service.client().await;
    send(&mut client, &tenant.sdk_key, exposures(10)).await.expect("accepted from the record");
    cluster
        .db()
        .pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1",
            &[&cohort_db::keys::hash(&tenant.sdk_key)],
        )
        .await
        .unwrap();
    // Still the outage: the record stands in for the config service.
    send(&mut client, &tenant.sdk_key, exposures(10)).await.expect("accepted from the record");

    cluster.restore_config();
    wait_until(Duration::from_secs(20), "the revoked key to be refused", || {
        let mut client = client.clone();
        let key = tenant.sdk_key.clone();
        async move {
            send(&mut client, &key, exposures(1)).await.is_err_and(|s| s.code() == Code::Unauthenticated)
        }
    })
    .await;
    cluster.stop_events().await;

    // Dropped from the record: the next outage does not bring it back.
    cluster.sever_config();
    let service = cluster.start_events(&[]).await;
    let status = send(&mut service.client().await, &tenant.sdk_key, exposures(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    cluster.stop_events().await;
}

#[tokio::test]
async fn a_config_service_refusing_this_service_is_no_outage() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    verify_once(&mut cluster, &tenant.sdk_key).await;

    // A service key the config service does not know: it answers PERMISSION_DENIED, which
    // says nothing about the SDK key, so the record neither vouches for it nor forgets it.
    let unknown_key = generate(KeyKind::Service).secret;
    let service = cluster.start_events(&[("--service-key", &unknown_key)]).await;
    let status = send(&mut service.client().await, &tenant.sdk_key, exposures(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    cluster.stop_events().await;
    let record = std::fs::read_to_string(cluster.spool_dir().join("verified-keys.json")).expect("the record");
    assert!(record.contains(&tenant.environment_id.to_string()), "{record}");

    // The stack's own key again.
    let service = cluster.start_events(&[]).await;
    send(&mut service.client().await, &tenant.sdk_key, exposures(1)).await.expect("verified again");
    cluster.stop_events().await;
}

#[tokio::test]
async fn keys_are_verified_by_the_config_service_never_through_its_tables() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let pool = cluster.pool();
    // A role of the events schema only (the test user is a superuser: revoking from PUBLIC
    // would prove nothing).
    let url = cluster.db().role("events", &[("cohort_events", Privilege::All)]).await;
    let role = user_of(&url);
    // The drainer creates the tables' daily partitions, which only their owner may do.
    pool.get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "ALTER TABLE cohort_events.exposures OWNER TO {role};
             ALTER TABLE cohort_events.metric_events OWNER TO {role};"
        ))
        .await
        .expect("the role owns the event tables");
    // The role really cannot read config's tables.
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect as the role");
    let connection = tokio::spawn(connection);
    for table in ["api_keys", "environments", "organizations"] {
        let error = client.query(&format!("SELECT 1 FROM cohort_config.{table}"), &[]).await.unwrap_err();
        assert_eq!(error.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{table}: {error}");
    }
    drop(client);
    let _ = connection.await;

    // The config service on the database as before; the event service as the role.
    let service = cluster.start_events(&[("--database-url", &url)]).await;
    let mut client = service.client().await;
    let mut batch = exposures(10);
    batch.push(metric(Uuid::new_v4(), "u", Some(2.0)));
    let ids: Vec<Uuid> = batch.iter().map(|e| Uuid::parse_str(&e.event_id).unwrap()).collect();
    let r =
        send(&mut client, &tenant.sdk_key, batch).await.expect("a valid key, verified by the config service");
    assert_eq!((r.accepted, r.rejected.len()), (11, 0));
    let status = send(&mut client, &tenant.admin_key, exposures(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let unknown = generate(KeyKind::Sdk).secret;
    let status = send(&mut client, &unknown, exposures(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // The drain, as that role, stores them.
    wait_until(Duration::from_secs(30), "the events in PostgreSQL", || async {
        let stored = stored_ids(&pool, tenant.environment_id).await;
        ids.iter().all(|id| stored.get(id) == Some(&1))
    })
    .await;
    cluster.stop_events().await;
}

/// The user of a `postgres://user:password@host/...` URL.
fn user_of(url: &str) -> String {
    let authority = url.split_once("://").expect("a URL").1;
    let userinfo = authority.split_once('@').expect("a user").0;
    userinfo.split(':').next().unwrap_or(userinfo).to_owned()
}
