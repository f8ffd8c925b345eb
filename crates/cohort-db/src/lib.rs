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
//! - `testing` (feature): `TestDb`.

pub mod keys;
pub mod migrate;
mod pool;
#[cfg(feature = "testing")]
pub mod testing;

pub use deadpool_postgres::{Object as Client, Pool};
pub use migrate::{Migration, Schema, migrate};
pub use pool::{HealthCheck, HealthOptions, PoolOptions, connect, ping};

/// A database failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database url: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(String),
    #[error("{context}: {source}")]
    Query {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "migration {schema} {version} ({name}) was changed after it was applied: checksum {found}, expected {expected}"
    )]
    MigrationChanged { schema: &'static str, version: i32, name: String, found: String, expected: String },
}

impl DbError {
    /// Attaches what was being done to a query error.
    pub fn query(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
        move |source| DbError::Query { context, source }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::Pool(e.to_string())
    }
}
