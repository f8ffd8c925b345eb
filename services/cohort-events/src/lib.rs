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
//! - `ingest`: the domain shared by both front ends (auth, rate limit, validation, spool).
//! - `validate`: per-event rules with field paths.
//! - `auth`: SDK key verification with a TTL cache and the record of verified keys in the
//!   spool directory; `ratelimit`: per-environment buckets.
//! - `grpc`, `http`: thin front ends; `error`: statuses and HTTP responses in one place.
//! - [`metrics`]: the Prometheus metrics, passed down from one registry.

pub mod drain;
pub mod metrics;
pub mod settings;
pub mod spool;

mod auth;
mod error;
mod grpc;
mod http;
mod ingest;
mod ratelimit;
mod validate;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use cohort_proto::events::v1::event_service_server::EventServiceServer;
pub use cohort_runtime::Listeners;
use cohort_runtime::{Readiness, Shutdown, serve_admin};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tracing::{error, info, warn};

pub use error::EventsError;
pub use settings::Settings;

use crate::auth::{KeyCache, KeyRecord};
use crate::drain::{DrainConfig, Drainer};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::spool::SpoolConfig;

/// The fully qualified gRPC service name, for health.
pub const SERVICE_NAME: &str = "cohort.events.v1.EventService";

/// Runs the service until `shutdown` fires, then stops in order within the grace period:
/// readiness NOT_SERVING → stop accepting and finish in-flight requests → last group fsync
/// and writer stop → drainer stop after its current transaction.
pub async fn run(settings: Settings, listeners: Listeners, shutdown: Shutdown) -> Result<(), EventsError> {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let registry = Arc::new(registry);

    let pool = cohort_db::connect(
        &settings.database.database_url,
        &cohort_db::PoolOptions {
            max_connections: settings.database.database_max_connections as usize,
            application_name: "cohort-events".to_owned(),
            ..cohort_db::PoolOptions::default()
        },
    )?;
    if settings.migrate {
        let applied = cohort_db::migrate(&pool).await?;
        info!(?applied, "migrations applied");
    }

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

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = Readiness::new(health_reporter, &[SERVICE_NAME]);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cohort_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let key_record =
        Arc::new(KeyRecord::load(&settings.spool_dir, settings.verified_key_max_age, ingest::now_ms()));
    let ingest = Arc::new(Ingest::new(
        KeyCache::new(
            pool.clone(),
            settings.key_cache_ttl,
            settings.verified_key_max_age,
            key_record.clone(),
        ),
        RateLimiter::new(settings.rate_limit_per_environment, settings.rate_limit_burst),
        spool.clone(),
        metrics.clone(),
    ));

    // Background tasks stop on their own tokens, in the order shutdown needs.
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

    let admin_stop = CancellationToken::new();
    let admin = listeners.admin.map(|listener| {
        info!(admin_addr = %local(&listener), "admin server listening");
        tokio::spawn(serve_admin(listener, registry.clone(), readiness.clone(), admin_stop.clone()))
    });

    let serve_stop = CancellationToken::new();
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight));
    let grpc_addr = listeners
        .grpc
        .local_addr()
        .map_err(|e| EventsError::Serve { server: "gRPC", message: e.to_string() })?;
    info!(grpc_addr = %local(&listeners.grpc), http_addr = %local(&listeners.http), "serving");
    let grpc = tokio::spawn(serve_grpc(
        settings.clone(),
        listeners.grpc,
        ingest.clone(),
        health_service,
        reflection,
        in_flight.clone(),
        serve_stop.clone(),
    ));
    let http =
        tokio::spawn(serve_http(settings.clone(), listeners.http, ingest, in_flight, serve_stop.clone()));

    readiness.set(true).await;
    info!("ready");
    let registration = settings.consul.spawn_registration("cohort-events", grpc_addr, SERVICE_NAME);

    let mut grpc = grpc;
    let mut http = http;
    let mut grpc_done = None;
    let mut http_done = None;
    tokio::select! {
        _ = shutdown.cancelled() => info!("shutting down"),
        r = &mut grpc => grpc_done = Some(r),
        r = &mut http => http_done = Some(r),
    }

    // 1. Tell load balancers, probes and Consul first.
    readiness.set(false).await;
    if let Some(r) = registration {
        r.finish().await;
    }
    let stopping = async {
        // 2. Stop accepting; in-flight requests finish (their appends included).
        serve_stop.cancel();
        let grpc_result = match grpc_done.take() {
            Some(r) => r,
            None => grpc.await,
        };
        let http_result = match http_done.take() {
            Some(r) => r,
            None => http.await,
        };
        // 3. The writer finishes the group in flight, fsyncs, and stops.
        spool.close().await;
        // 4. The drainer stops after its current transaction; the spool stays consistent
        //    either way, and the next start resumes from the checkpoint. The verified-key
        //    record gets its last write.
        drain_stop.cancel();
        let _ = drainer.await;
        let _ = gauges.await;
        let _ = record_writer.await;
        (grpc_result, http_result)
    };
    let outcome = tokio::time::timeout(settings.common.shutdown_grace, stopping).await;
    admin_stop.cancel();
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    let (grpc_result, http_result) = match outcome {
        Ok(results) => results,
        Err(_) => {
            warn!(grace = ?settings.common.shutdown_grace, "shutdown grace period ran out; the spool is consistent, undrained events wait for the next start");
            return Ok(());
        }
    };
    info!("stopped");
    server_result("gRPC", grpc_result)?;
    server_result("HTTP", http_result)
}

fn local(listener: &TcpListener) -> String {
    listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string())
}

fn server_result(
    server: &'static str,
    joined: Result<Result<(), String>, tokio::task::JoinError>,
) -> Result<(), EventsError> {
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => {
            error!(server, error = %message, "server failed");
            Err(EventsError::Serve { server, message })
        }
        Err(_) => Err(EventsError::Task { task: server }),
    }
}

/// The gRPC server with its layers.
async fn serve_grpc(
    settings: Settings,
    listener: TcpListener,
    ingest: Arc<Ingest>,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    reflection: tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    in_flight: Arc<Semaphore>,
    stop: CancellationToken,
) -> Result<(), String> {
    let max_bytes = settings.max_request_bytes as usize;
    let events = EventServiceServer::new(grpc::EventsGrpc::new(ingest)).max_decoding_message_size(max_bytes);
    let layers = ServiceBuilder::new()
        // Refuse at once (RESOURCE_EXHAUSTED) rather than queue when the limit below is full:
        // a client with a retry policy backs off, and memory stays bounded.
        .load_shed()
        // One in-flight limit for gRPC and HTTP together, so a spike on either front end
        // queues in the spool, not in this process's memory.
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(in_flight));
    tonic::transport::Server::builder()
        // A span per call, so handler logs carry the method.
        .trace_fn(|request| tracing::info_span!("grpc", method = %request.uri().path()))
        // Bounds a call end to end (the spool fsync included); clients retry with the same ids.
        .timeout(settings.request_timeout)
        .layer(layers)
        .add_service(health)
        .add_service(reflection)
        .add_service(events)
        .serve_with_incoming_shutdown(cohort_runtime::grpc_incoming(listener), stop.cancelled_owned())
        .await
        .map_err(|e| e.to_string())
}

/// The HTTP JSON server with its layers.
async fn serve_http(
    settings: Settings,
    listener: TcpListener,
    ingest: Arc<Ingest>,
    in_flight: Arc<Semaphore>,
    stop: CancellationToken,
) -> Result<(), String> {
    let timeout = settings.request_timeout;
    let app = http::router(ingest)
        .layer(
            ServiceBuilder::new()
                // Turns the errors of the layers below into responses (axum needs infallible).
                .layer(HandleErrorLayer::new(|e: tower::BoxError| async move {
                    if e.is::<tower::timeout::error::Elapsed>() {
                        (StatusCode::GATEWAY_TIMEOUT, "request timed out".to_owned())
                    } else {
                        (StatusCode::TOO_MANY_REQUESTS, format!("overloaded: {e}"))
                    }
                }))
                // Refuse at once when the shared in-flight limit is reached, as for gRPC.
                .load_shed()
                // The in-flight limit shared with gRPC.
                .layer(GlobalConcurrencyLimitLayer::with_semaphore(in_flight))
                // Bounds a request end to end (the spool fsync included).
                .timeout(timeout),
        )
        // Refuses larger bodies with 413 before they are buffered.
        .layer(DefaultBodyLimit::max(settings.max_request_bytes as usize));
    axum::serve(cohort_runtime::http_incoming(listener), app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(|e| e.to_string())
}

/// Keeps the age-of-oldest-undrained-event gauge current.
async fn update_gauges(spool: spool::Spool, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let age = spool.oldest_undrained_age(ingest::now_ms());
                metrics.oldest_undrained_seconds.set(age.as_secs_f64());
            }
            _ = stop.cancelled() => return,
        }
    }
}
