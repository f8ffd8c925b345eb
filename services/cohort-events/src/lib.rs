//! The event service: accepts exposure and metric events over gRPC and HTTP JSON, validates
//! them, appends them to a durable local spool (group-committed with fdatasync) before
//! acknowledging, and drains the spool to PostgreSQL in bulk with `COPY`, deduplicated by
//! event id. A spike or a database outage only grows the spool; a full spool answers
//! RESOURCE_EXHAUSTED with a retry hint.
//!
//! # Layout
//! - [`settings`]: flags and `COHORT_*` variables, validated before binding.
//! - [`spool`]: segments, checksummed records, group commit, crash recovery, the checkpoint.
//! - [`drain`]: spool → PostgreSQL (binary COPY, staging tables, daily partitions).
//! - [`retention`]: drops day partitions past `--retention`, keeping the days running
//!   experiments read.
//! - `ingest`: the domain shared by both front ends (auth, rate limit, validation, spool).
//! - `validate`: per-event rules with field paths.
//! - `auth`: SDK key verification with a TTL cache and the record of verified keys in the
//!   spool directory; `config`: the config service's `VerifyKey`, the only way keys are
//!   verified (config's tables are never read); `ratelimit`: per-environment buckets.
//! - `grpc`, `http`: thin front ends; `error`: the request errors, answered as
//!   `cohort_runtime::ApiError` (its one mapping to gRPC statuses and HTTP responses), and
//!   the start-up errors.
//! - [`metrics`]: the Prometheus metrics, passed down from one registry.

pub mod drain;
pub mod metrics;
pub mod retention;
pub mod settings;
pub mod spool;

mod auth;
mod config;
mod error;
mod grpc;
mod http;
mod ingest;
mod ratelimit;
mod validate;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::DefaultBodyLimit;
use cohort_core::time::unix_ms;
use cohort_proto::events::v1::event_service_server::EventServiceServer;
pub use cohort_runtime::Listeners;
use cohort_runtime::{GrpcRoutes, Limits, Shutdown, Skeleton};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use error::EventsError;
pub use settings::Settings;

use crate::auth::{KeyCache, KeyRecord};
use crate::config::ConfigClient;
use crate::drain::{DrainConfig, Drainer};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::retention::Retention;
use crate::spool::SpoolConfig;

/// The fully qualified gRPC service name, for health.
pub const SERVICE_NAME: &str = "cohort.events.v1.EventService";

/// Runs the service until `shutdown` fires, then stops in order within the grace period:
/// readiness NOT_SERVING → stop accepting and finish in-flight requests → last group fsync
/// and writer stop → drainer stop after its current transaction.
pub async fn run(settings: Settings, listeners: Listeners, shutdown: Shutdown) -> Result<(), EventsError> {
    // One limit on requests in flight, gRPC and HTTP together, so a spike on either front end
    // queues in the spool, not in this process's memory.
    let limits = Limits {
        max_concurrent_requests: settings.max_in_flight,
        request_timeout: settings.request_timeout,
        per_key_rate: settings.key_rate_limit,
        per_key_burst: settings.key_rate_burst,
    };
    let mut skeleton = Skeleton::new("cohort-events", &[SERVICE_NAME], limits).tls(&settings.common.tls)?;
    let metrics = Arc::new(Metrics::new(skeleton.registry()));
    let readiness = skeleton.readiness();

    let pool = cohort_db::connect(
        &settings.database.database_url,
        &cohort_db::PoolOptions {
            max_connections: settings.database.database_max_connections as usize,
            application_name: "cohort-events".to_owned(),
            // Its own tables only: keys are verified by the config service's API.
            search_path: vec!["cohort_events".to_owned()],
            ..cohort_db::PoolOptions::default()
        },
    )?;
    // Refuses a schema newer than this binary knows, migrating or not.
    let applied = cohort_db::migrate::at_start(&pool, &cohort_db::migrate::EVENTS, settings.migrate).await?;
    if settings.migrate {
        info!(?applied, "migrations applied");
    }
    cohort_runtime::metrics::register_pool(skeleton.registry(), pool.clone());

    let spool_config = SpoolConfig {
        dir: settings.spool_dir.clone(),
        max_bytes: settings.spool_max_bytes,
        segment_bytes: settings.spool_segment_bytes,
        fsync_window: settings.fsync_window,
    };
    let spool_metrics = metrics.clone();
    let (spool, reader) = tokio::task::spawn_blocking(move || spool::open(spool_config, spool_metrics))
        .await
        .map_err(|_| EventsError::Task { task: "spool recovery" })??;

    let key_record = Arc::new(KeyRecord::load(
        &settings.spool_dir,
        settings.verified_key_max_age,
        unix_ms(SystemTime::now()),
    ));
    let config =
        ConfigClient::new(&settings.config_endpoint, &settings.service_key, &settings.common.tls.client())
            .map_err(EventsError::Config)?;
    let retention = Retention::with_client(pool.clone(), config.clone(), metrics.clone(), settings.retention);
    let ingest = Arc::new(Ingest::new(
        KeyCache::new(config, settings.key_cache_ttl, settings.verified_key_max_age, key_record.clone()),
        RateLimiter::new(settings.rate_limit_per_environment, settings.rate_limit_burst),
        spool.clone(),
        metrics.clone(),
    ));

    // Background tasks stop on their own token, after the servers.
    let drain_stop = CancellationToken::new();
    let drainer = Drainer::new(
        pool.clone(),
        reader,
        metrics.clone(),
        DrainConfig {
            batch_size: settings.drain_batch_size,
            max_backoff: settings.drain_max_backoff,
            ..DrainConfig::default()
        },
    );
    let drainer = tokio::spawn(drainer.run(drain_stop.clone()));
    let gauges = tokio::spawn(update_gauges(spool.clone(), metrics.clone(), drain_stop.clone()));
    let record_writer = tokio::spawn(key_record.run_writer(drain_stop.clone()));
    let retention = tokio::spawn(retention.run(settings.retention_interval, drain_stop.clone()));

    let grpc_addr = listeners
        .grpc
        .local_addr()
        .map_err(|e| EventsError::Server { server: "gRPC", message: e.to_string() })?;
    info!(grpc_addr = %local(&listeners.grpc), http_addr = %local(&listeners.http), "serving");
    let max_bytes = settings.max_request_bytes as usize;
    let routes = GrpcRoutes::new(
        EventServiceServer::new(grpc::EventsGrpc::new(ingest.clone())).max_decoding_message_size(max_bytes),
    );
    // Refuses larger bodies with 413 before they are buffered.
    let http = http::router(ingest).layer(DefaultBodyLimit::max(max_bytes));
    let running = skeleton.serve(listeners, routes, http, cohort_proto::FILE_DESCRIPTOR_SET, |s| s)?;
    readiness.set(true).await;
    info!("ready");
    let registration = settings.consul.spawn_registration(
        "cohort-events",
        grpc_addr,
        SERVICE_NAME,
        settings.common.tls.tls_cert.is_some(),
    );

    // Servers stop accepting and finish in-flight requests (their appends included); then
    // the writer finishes the group in flight, fsyncs and stops; the drainer stops after its
    // current transaction (the next start resumes from the checkpoint); the verified-key
    // record gets its last write.
    let after = async {
        spool.close().await;
        drain_stop.cancel();
        let _ = drainer.await;
        let _ = gauges.await;
        let _ = record_writer.await;
        let _ = retention.await;
    };
    running
        .serve_until(&shutdown, settings.common.shutdown_grace, registration.finish(), after)
        .await
        .map_err(|e| EventsError::Server { server: e.server, message: e.reason })
}

fn local(listener: &TcpListener) -> String {
    listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string())
}

/// Keeps the age-of-oldest-undrained-event gauge current.
async fn update_gauges(spool: spool::Spool, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let age = spool.oldest_undrained_age(unix_ms(SystemTime::now()));
                metrics.oldest_undrained_seconds.set(age.as_secs_f64());
            }
            _ = stop.cancelled() => return,
        }
    }
}
