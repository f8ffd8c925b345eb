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
