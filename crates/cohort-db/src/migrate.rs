//! Each service's schema, its versioned migrations, and their runner.
//!
//! Every service owns one PostgreSQL schema ([`CONFIG`], [`EVENTS`], [`ANALYSIS`]) with its own
//! ordered list of migrations, applied by that service's `migrate` under a session advisory
//! lock keyed by the schema, so two replicas starting together apply each migration once. Each
//! migration runs in its own transaction with its bookkeeping row in `<schema>.schema_migrations`
//! and with `search_path` set to its schema; an applied migration whose text changed is an error.
//!
//! A database migrated further than the binary knows (a rollback after an upgrade) is refused
//! before anything is applied: [`migrate`] and [`check_version`] (for services that start
//! without migrating) fail with [`DbError::SchemaTooNew`].
//!
//! Each schema's first migration adopts an installation made by the single list that came
//! before (every table in `public`, bookkeeping in `public.schema_migrations` at version 6):
//! it moves its schema's tables out of `public`. `public.schema_migrations` is left in place
//! and read by nothing; an operator may drop it.

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::DbError;

/// A schema change: applied once, in order, never edited after release.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// A service's schema and its migrations, in order.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// A plain lowercase identifier, used unquoted in SQL.
    pub name: &'static str,
    pub migrations: &'static [Migration],
}

/// The config service's system of record: tenants, keys, definitions, the audit log,
/// propagation.
pub const CONFIG: Schema = Schema {
    name: "cohort_config",
    migrations: &[
        Migration { version: 1, name: "config", sql: include_str!("../migrations/config/0001_config.sql") },
        Migration {
            version: 2,
            name: "key_scopes",
            sql: include_str!("../migrations/config/0002_key_scopes.sql"),
        },
        Migration {
            version: 3,
            name: "client_keys_cors",
            sql: include_str!("../migrations/config/0003_client_keys_cors.sql"),
        },
        Migration {
            version: 4,
            name: "holdouts",
            sql: include_str!("../migrations/config/0004_holdouts.sql"),
        },
    ],
};

/// The event service's exposures and metric events (and their daily partitions): the event
/// store's read model, which analysis reads under the contract stated in its first migration.
pub const EVENTS: Schema = Schema {
    name: "cohort_events",
    migrations: &[Migration {
        version: 1,
        name: "events",
        sql: include_str!("../migrations/events/0001_events.sql"),
    }],
};

/// The analysis service's plans, looks, results and derived incremental state.
pub const ANALYSIS: Schema = Schema {
    name: "cohort_analysis",
    migrations: &[
        Migration {
            version: 1,
            name: "analysis",
            sql: include_str!("../migrations/analysis/0001_analysis.sql"),
        },
        Migration {
            version: 2,
            name: "coverage",
            sql: include_str!("../migrations/analysis/0002_coverage.sql"),
        },
        Migration { version: 3, name: "pairs", sql: include_str!("../migrations/analysis/0003_pairs.sql") },
    ],
};

/// Every schema, in the order a whole installation is migrated (`make dev`, tests).
pub const ALL: &[Schema] = &[CONFIG, EVENTS, ANALYSIS];

/// A fixed advisory-lock key per schema (two services migrating at once do not wait for
/// each other).
fn lock_key(schema: &Schema) -> i64 {
    let digest = Sha256::digest(format!("cohort migrate {}", schema.name).as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Applies every pending migration of `schema`; returns the versions applied by this call.
///
/// Creates the schema and its bookkeeping table only when missing, so a role that owns
/// neither (but may read the bookkeeping) can run it once everything is applied.
pub async fn migrate(pool: &Pool, schema: &Schema) -> Result<Vec<i32>, DbError> {
    let mut client = pool.get().await?;
    let key = lock_key(schema);
    client.execute("SELECT pg_advisory_lock($1)", &[&key]).await.map_err(DbError::query("lock"))?;
    let result = apply(&mut client, schema).await;
    // Unlock even on failure; a dropped connection releases the lock too.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&key]).await;
    result
}

impl Schema {
    /// The newest migration this binary knows.
    pub fn newest(&self) -> i32 {
        self.migrations.iter().map(|m| m.version).max().unwrap_or(0)
    }
}

/// Refuses a database whose `schema` has a migration newer than the binary's newest; returns
/// the database's newest (`None` before any migration). Reads only the bookkeeping table.
pub async fn check_version(pool: &Pool, schema: &Schema) -> Result<Option<i32>, DbError> {
    let client = pool.get().await?;
    let table = format!("{}.schema_migrations", schema.name);
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(DbError::query("look up schema_migrations"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let newest: Option<i32> = client
        .query_one(&format!("SELECT max(version) FROM {table}"), &[])
        .await
        .map_err(DbError::query("read schema_migrations"))?
        .get(0);
    refuse_newer(schema, newest)?;
    Ok(newest)
}

/// What a service does with its schema at start: with `apply`, [`migrate`] (an unreachable
/// database is an error, as it always was); without, [`check_version`], where only a schema too
/// new is an error: a database that does not answer yet is logged and left to readiness, since
/// services start while it is down. Returns the versions applied.
pub async fn at_start(pool: &Pool, schema: &Schema, apply: bool) -> Result<Vec<i32>, DbError> {
    if apply {
        return migrate(pool, schema).await;
    }
    match check_version(pool, schema).await {
        Err(e @ DbError::SchemaTooNew { .. }) => Err(e),
        Err(e) => {
            warn!(schema = schema.name, error = %e, "schema version not checked: the database did not answer");
            Ok(Vec::new())
        }
        Ok(_) => Ok(Vec::new()),
    }
}

fn refuse_newer(schema: &Schema, database: Option<i32>) -> Result<(), DbError> {
    match database {
        Some(database) if database > schema.newest() => {
            Err(DbError::SchemaTooNew { schema: schema.name, database, binary: schema.newest() })
        }
        _ => Ok(()),
    }
}

async fn apply(client: &mut deadpool_postgres::Object, schema: &Schema) -> Result<Vec<i32>, DbError> {
    let name = schema.name;
    let table = format!("{name}.schema_migrations");
    let exists = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), to_regclass($2) IS NOT NULL",
            &[&name, &table],
        )
        .await
        .map_err(DbError::query("look up the schema"))?;
    if !exists.get::<_, bool>(0) {
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(DbError::query("create schema"))?;
    }
    if !exists.get::<_, bool>(1) {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (
                    version     integer PRIMARY KEY,
                    name        text NOT NULL,
                    checksum    text NOT NULL,
                    applied_at  timestamptz NOT NULL DEFAULT now()
                )"
            ))
            .await
            .map_err(DbError::query("create schema_migrations"))?;
    }
    let rows = client
        .query(&format!("SELECT version, checksum FROM {table}"), &[])
        .await
        .map_err(DbError::query("read schema_migrations"))?;
    let applied: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    // Before anything is applied: an older binary must not add its migrations under a newer
    // schema.
    refuse_newer(schema, applied.iter().map(|(v, _)| *v).max())?;
    let mut done = Vec::new();
    for m in schema.migrations {
        let sum = checksum(m.sql);
        if let Some((_, found)) = applied.iter().find(|(v, _)| *v == m.version) {
            if *found != sum {
                return Err(DbError::MigrationChanged {
                    schema: name,
                    version: m.version,
                    name: m.name.to_owned(),
                    found: found.clone(),
                    expected: sum,
                });
            }
            continue;
        }
        let tx = client.transaction().await.map_err(DbError::query("begin migration"))?;
        tx.batch_execute(&format!("SET LOCAL search_path TO {name}"))
            .await
            .map_err(DbError::query("set search_path"))?;
        tx.batch_execute(m.sql).await.map_err(DbError::query("apply migration"))?;
        tx.execute(
            &format!("INSERT INTO {table} (version, name, checksum) VALUES ($1, $2, $3)"),
            &[&m.version, &m.name, &sum],
        )
        .await
        .map_err(DbError::query("record migration"))?;
        tx.commit().await.map_err(DbError::query("commit migration"))?;
        info!(schema = name, version = m.version, name = m.name, "applied migration");
        done.push(m.version);
    }
    Ok(done)
}

#[cfg(test)]
mod tests;
