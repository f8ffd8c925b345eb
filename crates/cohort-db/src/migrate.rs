//! The schema's versioned migrations and their runner.
//!
//! One ordered list for the whole database, applied under a session advisory lock so two
//! replicas starting together apply each migration once. Each migration runs in its own
//! transaction with its bookkeeping row; an applied migration whose text changed is an error.

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::DbError;

/// A schema change: applied once, in order, never edited after release.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "config", sql: include_str!("../migrations/0001_config.sql") },
    Migration { version: 2, name: "events", sql: include_str!("../migrations/0002_events.sql") },
    Migration { version: 3, name: "analysis", sql: include_str!("../migrations/0003_analysis.sql") },
    Migration {
        version: 4,
        name: "analysis_incremental",
        sql: include_str!("../migrations/0004_analysis_incremental.sql"),
    },
    Migration {
        version: 5,
        name: "analysis_scoped",
        sql: include_str!("../migrations/0005_analysis_scoped.sql"),
    },
    Migration {
        version: 6,
        name: "config_batch",
        sql: include_str!("../migrations/0006_config_batch.sql"),
    },
];

/// An arbitrary, fixed advisory-lock key for migrations.
const LOCK_KEY: i64 = 0x636f_686f_7274_6d67;

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Applies every pending migration; returns the versions applied by this call.
pub async fn migrate(pool: &Pool) -> Result<Vec<i32>, DbError> {
    let mut client = pool.get().await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY]).await.map_err(DbError::query("lock"))?;
    let result = apply(&mut client).await;
    // Unlock even on failure; a dropped connection releases the lock too.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await;
    result
}

async fn apply(client: &mut deadpool_postgres::Object) -> Result<Vec<i32>, DbError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer PRIMARY KEY,
                name        text NOT NULL,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(DbError::query("create schema_migrations"))?;
    let rows = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await
        .map_err(DbError::query("read schema_migrations"))?;
    let applied: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut done = Vec::new();
    for m in MIGRATIONS {
        let sum = checksum(m.sql);
        if let Some((_, found)) = applied.iter().find(|(v, _)| *v == m.version) {
            if *found != sum {
                return Err(DbError::MigrationChanged {
                    version: m.version,
                    name: m.name.to_owned(),
                    found: found.clone(),
                    expected: sum,
                });
            }
            continue;
        }
        let tx = client.transaction().await.map_err(DbError::query("begin migration"))?;
        tx.batch_execute(m.sql).await.map_err(DbError::query("apply migration"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &sum],
        )
        .await
        .map_err(DbError::query("record migration"))?;
        tx.commit().await.map_err(DbError::query("commit migration"))?;
        info!(version = m.version, name = m.name, "applied migration");
        done.push(m.version);
    }
    Ok(done)
}

#[cfg(test)]
mod tests;
