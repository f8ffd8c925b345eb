//! Roles limited to named schemas, against a real server: what they may read and write, and
//! that they go with the test database.

use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::{Privilege, TestDb, server_url, with_search_path, with_user};
use crate::migrate::ANALYSIS;
use crate::{PoolOptions, connect, migrate};

#[tokio::test]
async fn a_role_uses_only_the_schemas_it_was_granted() {
    let db = TestDb::new().await;
    db.seed_tenant("acme").await;
    let owner = db.pool.get().await.unwrap();
    let partition = |day: u32| {
        format!(
            "CREATE TABLE exposures_p202601{day:02} PARTITION OF exposures
             FOR VALUES FROM ('2026-01-{day:02} 00:00:00+00') TO ('2026-01-{:02} 00:00:00+00');
             INSERT INTO exposures (environment_id, event_id, experiment_id, unit, variant, config_version, ts, received_at)
             VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'u', 'a', 1, '2026-01-{day:02} 10:00+00', now());",
            day + 1
        )
    };
    owner.batch_execute(&partition(1)).await.unwrap();
    let url =
        db.role("analysis", &[("cohort_analysis", Privilege::All), ("cohort_events", Privilege::Read)]).await;
    // Made after the role, as the drainer makes each day's partition.
    owner.batch_execute(&partition(2)).await.unwrap();

    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.expect("the role logs in");
    tokio::spawn(conn);
    let user: String = client.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
    assert_eq!(user, format!("{}_analysis", db.name));
    let n: i64 = client.query_one("SELECT count(*) FROM exposures", &[]).await.unwrap().get(0);
    assert_eq!(n, 2, "reads the events, unqualified");
    let n: i64 =
        client.query_one("SELECT count(*) FROM cohort_events.exposures_p20260102", &[]).await.unwrap().get(0);
    assert_eq!(n, 1, "a partition made later is readable too");
    client
        .execute("UPDATE analysis_watermark SET advanced = now()", &[])
        .await
        .expect("writes its own schema");

    let denied = |e: tokio_postgres::Error| e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE);
    let err = client.query("SELECT * FROM cohort_config.api_keys", &[]).await.unwrap_err();
    assert!(denied(err), "config's keys are out of reach");
    let err = client.query("SELECT * FROM api_keys", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE), "config is not on its path: {err}");
    let err = client.execute("DELETE FROM exposures", &[]).await.unwrap_err();
    assert!(denied(err), "the events are read-only to it");

    // Its service's migrate, once applied, needs no more than the role has.
    let pool = connect(&url, &PoolOptions::default()).unwrap();
    assert!(migrate(&pool, &ANALYSIS).await.unwrap().is_empty());
    pool.close();
    drop(client);

    let role = format!("{}_analysis", db.name);
    drop(db);
    let (admin, conn) = tokio_postgres::connect(&server_url(), NoTls).await.unwrap();
    tokio::spawn(conn);
    let left: i64 =
        admin.query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&role]).await.unwrap().get(0);
    assert_eq!(left, 0, "the role is dropped with the database");
}

#[test]
fn urls_get_a_user_and_a_search_path() {
    assert_eq!(
        with_user("postgres://postgres@127.0.0.1:5432/db?x=1", "r", "p"),
        "postgres://r:p@127.0.0.1:5432/db?x=1"
    );
    assert_eq!(with_user("postgres://a:b@h/db", "r", "p"), "postgres://r:p@h/db");
    assert_eq!(with_user("postgres://h", "r", "p"), "postgres://r:p@h");
    assert_eq!(
        with_search_path("postgres://h/db", &["s1", "s2"]),
        "postgres://h/db?options=-c%20search_path%3Ds1%2Cs2"
    );
    assert_eq!(
        with_search_path("postgres://h/db?x=1", &["s"]),
        "postgres://h/db?x=1&options=-c%20search_path%3Ds"
    );
}
