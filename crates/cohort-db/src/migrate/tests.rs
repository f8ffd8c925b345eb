//! Migrations against a real PostgreSQL: idempotent, concurrent-safe, tamper-evident.

use crate::testing::TestDb;
use crate::{MIGRATIONS, migrate};

#[tokio::test]
async fn running_twice_applies_nothing_the_second_time() {
    let db = TestDb::empty().await;
    let first = migrate(&db.pool).await.unwrap();
    assert_eq!(first.len(), MIGRATIONS.len());
    assert!(migrate(&db.pool).await.unwrap().is_empty());
}

#[tokio::test]
async fn two_replicas_migrating_at_once_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let (a, b) = tokio::join!(migrate(&db.pool), migrate(&db.pool));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), MIGRATIONS.len(), "a={a:?} b={b:?}");
    let client = db.pool.get().await.unwrap();
    let n: i64 = client.query_one("SELECT count(*) FROM schema_migrations", &[]).await.unwrap().get(0);
    assert_eq!(n as usize, MIGRATIONS.len());
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.unwrap();
    client.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1", &[]).await.unwrap();
    let err = migrate(&db.pool).await.unwrap_err().to_string();
    assert!(err.starts_with("migration 1 (config) was changed after it was applied"), "{err}");
}

#[tokio::test]
async fn seeded_keys_verify_and_revoked_ones_do_not() {
    use crate::keys::{KeyKind, verify};
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let client = db.pool.get().await.unwrap();
    let sdk = verify(&client, &tenant.sdk_key).await.unwrap().expect("sdk key verifies");
    assert_eq!((sdk.kind, sdk.environment_id), (KeyKind::Sdk, Some(tenant.environment_id)));
    let admin = verify(&client, &tenant.admin_key).await.unwrap().expect("admin key verifies");
    assert_eq!((admin.kind, admin.environment_id), (KeyKind::Admin, None));
    assert_eq!(verify(&client, "cohort_sdk_nope").await.unwrap(), None);
    client.execute("UPDATE api_keys SET revoked_at = now()", &[]).await.unwrap();
    assert_eq!(verify(&client, &tenant.sdk_key).await.unwrap(), None);
}
