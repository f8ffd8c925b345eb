//! The evaluation service: remote evaluation for clients that cannot embed the SDK. It is
//! built on cohort-sdk, one client per SDK key presented, so it evaluates (and records
//! exposures) exactly as an embedded SDK does.
//!
//! # Layout
//! - [`environments`]: SDK key → SDK client, built on first use, idle ones closed, bounded.
//! - [`discovery`]: static or Consul-discovered config and event service endpoints.
//! - [`evaluate`]: request checks and decisions, without tonic or axum.
//! - [`api`]: the tonic `EvaluationService`. [`http`]: `POST /api/v1/evaluate` (JSON, CORS,
//!   caching on request).
//! - [`layers`]: the gRPC server's tower layers. [`metrics`]: Prometheus metrics.
//! - [`error`]: the service error and its mapping to gRPC and HTTP.
//! - [`settings`] and [`run`]: how the process is configured and started.

pub mod api;
pub mod discovery;
pub mod environments;
pub mod error;
pub mod evaluate;
pub mod http;
pub mod layers;
pub mod metrics;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use cohort_proto::evaluation::v1::evaluation_service_server::EvaluationServiceServer;
pub use cohort_runtime::Listeners;
use cohort_runtime::{Readiness, Shutdown};
use prometheus_client::registry::Registry;
use tracing::{info, warn};

pub use settings::Settings;

use crate::api::Api;
use crate::discovery::Endpoints;
use crate::environments::{ClientOptions, Environments};
use crate::evaluate::{Evaluator, Limits};
use crate::metrics::Metrics;

/// The fully qualified gRPC service name, for health and Consul checks.
pub const SERVICE_NAME: &str = "cohort.evaluation.v1.EvaluationService";

/// Runs the evaluation service until `shutdown` fires, then stops in order: readiness off,
/// Consul deregistration, servers drained, every SDK client closed (queued exposures
/// delivered), all within the grace period.
pub async fn run(settings: Settings, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));

    // Background work (Consul followers, the idle reaper) stops on `tasks`.
    let tasks = Shutdown::new();
    let (config, events) = match settings.consul.client()? {
        Some(consul) => (
            Endpoints::consul(consul.clone(), "cohort-config", tasks.clone()),
            Endpoints::consul(consul, "cohort-events", tasks.clone()),
        ),
        None => (Endpoints::fixed(&settings.config_endpoint), Endpoints::fixed(&settings.events_endpoint)),
    };
    let environments = Environments::new(
        ClientOptions {
            config,
            events,
            init_timeout: settings.init_timeout,
            idle_timeout: settings.idle_timeout,
            max_environments: settings.max_environments,
            exposure_dedup_capacity: settings.exposure_dedup_capacity,
            max_queued_events: settings.max_queued_events,
            event_senders: settings.event_senders,
        },
        metrics.environments.clone(),
    );
    let reaper = tokio::spawn(environments.clone().reap_until(tasks.clone()));
    let evaluator = Evaluator {
        environments: environments.clone(),
        limits: Limits { max_keys: settings.max_keys, max_batch_contexts: settings.max_batch_contexts },
        metrics: (*metrics).clone(),
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = Readiness::new(health_reporter, &[SERVICE_NAME]);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cohort_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let grpc_addr = listeners.grpc.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    let servers_down = Shutdown::new();
    let grpc = {
        let stop = servers_down.clone();
        tonic::transport::Server::builder()
            // Clients keep connections open; keepalives find dead peers behind NATs.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(10_000))
            .layer(layers::grpc_layers(
                metrics.clone(),
                settings.max_concurrent_requests,
                settings.request_timeout,
            ))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(EvaluationServiceServer::new(Api { evaluator: evaluator.clone() }))
            .serve_with_incoming_shutdown(cohort_runtime::grpc_incoming(listeners.grpc), async move {
                stop.cancelled().await
            })
    };
    let http = {
        let stop = servers_down.clone();
        let router = http::router(http::HttpState {
            evaluator,
            cors: Arc::new(http::Cors::new(&settings.cors_origins)),
            max_cache: settings.http_max_cache,
        });
        axum::serve(cohort_runtime::http_incoming(listeners.http), router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
    };
    let admin = listeners.admin.map(|l| {
        tokio::spawn(cohort_runtime::serve_admin(
            l,
            Arc::new(registry),
            readiness.clone(),
            servers_down.clone(),
        ))
    });
    let grpc = tokio::spawn(grpc);
    let http = tokio::spawn(async move { http.await });
    // Ready means holding config, and configs are per environment, loaded on a key's first
    // request (one not loaded yet answers UNAVAILABLE with a retry hint): so no condition but
    // having started. The service never touches PostgreSQL, and a config it holds outlives a
    // database or config-service outage, so neither makes it unready.
    readiness.set(true).await;
    info!(%grpc_addr, %http_addr, "evaluation service ready");
    let registration = settings.consul.spawn_registration("cohort-evaluation", grpc_addr, SERVICE_NAME);

    shutdown.cancelled().await;
    info!("shutting down");
    readiness.set(false).await;
    if let Some(r) = registration {
        r.finish().await;
    }
    let drain = async {
        servers_down.cancel();
        if let Err(e) = grpc.await {
            warn!(error = %e, "grpc server task failed");
        }
        if let Err(e) = http.await {
            warn!(error = %e, "http server task failed");
        }
        if let Some(a) = admin {
            let _ = a.await;
        }
        tasks.cancel();
        let _ = reaper.await;
        // Last: queued exposures reach the event service before the process exits.
        environments.close_all().await;
    };
    if tokio::time::timeout(settings.common.shutdown_grace, drain).await.is_err() {
        warn!(grace = ?settings.common.shutdown_grace, "shutdown grace period ran out");
    }
    Ok(())
}
