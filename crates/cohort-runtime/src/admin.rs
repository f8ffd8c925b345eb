//! The admin HTTP server: Prometheus `/metrics`, liveness `/healthz`, readiness `/readyz`.
//!
//! Readiness is one flag per process, shared with the gRPC health service, so Kubernetes
//! probes and gRPC clients see the same answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tonic_health::server::HealthReporter;

use crate::Shutdown;

/// Whether the service can do its job now; mirrored into gRPC health for `services`.
#[derive(Clone)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    reporter: HealthReporter,
    services: Arc<[&'static str]>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").field("ready", &self.is_ready()).finish()
    }
}

impl Readiness {
    /// Starts NOT_SERVING. `services` are the fully qualified gRPC service names to report.
    pub fn new(reporter: HealthReporter, services: &[&'static str]) -> Self {
        Readiness { ready: Arc::new(AtomicBool::new(false)), reporter, services: services.into() }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the process (and every named gRPC service) serving or not.
    pub async fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
        let status = if ready {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for s in self.services.iter() {
            self.reporter.set_service_status(*s, status).await;
        }
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// Serves the admin endpoints until `shutdown` fires.
pub async fn serve_admin(
    listener: TcpListener,
    registry: Arc<Registry>,
    readiness: Readiness,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(AdminState { registry, readiness });
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn ready(State(state): State<AdminState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
