//! A fresh PostgreSQL database per test, dropped when the test ends, and login roles limited
//! to named schemas, dropped with it.
//!
//! Uses `COHORT_TEST_DATABASE_URL` (a server URL whose user may create databases and roles), by
//! default the local server as `postgres`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use deadpool_postgres::Pool;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::keys::{self, KeyKind};
use crate::pool::search_path_option;
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

/// The search path of a test database's pool and URL: every service's schema, so tests can
/// write config and event tables directly with unqualified names. Events first: a table a test
/// creates unqualified lands in the first schema, and what tests create is event partitions.
pub const SEARCH_PATH: &[&str] = &["cohort_events", "cohort_config", "cohort_analysis"];

/// What a role made by [`TestDb::role`] may do in a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Use the schema and read its tables and sequences, present and later-made (partitions).
    Read,
    /// Everything on the schema (creating in it too), its tables and sequences, present and
    /// later-made.
    All,
}

/// A database of its own for one test.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    /// The database's URL, with [`SEARCH_PATH`] in its `options`: a connection of a test's own
    /// finds every table unqualified, as the pool does. A service given it sets its own.
    pub url: String,
    pub pool: Pool,
    /// Roles made by [`TestDb::role`], dropped after the database.
    roles: Mutex<Vec<String>>,
}

impl TestDb {
    /// A fresh database with every schema's migrations applied.
    pub async fn new() -> TestDb {
        let db = TestDb::empty().await;
        for schema in crate::migrate::ALL {
            migrate(&db.pool, schema).await.expect("migrations apply to a fresh database");
        }
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
        let url = with_search_path(&with_database(&server, &name), SEARCH_PATH);
        let options = PoolOptions {
            search_path: SEARCH_PATH.iter().map(|s| (*s).to_owned()).collect(),
            ..PoolOptions::default()
        };
        let pool = connect(&url, &options).expect("pool for the test database");
        TestDb { name, url, pool, roles: Mutex::new(Vec::new()) }
    }

    /// Creates a login role `<database>_<name>` (`name`: lowercase letters, digits, `_`) that may
    /// connect to this database and do only what `grants` say in the schemas they name (existing
    /// ones: run after the migrations); returns its URL, with [`SEARCH_PATH`] like [`TestDb::url`]
    /// (schemas it may not use are skipped by the server). Tables and partitions the test
    /// database's owner creates later carry the same grants. The role is dropped with the
    /// database.
    pub async fn role(&self, name: &str, grants: &[(&str, Privilege)]) -> String {
        assert!(
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "role name {name:?}: lowercase letters, digits and _ only"
        );
        let role = format!("{}_{name}", self.name);
        let password = hex::encode(rand::random::<[u8; 16]>());
        let mut sql = format!("CREATE ROLE {role} LOGIN PASSWORD '{password}';");
        for &(schema, privilege) in grants {
            let (on_schema, on_objects) = match privilege {
                Privilege::Read => ("USAGE", "SELECT"),
                Privilege::All => ("ALL", "ALL"),
            };
            sql.push_str(&format!(
                "GRANT {on_schema} ON SCHEMA {schema} TO {role};
                 GRANT {on_objects} ON ALL TABLES IN SCHEMA {schema} TO {role};
                 GRANT {on_objects} ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
                 ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {on_objects} ON TABLES TO {role};
                 ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {on_objects} ON SEQUENCES TO {role};"
            ));
        }
        self.roles.lock().unwrap_or_else(|e| e.into_inner()).push(role.clone());
        let client = self.pool.get().await.expect("connection to the test database");
        client.batch_execute(&format!("BEGIN; {sql} COMMIT;")).await.expect("create the role");
        with_user(&self.url, &role, &password)
    }
}

impl TestDb {
    /// Records a migration one past this binary's newest in `schema`, as a newer binary that
    /// migrated and was rolled back leaves it; returns that version.
    pub async fn migrated_past(&self, schema: &crate::migrate::Schema) -> i32 {
        let version = schema.newest() + 1;
        let sql = format!(
            "INSERT INTO {}.schema_migrations (version, name, checksum) VALUES ($1, 'future', 'x')",
            schema.name
        );
        self.pool.get().await.expect("a connection").execute(&sql, &[&version]).await.expect("recorded");
        version
    }

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

    /// A client-side key (browsers) for the tenant's environment.
    pub async fn client_key(&self, tenant: &Tenant) -> String {
        let client = self.pool.get().await.expect("connection to the test database");
        issue_key(&client, tenant.organization_id, Some(tenant.environment_id), KeyKind::Client, "web").await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        let (server, name) = (server_url(), self.name.clone());
        let roles = std::mem::take(self.roles.get_mut().unwrap_or_else(|e| e.into_inner()));
        // Drop may run inside or outside a runtime; a thread with its own runtime works in both.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&server, NoTls).await.ok()?;
                tokio::spawn(conn);
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()?;
                // Roles are the cluster's; their grants and default privileges went with the
                // database.
                for role in roles {
                    client.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).await.ok()?;
                }
                Some(())
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

/// Sets the user (and password) of a `postgres://` URL.
pub fn with_user(url: &str, user: &str, password: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = rest[..authority_end].rsplit_once('@').map_or(&rest[..authority_end], |(_, h)| h);
    format!("{}{user}:{password}@{host}{}", &url[..authority_start], &rest[authority_end..])
}

/// Adds `options=-c search_path=...` to a `postgres://` URL (after any query it has).
pub fn with_search_path(url: &str, schemas: &[&str]) -> String {
    let schemas: Vec<String> = schemas.iter().map(|s| (*s).to_owned()).collect();
    let option = search_path_option(&schemas).expect("plain schema names");
    let encoded = option.replace(' ', "%20").replace('=', "%3D").replace(',', "%2C");
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options={encoded}")
}

/// Issues an admin key for `org` and an SDK key for `env` directly in the database; returns
/// the (admin, sdk) secrets.
pub async fn issue_keys(
    client: &tokio_postgres::Client,
    org: Uuid,
    env: Uuid,
    name: &str,
) -> (String, String) {
    let admin = issue_key(client, org, None, KeyKind::Admin, name).await;
    let sdk = issue_key(client, org, Some(env), KeyKind::Sdk, name).await;
    (admin, sdk)
}

/// Issues one key of `kind` directly in the database (`env` for SDK and client keys); returns
/// its secret.
pub async fn issue_key(
    client: &tokio_postgres::Client,
    org: Uuid,
    env: Option<Uuid>,
    kind: KeyKind,
    name: &str,
) -> String {
    let key = keys::generate(kind);
    client
        .execute(
            "INSERT INTO api_keys (id, organization_id, environment_id, kind, name, prefix, key_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &Uuid::new_v4(),
                &org,
                &env,
                &kind.as_str(),
                &format!("{name} {}", kind.as_str()),
                &key.prefix,
                &key.hash,
            ],
        )
        .await
        .expect("insert api key");
    key.secret
}

#[cfg(test)]
mod tests;
