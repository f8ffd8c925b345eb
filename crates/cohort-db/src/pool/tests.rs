//! The health check against a real server: a database that does not exist does not answer,
//! and the check reports it once it does.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::NoTls;

use crate::testing::{TestDb, server_url, with_database};
use crate::{HealthCheck, HealthOptions, PoolOptions, connect, ping};

#[tokio::test]
async fn a_database_answers_only_while_it_exists() {
    let db = TestDb::new().await;
    ping(&db.pool, Duration::from_secs(1)).await.expect("an existing database answers");

    let name = format!("{}_later", db.name);
    let pool = connect(&with_database(&db.url, &name), &PoolOptions::default()).unwrap();
    assert!(ping(&pool, Duration::from_secs(1)).await.is_err(), "no such database yet");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let options = HealthOptions { every: Duration::from_millis(50), timeout: Duration::from_secs(1) };
    let check = HealthCheck::spawn_with(pool, options, move |up| {
        let _ = tx.send(up);
    });
    assert_eq!(rx.recv().await, Some(false));

    let (admin, conn) = tokio_postgres::connect(&server_url(), NoTls).await.unwrap();
    tokio::spawn(conn);
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let up = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(up) = rx.recv().await {
            if up {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(up, Ok(true), "reported up once the database exists");
    drop(check);
    admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), async { while rx.recv().await.is_some() {} }).await,
        Ok(()),
        "a dropped check stops reporting"
    );
}

#[tokio::test]
async fn each_pool_searches_its_own_schemas_first() {
    let db = TestDb::new().await;
    let show = |pool: crate::Pool, setting: &'static str| async move {
        let client = pool.get().await.unwrap();
        client.query_one(&format!("SHOW {setting}"), &[]).await.unwrap().get::<_, String>(0)
    };
    let events = PoolOptions {
        search_path: vec!["cohort_events".into(), "cohort_config".into()],
        ..PoolOptions::default()
    };
    // Other options of the URL are kept; the pool's search path wins over the URL's.
    let url = format!("{}&options=-c%20statement_timeout%3D4321", db.url);
    let pool = connect(&url, &events).unwrap();
    assert_eq!(show(pool.clone(), "search_path").await, "cohort_events,cohort_config");
    assert_eq!(show(pool.clone(), "statement_timeout").await, "4321ms");
    let client = pool.get().await.unwrap();
    client.query_one("SELECT count(*) FROM exposures", &[]).await.expect("an events table, unqualified");
    let err = client.query_one("SELECT count(*) FROM analysis_sums", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE), "{err}");

    assert_eq!(show(db.pool.clone(), "search_path").await, "cohort_events,cohort_config,cohort_analysis");
    let plain = connect(&with_database(&server_url(), &db.name), &PoolOptions::default()).unwrap();
    assert!(!show(plain, "search_path").await.contains("cohort"), "no path: the server's default");

    let bad =
        PoolOptions { search_path: vec!["cohort_events -c work_mem=1".into()], ..PoolOptions::default() };
    assert!(connect(&db.url, &bad).is_err(), "a search path entry cannot smuggle in options");
}
