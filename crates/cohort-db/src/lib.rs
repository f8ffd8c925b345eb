//! Cohort's PostgreSQL plumbing shared by the services: connection pools, each service's schema
//! with its ordered list of migrations and their runner, API key generation and hashing, and
//! (feature `testing`) a fresh migrated database per test.
//!
//! # Layout
//! - `pool`: a deadpool-postgres pool from a `postgres://` URL with a per-pool
//!   `search_path`, and [`HealthCheck`], which pings it (`SELECT 1`) and drives a readiness
//!   condition.
//! - [`mod@migrate`]: one schema per service ([`migrate::CONFIG`], [`migrate::EVENTS`],
//!   [`migrate::ANALYSIS`]), each with versioned migrations applied under an advisory lock,
//!   safe to run twice and from two replicas at once.
//! - [`keys`]: API key secrets, prefixes and hashes.
//! - [`tls`]: the connection URL read as libpq reads it, `sslmode` and `sslrootcert` included
//!   ([`DatabaseUrl`]), TLS through rustls, and [`connect_dedicated`] for a connection of its
//!   own (LISTEN, session advisory locks). The pool connects through it too.
//! - `testing` (feature): `TestDb`.

pub mod keys;
pub mod migrate;
mod pool;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use deadpool_postgres::{Object as Client, Pool};
pub use migrate::{Migration, Schema, check_version, migrate};
pub use pool::{HealthCheck, HealthOptions, PoolOptions, connect, ping};
pub use tls::{Connection, DatabaseUrl, RootCert, SslMode, connect_dedicated};

/// A database failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database url: {0}")]
    Url(#[source] tokio_postgres::Error),
    /// A connection setting the URL gets wrong (`sslmode`, `sslrootcert`).
    #[error("invalid database url: {0}")]
    UrlSetting(String),
    /// `sslrootcert` names a file that is missing or holds no usable certificate (`path` is
    /// `system` for the platform's store).
    #[error("sslrootcert {path}: {reason}")]
    RootCert { path: String, reason: String },
    /// The TLS handshake failed: `target` is `host:port` (and ` at hostaddr`), `reason` says why
    /// (`certificate is not valid for name "db.internal" (it is for localhost)`).
    #[error("TLS to {target} refused: {reason}")]
    Tls { target: String, reason: String },
    /// A connection of its own ([`connect_dedicated`]) could not be opened; `target` names the
    /// servers tried. The message carries the whole cause (tokio-postgres's own says only
    /// `db error`), so `error` is not also a source.
    #[error("cannot connect to {target}: {}", cohort_core::error::chain(.error))]
    Connect { target: String, error: tokio_postgres::Error },
    #[error("database pool: {0}")]
    Pool(String),
    #[error("{context}: {source}")]
    Query {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "schema {schema}: migration {version} ({name}) in the database differs from this binary's (checksum {found}, expected {expected}): the migration was edited after it was applied, or another build migrated the database"
    )]
    MigrationChanged { schema: &'static str, version: i32, name: String, found: String, expected: String },
    /// The database was migrated by a newer binary (a rollback after an upgrade): this one
    /// does not know the schema it would run against.
    #[error(
        "schema {schema}: the database is at migration {database}, newer than this binary's newest, {binary}; run a binary that knows migration {database} (or restore the database from before the upgrade)"
    )]
    SchemaTooNew { schema: &'static str, database: i32, binary: i32 },
}

impl DbError {
    /// Attaches what was being done to a query error.
    pub fn query(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
        move |source| DbError::Query { context, source }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    /// A refused TLS handshake becomes [`DbError::Tls`]; anything else [`DbError::Pool`], with
    /// the cause of a failed connection spelled out.
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match &e {
            deadpool_postgres::PoolError::Backend(source) => tls::tls_refusal(source).unwrap_or_else(|| {
                DbError::Pool(format!("cannot connect: {}", cohort_core::error::chain(source)))
            }),
            _ => DbError::Pool(e.to_string()),
        }
    }
}
