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

    /// Marks every named gRPC service serving or not (readiness). The empty service name
    /// ("", what liveness probes ask) turns SERVING with the first `set(true)` and stays so:
    /// a process that is alive but not ready must not be restarted for it.
    pub async fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
        let status = if ready {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        if ready {
            self.reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
        }
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

#[cfg(test)]
mod tests {
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    use super::Readiness;

    #[tokio::test]
    async fn liveness_does_not_follow_readiness() {
        let (reporter, service) = tonic_health::server::health_reporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        let mut status = async |name: &str| {
            let request = tonic::Request::new(HealthCheckRequest { service: name.into() });
            client.check(request).await.map(|r| r.into_inner().status).unwrap_or(-1)
        };
        let readiness = Readiness::new(reporter, &["cohort.test.v1.Test"]);
        readiness.set(true).await;
        assert_eq!(status("").await, ServingStatus::Serving as i32);
        assert_eq!(status("cohort.test.v1.Test").await, ServingStatus::Serving as i32);
        readiness.set(false).await;
        assert!(!readiness.is_ready());
        assert_eq!(status("").await, ServingStatus::Serving as i32, "alive, just not ready");
        assert_eq!(status("cohort.test.v1.Test").await, ServingStatus::NotServing as i32);
    }
}
