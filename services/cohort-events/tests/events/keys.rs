//! A restart while PostgreSQL is unreachable: keys verified before it are accepted from the
//! record in the spool directory (so the spool absorbs the outage), keys never verified,
//! expired entries and keys revoked meanwhile are not.

use std::path::Path;
use std::time::Duration;

use cohort_db::testing::TestDb;
use tokio::net::TcpListener;
use tonic::Code;
use uuid::Uuid;

use crate::support::{Proxy, Service, exposures, send, stored_ids, wait_until};

/// A PostgreSQL URL at a loopback port nothing listens on.
async fn dead_database_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("postgres://postgres@127.0.0.1:{port}/cohort")
}

/// Starts a service on `url` and `spool`, has `key` verified with one batch, and stops it.
async fn verify_once(url: &str, spool: &Path, key: &str) -> Vec<Uuid> {
    let service = Service::start(url, spool, &[]).await;
    let batch = exposures(5);
    let ids = batch.iter().map(|e| Uuid::parse_str(&e.event_id).unwrap()).collect();
    send(&mut service.client().await, key, batch).await.expect("verified while the database is up");
    service.stop().await;
    ids
}

#[tokio::test]
async fn a_restart_during_a_database_outage_keeps_accepting_known_keys() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let other = db.seed_tenant("other").await;
    let spool = tempfile::tempdir().unwrap();
    let mut sent = verify_once(&db.url, spool.path(), &tenant.sdk_key).await;

    let record = std::fs::read_to_string(spool.path().join("verified-keys.json")).expect("the record");
    assert!(!record.contains(&tenant.sdk_key), "the secret is on disk");
    assert!(record.contains(&tenant.environment_id.to_string()), "{record}");

    let service = Service::start(&dead_database_url().await, spool.path(), &[]).await;
    let mut client = service.client().await;
    for _ in 0..3 {
        let batch = exposures(100);
        sent.extend(batch.iter().map(|e| Uuid::parse_str(&e.event_id).unwrap()));
        let r = send(&mut client, &tenant.sdk_key, batch).await.expect("a known key during the outage");
        assert_eq!(r.accepted, 100);
    }
    // Never verified by this replica: the database must say, and it cannot.
    let unknown = cohort_db::keys::generate(cohort_db::keys::KeyKind::Sdk).secret;
    for key in [unknown.as_str(), other.sdk_key.as_str()] {
        let status = send(&mut client, key, exposures(1)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    service.stop().await;

    // The outage's events were spooled, and drain once the database is back.
    let service = Service::start(&db.url, spool.path(), &[]).await;
    wait_until(Duration::from_secs(30), "the events spooled during the outage", || async {
        let stored = stored_ids(&db.pool, tenant.environment_id).await;
        sent.iter().all(|id| stored.contains_key(id))
    })
    .await;
    service.stop().await;
}

#[tokio::test]
async fn an_expired_record_entry_is_not_used() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let spool = tempfile::tempdir().unwrap();
    verify_once(&db.url, spool.path(), &tenant.sdk_key).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let flags = ["--verified-key-max-age", "1s"];
    let service = Service::start(&dead_database_url().await, spool.path(), &flags).await;
    let status = send(&mut service.client().await, &tenant.sdk_key, exposures(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    service.stop().await;
}

#[tokio::test]
async fn a_key_revoked_during_the_outage_is_refused_once_the_database_answers() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = proxy.url_for(&db.url);
    let spool = tempfile::tempdir().unwrap();
    verify_once(&url, spool.path(), &tenant.sdk_key).await;

    proxy.sever();
    let service = Service::start(&url, spool.path(), &[]).await;
    let mut client = service.client().await;
    send(&mut client, &tenant.sdk_key, exposures(10)).await.expect("accepted from the record");
    db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1",
            &[&cohort_db::keys::hash(&tenant.sdk_key)],
        )
        .await
        .unwrap();
    // Still the outage: the record stands in for the database.
    send(&mut client, &tenant.sdk_key, exposures(10)).await.expect("accepted from the record");

    proxy.restore();
    wait_until(Duration::from_secs(20), "the revoked key to be refused", || {
        let mut client = client.clone();
        let key = tenant.sdk_key.clone();
        async move {
            send(&mut client, &key, exposures(1)).await.is_err_and(|s| s.code() == Code::Unauthenticated)
        }
    })
    .await;
    service.stop().await;

    // Dropped from the record: the next outage does not bring it back.
    proxy.sever();
    let service = Service::start(&url, spool.path(), &[]).await;
    let status = send(&mut service.client().await, &tenant.sdk_key, exposures(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    service.stop().await;
}
