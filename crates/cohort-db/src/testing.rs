//! A fresh PostgreSQL database per test, dropped when the test ends.
//!
//! Uses `COHORT_TEST_DATABASE_URL` (a server URL whose user may create databases), by default
//! the local server as `postgres`.

use std::sync::atomic::{AtomicU32, Ordering};

use deadpool_postgres::Pool;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::keys::{self, KeyKind};
use crate::{PoolOptions, connect, migrate};

/// An organization with one environment, an admin key and an SDK key, made directly in the
/// database for tests of services that only consume keys.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub organization_id: Uuid,
    pub environment_id: Uuid,
    pub admin_key: String,
    pub sdk_key: String,
}

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

impl TestDb {
    /// Creates an organization `name` with environment `production` and one key of each kind.
    pub async fn seed_tenant(&self, name: &str) -> Tenant {
        let client = self.pool.get().await.expect("connection to the test database");
        let (org, env) = (Uuid::new_v4(), Uuid::new_v4());
        client
            .execute("INSERT INTO organizations (id, name) VALUES ($1, $2)", &[&org, &name])
            .await
            .expect("insert organization");
        client
            .execute(
                "INSERT INTO environments (id, organization_id, key, name) VALUES ($1, $2, 'production', 'Production')",
                &[&env, &org],
            )
            .await
            .expect("insert environment");
        let (admin_key, sdk_key) = issue_keys(&client, org, env, name).await;
        Tenant { organization_id: org, environment_id: env, admin_key, sdk_key }
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

/// Issues an admin key for `org` and an SDK key for `env` directly in the database; returns
/// the (admin, sdk) secrets.
pub async fn issue_keys(
    client: &tokio_postgres::Client,
    org: Uuid,
    env: Uuid,
    name: &str,
) -> (String, String) {
    let mut secrets = Vec::new();
    for (kind, env_id) in [(KeyKind::Admin, None), (KeyKind::Sdk, Some(env))] {
        let key = keys::generate(kind);
        client
            .execute(
                "INSERT INTO api_keys (id, organization_id, environment_id, kind, name, prefix, key_hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &Uuid::new_v4(),
                    &org,
                    &env_id,
                    &kind.as_str(),
                    &format!("{name} {}", kind.as_str()),
                    &key.prefix,
                    &key.hash,
                ],
            )
            .await
            .expect("insert api key");
        secrets.push(key.secret);
    }
    let sdk = secrets.pop().unwrap_or_default();
    (secrets.pop().unwrap_or_default(), sdk)
}
