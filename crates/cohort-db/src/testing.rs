//! A fresh PostgreSQL database per test, dropped when the test ends.
//!
//! Uses `COHORT_TEST_DATABASE_URL` (a server URL whose user may create databases), by default
//! the local server as `postgres`.

use std::sync::atomic::{AtomicU32, Ordering};

use deadpool_postgres::Pool;
use tokio_postgres::NoTls;

use crate::{PoolOptions, connect, migrate};

/// The server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("COHORT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own for one test.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: Pool,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn new() -> TestDb {
        let db = TestDb::empty().await;
        migrate(&db.pool).await.expect("migrations apply to a fresh database");
        db
    }

    /// A fresh database with no schema at all.
    pub async fn empty() -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cohort_test_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let server = server_url();
        let (client, conn) = tokio_postgres::connect(&server, NoTls)
            .await
            .unwrap_or_else(|e| panic!("tests need PostgreSQL at {server}: {e}"));
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let url = with_database(&server, &name);
        let pool = connect(&url, &PoolOptions::default()).expect("pool for the test database");
        TestDb { name, url, pool }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        let (server, name) = (server_url(), self.name.clone());
        // Drop may run inside or outside a runtime; a thread with its own runtime works in both.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&server, NoTls).await.ok()?;
                tokio::spawn(conn);
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()
            })
        });
        let _ = dropped.join();
    }
}

/// Replaces the database name in a `postgres://` URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}
