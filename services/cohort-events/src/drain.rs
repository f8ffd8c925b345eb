//! The drainer: moves spooled events into PostgreSQL in bulk, then advances the spool's
//! checkpoint.
//!
//! One batch is one transaction: binary `COPY` into per-session staging tables, then
//! `INSERT ... SELECT ... ON CONFLICT DO NOTHING` into the partitioned tables, deduplicating on
//! (environment, event id, timestamp). Only after the commit is the spool position persisted,
//! so a crash in between re-drains the batch and the duplicates are skipped. While PostgreSQL
//! is unreachable the same batch is retried with jittered exponential backoff and the spool grows.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cohort_backoff::{Backoff, BackoffPolicy};
use cohort_core::time::{civil_from_days, day_of, unix_ms};
use cohort_proto::events::v1 as pb;
use deadpool_postgres::Pool;
use futures::SinkExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::metrics::{Metrics, TableLabels};
use crate::spool::{Position, SpoolError, SpoolReader};

mod copy;

/// How the drainer batches and retries.
#[derive(Debug, Clone)]
pub struct DrainConfig {
    /// Most events per transaction.
    pub batch_size: usize,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Longest one transaction may take before it is abandoned and retried.
    pub transaction_timeout: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            batch_size: 20_000,
            max_backoff: Duration::from_secs(5),
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a drain step failed.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("database: {0}")]
    Database(String),
    #[error("drain transaction took longer than {0:?}")]
    Timeout(Duration),
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("spool reader task failed")]
    Task,
}

impl From<tokio_postgres::Error> for DrainError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The source chain carries the server's message and SQLSTATE.
        let mut text = e.to_string();
        if let Some(db) = e.as_db_error() {
            text = format!("{text}: {} ({})", db.message(), db.code().code());
        }
        DrainError::Database(text)
    }
}

impl From<deadpool_postgres::PoolError> for DrainError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DrainError::Database(e.to_string())
    }
}

/// One batch, encoded for `COPY ... (FORMAT binary)`.
#[derive(Debug)]
pub struct Prepared {
    exposures: Bytes,
    exposure_rows: u64,
    metrics: Bytes,
    metric_rows: u64,
    /// UTC days (since the epoch) the batch has events on.
    days: BTreeSet<i64>,
    /// Spool position after the batch.
    end: Position,
    /// Events skipped because they could not be encoded (a bug; logged and counted).
    skipped: u64,
}

impl Prepared {
    pub fn rows(&self) -> u64 {
        self.exposure_rows + self.metric_rows
    }

    /// The spool position to commit once this batch is stored.
    pub fn end_position(&self) -> Position {
        self.end
    }
}

/// What one stored batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub exposures: u64,
    pub metric_events: u64,
    pub duplicates: u64,
}

/// Moves spooled events to PostgreSQL.
#[derive(Debug)]
pub struct Drainer {
    pool: Pool,
    reader: Option<SpoolReader>,
    metrics: Arc<Metrics>,
    config: DrainConfig,
    /// Days whose partitions are known to exist.
    partitions: HashSet<i64>,
}

const STAGING: &str = "SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS staging_exposures (
    environment_id uuid, event_id uuid, experiment_id uuid, unit text, variant text,
    config_version bigint, attributes jsonb, ts timestamptz, received_at timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS staging_metric_events (
    environment_id uuid, event_id uuid, unit text, event text, value double precision,
    properties jsonb, ts timestamptz, received_at timestamptz
) ON COMMIT DELETE ROWS;";

const COPY_EXPOSURES: &str = "COPY staging_exposures (environment_id, event_id, experiment_id, unit, variant, \
     config_version, attributes, ts, received_at) FROM STDIN (FORMAT binary)";
const COPY_METRICS: &str = "COPY staging_metric_events (environment_id, event_id, unit, event, value, \
     properties, ts, received_at) FROM STDIN (FORMAT binary)";
/// `{table}`, `{from}` and `{to}` are filled in by [`insert_for_day`].
const INSERT_EXPOSURES: &str = "INSERT INTO {table} (environment_id, event_id, experiment_id, unit, variant, \
     config_version, attributes, ts, received_at)
     SELECT environment_id, event_id, experiment_id, unit, variant, config_version, attributes, ts, received_at
     FROM staging_exposures WHERE ts >= '{from}' AND ts < '{to}' ON CONFLICT DO NOTHING";
const INSERT_METRICS: &str = "INSERT INTO {table} (environment_id, event_id, unit, event, value, \
     properties, ts, received_at)
     SELECT environment_id, event_id, unit, event, value, properties, ts, received_at
     FROM staging_metric_events WHERE ts >= '{from}' AND ts < '{to}' ON CONFLICT DO NOTHING";

/// Serialises partition creation between replicas, and with retention's drops (an arbitrary
/// fixed key).
pub(crate) const PARTITION_LOCK_KEY: i64 = 0x636f_686f_7274_7074;
/// Days around today whose partitions are created ahead of time.
const DAYS_BEHIND: i64 = 1;
const DAYS_AHEAD: i64 = 2;
/// Chunk size for streaming COPY data.
const COPY_CHUNK: usize = 1 << 20;

impl Drainer {
    pub fn new(pool: Pool, reader: SpoolReader, metrics: Arc<Metrics>, config: DrainConfig) -> Self {
        Drainer { pool, reader: Some(reader), metrics, config, partitions: HashSet::new() }
    }

    /// Drains until `stop` fires: waits for records, stores them, commits the position. A batch
    /// in progress when `stop` fires is finished (the caller bounds that with its grace period).
    pub async fn run(mut self, stop: CancellationToken) {
        let mut last_ahead = None;
        loop {
            if stop.is_cancelled() {
                break;
            }
            if last_ahead.is_none_or(|t: Instant| t.elapsed() > Duration::from_secs(3600)) {
                let today = day_of(unix_ms(SystemTime::now()));
                let days: BTreeSet<i64> = (today - DAYS_BEHIND..=today + DAYS_AHEAD).collect();
                match self.ensure_partitions(&days).await {
                    Ok(()) => last_ahead = Some(Instant::now()),
                    Err(e) => debug!(error = %e, "cannot create partitions ahead of time yet"),
                }
            }
            let prepared = match self.prepare().await {
                Ok(Some(p)) => p,
                Ok(None) => {
                    let Some(reader) = self.reader.as_mut() else { break };
                    tokio::select! {
                        more = reader.wait_for_more() => {
                            if !more {
                                // The writer stopped (shutdown): nothing more will come.
                                stop.cancelled().await;
                                break;
                            }
                        }
                        _ = stop.cancelled() => break,
                        // Wake up now and then for the partitions ahead of time.
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                    continue;
                }
                Err(e) => {
                    error!(error = %e, "cannot read the spool; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.max_backoff) => continue,
                        _ = stop.cancelled() => break,
                    }
                }
            };
            if !self.store_with_retry(&prepared, &stop).await {
                break;
            }
            if let Err(e) = self.commit(prepared.end).await {
                // The rows are stored; without the checkpoint they are re-drained (and skipped
                // as duplicates) after a restart.
                error!(error = %e, "cannot persist the drain checkpoint");
            }
        }
        info!("drainer stopped");
    }

    /// Stores one batch, retrying with backoff until it succeeds (`true`) or `stop` fires.
    async fn store_with_retry(&mut self, prepared: &Prepared, stop: &CancellationToken) -> bool {
        let policy = BackoffPolicy { initial: Duration::from_millis(100), max: self.config.max_backoff };
        let mut backoff = Backoff::new(policy);
        loop {
            match self.store(prepared).await {
                Ok(stored) => {
                    debug!(
                        exposures = stored.exposures,
                        metric_events = stored.metric_events,
                        duplicates = stored.duplicates,
                        "drained a batch"
                    );
                    return true;
                }
                Err(e) => {
                    self.metrics.drain_errors.inc();
                    let delay = backoff.next_delay();
                    warn!(error = %e, rows = prepared.rows(), retry_in = ?delay, "drain failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.cancelled() => return false,
                    }
                }
            }
        }
    }

    /// Drains everything durable now; returns the rows stored. For tools and benchmarks.
    pub async fn drain_available(&mut self) -> Result<u64, DrainError> {
        let mut rows = 0;
        while let Some(prepared) = self.prepare().await? {
            rows += prepared.rows();
            self.store(&prepared).await?;
            self.commit(prepared.end).await?;
        }
        Ok(rows)
    }

    /// Reads and encodes the next batch; `None` when there is nothing new.
    pub async fn prepare(&mut self) -> Result<Option<Prepared>, DrainError> {
        let mut reader = self.reader.take().ok_or(DrainError::Task)?;
        let max = self.config.batch_size;
        let (reader, result) = tokio::task::spawn_blocking(move || {
            let start = reader.position();
            let result = reader.read(max).map(|batch| {
                let moved = batch.end != start;
                (moved || !batch.records.is_empty()).then(|| copy::encode(&batch.records, batch.end))
            });
            (reader, result)
        })
        .await
        .map_err(|_| DrainError::Task)?;
        self.reader = Some(reader);
        let prepared = result?;
        if let Some(p) = &prepared
            && p.skipped > 0
        {
            self.metrics.spool_corrupt_bytes.inc_by(p.skipped);
        }
        Ok(prepared)
    }

    /// Persists the spool position after a stored batch and deletes drained segments.
    pub async fn commit(&mut self, end: Position) -> Result<(), DrainError> {
        let mut reader = self.reader.take().ok_or(DrainError::Task)?;
        let (reader, result) = tokio::task::spawn_blocking(move || {
            let r = reader.commit(end);
            (reader, r)
        })
        .await
        .map_err(|_| DrainError::Task)?;
        self.reader = Some(reader);
        Ok(result?)
    }

    /// Writes one batch in one transaction. Idempotent: rows already stored are skipped.
    pub async fn store(&mut self, prepared: &Prepared) -> Result<Stored, DrainError> {
        if prepared.rows() == 0 {
            return Ok(Stored::default());
        }
        let started = Instant::now();
        self.ensure_partitions(&prepared.days).await?;
        let mut client = self.pool.get().await?;
        let timeout = self.config.transaction_timeout;
        let result = match tokio::time::timeout(timeout, store_on(&mut client, prepared)).await {
            Ok(r) => r,
            Err(_) => Err(DrainError::Timeout(timeout)),
        };
        match result {
            Ok(stored) => {
                self.metrics.drain_seconds.observe(started.elapsed().as_secs_f64());
                self.metrics
                    .drained_rows
                    .get_or_create(&TableLabels { table: "exposures" })
                    .inc_by(stored.exposures);
                self.metrics
                    .drained_rows
                    .get_or_create(&TableLabels { table: "metric_events" })
                    .inc_by(stored.metric_events);
                self.metrics.duplicates_skipped.inc_by(stored.duplicates);
                Ok(stored)
            }
            Err(e) => {
                // The connection may be broken or mid-transaction: never hand it back.
                drop(deadpool_postgres::Object::take(client));
                // A partition may have been dropped meanwhile: check them again on retry.
                self.partitions.clear();
                Err(e)
            }
        }
    }

    /// Creates the daily partitions of both tables for `days` that are not known to exist.
    async fn ensure_partitions(&mut self, days: &BTreeSet<i64>) -> Result<(), DrainError> {
        let missing: Vec<i64> = days.iter().copied().filter(|d| !self.partitions.contains(d)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await?;
        let mut sql = format!(
            "BEGIN; SET LOCAL client_min_messages = warning; SELECT pg_advisory_xact_lock({PARTITION_LOCK_KEY});"
        );
        for &day in &missing {
            let (from, to) = (day_start(day), day_start(day + 1));
            for table in ["exposures", "metric_events"] {
                let partition = partition_name(table, day);
                sql.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS {partition} PARTITION OF {table} FOR VALUES FROM ('{from}') TO ('{to}');"
                ));
            }
        }
        sql.push_str("COMMIT;");
        if let Err(e) = client.batch_execute(&sql).await {
            drop(deadpool_postgres::Object::take(client));
            return Err(e.into());
        }
        self.partitions.extend(missing);
        Ok(())
    }
}

async fn store_on(client: &mut deadpool_postgres::Object, prepared: &Prepared) -> Result<Stored, DrainError> {
    let tx = client.transaction().await?;
    tx.batch_execute(STAGING).await?;
    let mut stored = Stored::default();
    // Straight into each day's partition: PostgreSQL's per-row tuple routing through the
    // parent costs about as much as the insert itself. The key is the same either way.
    if prepared.exposure_rows > 0 {
        copy_in(&tx, COPY_EXPOSURES, &prepared.exposures).await?;
        for &day in &prepared.days {
            stored.exposures += tx.execute(&insert_for_day(INSERT_EXPOSURES, "exposures", day), &[]).await?;
        }
    }
    if prepared.metric_rows > 0 {
        copy_in(&tx, COPY_METRICS, &prepared.metrics).await?;
        for &day in &prepared.days {
            stored.metric_events +=
                tx.execute(&insert_for_day(INSERT_METRICS, "metric_events", day), &[]).await?;
        }
    }
    tx.commit().await?;
    stored.duplicates = prepared.rows() - stored.exposures - stored.metric_events;
    Ok(stored)
}

/// The daily partition of `table` holding `day` (days since the epoch, UTC).
fn partition_name(table: &str, day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{table}_p{y:04}{m:02}{d:02}")
}

/// Midnight UTC starting `day`, as a timestamptz literal.
fn day_start(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02} 00:00:00+00")
}

/// An insert statement from staging into one day's partition.
fn insert_for_day(template: &str, table: &str, day: i64) -> String {
    template
        .replace("{table}", &partition_name(table, day))
        .replace("{from}", &day_start(day))
        .replace("{to}", &day_start(day + 1))
}

async fn copy_in(
    tx: &deadpool_postgres::Transaction<'_>,
    statement: &str,
    data: &Bytes,
) -> Result<(), DrainError> {
    let sink = tx.copy_in::<_, Bytes>(statement).await?;
    futures::pin_mut!(sink);
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + COPY_CHUNK).min(data.len());
        sink.feed(data.slice(offset..end)).await?;
        offset = end;
    }
    sink.finish().await?;
    Ok(())
}

/// Parses the ids of a validated event; `None` only if validation let a bad one through.
fn ids(event: &pb::Event, experiment: Option<&str>) -> Option<(Uuid, Option<Uuid>)> {
    let id = Uuid::try_parse(&event.event_id).ok()?;
    match experiment {
        Some(x) => Some((id, Some(Uuid::try_parse(x).ok()?))),
        None => Some((id, None)),
    }
}

#[cfg(test)]
mod tests;
