//! The admin HTTP server: Prometheus `/metrics`, liveness `/healthz`, readiness `/readyz`.
//!
//! Readiness is one answer per process, shared with the gRPC health service, so Kubernetes
//! probes and gRPC clients see the same thing. The process is ready while it has started
//! ([`Readiness::set`]`(true)`, turned off again at shutdown) and every named condition holds.
//! A condition is something the service needs to do its job right now, such as its database
//! answering; whatever watches it owns a [`Condition`] handle and sets its bit. A condition
//! starts not holding, so register it before `set(true)`. A service whose readiness follows
//! its database pool takes two lines, with `cohort_db::HealthCheck` pinging the pool:
//!
//! ```text
//! let database = readiness.condition("database");
//! let _database = cohort_db::HealthCheck::spawn(pool.clone(), move |up| database.set(up));
//! ```
//!
//! (the check stops when `_database` is dropped, at the end of the service's `run`).
//! `/readyz` names the conditions that do not hold.
//!
//! ```
//! # async fn demo() {
//! let (reporter, _health_service) = tonic_health::server::health_reporter();
//! let readiness = cohort_runtime::Readiness::new(reporter, &["cohort.example.v1.Example"]);
//! let database = readiness.condition("database");
//! readiness.set(true).await;
//! assert!(!readiness.is_ready(), "started, but the database has not answered yet");
//! database.set(true);
//! assert!(readiness.is_ready());
//! # }
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::Shutdown;
use crate::incoming::Incoming;

/// Whether the service can do its job now; mirrored into gRPC health for `services`.
#[derive(Clone)]
pub struct Readiness {
    shared: Arc<Shared>,
}

struct Shared {
    reporter: HealthReporter,
    services: Box<[&'static str]>,
    bits: Mutex<Bits>,
    /// Held while publishing to gRPC health; the state is read under it, so whichever publish
    /// runs last reports the newest state.
    published: tokio::sync::Mutex<Published>,
}

#[derive(Debug, Default)]
struct Bits {
    started: bool,
    conditions: Vec<(&'static str, bool)>,
}

impl Bits {
    fn ready(&self) -> bool {
        self.started && self.conditions.iter().all(|(_, holds)| *holds)
    }
}

#[derive(Debug, Default)]
struct Published {
    /// What the named services were last reported as.
    ready: Option<bool>,
    /// The empty service name ("", liveness) was reported SERVING.
    alive: bool,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = self.shared.bits();
        f.debug_struct("Readiness")
            .field("ready", &bits.ready())
            .field("started", &bits.started)
            .field("conditions", &bits.conditions)
            .finish()
    }
}

impl Shared {
    fn bits(&self) -> MutexGuard<'_, Bits> {
        self.bits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports the current state to gRPC health. The empty service name ("", what liveness
    /// probes ask) turns SERVING once the process has started and stays so: a process that
    /// is alive but not ready must not be restarted for it.
    async fn publish(&self) {
        let mut published = self.published.lock().await;
        let (ready, started) = {
            let bits = self.bits();
            (bits.ready(), bits.started)
        };
        if started && !published.alive {
            self.reporter.set_service_status("", ServingStatus::Serving).await;
            published.alive = true;
        }
        if published.ready != Some(ready) {
            let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
            for s in self.services.iter() {
                self.reporter.set_service_status(*s, status).await;
            }
            published.ready = Some(ready);
        }
    }
}

impl Readiness {
    /// Starts NOT_SERVING. `services` are the fully qualified gRPC service names to report.
    pub fn new(reporter: HealthReporter, services: &[&'static str]) -> Self {
        Readiness {
            shared: Arc::new(Shared {
                reporter,
                services: services.into(),
                bits: Mutex::new(Bits::default()),
                published: tokio::sync::Mutex::new(Published::default()),
            }),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.shared.bits().ready()
    }

    /// The conditions that do not hold now, in the order they were registered.
    pub fn failing(&self) -> Vec<&'static str> {
        self.shared.bits().conditions.iter().filter(|(_, holds)| !holds).map(|(name, _)| *name).collect()
    }

    /// Marks the process started (`true`, once it serves) or stopping (`false`, at shutdown),
    /// and reports the result to gRPC health before returning.
    pub async fn set(&self, started: bool) {
        self.shared.bits().started = started;
        self.shared.publish().await;
    }

    /// Registers a condition readiness also requires, not holding until its handle says so.
    pub fn condition(&self, name: &'static str) -> Condition {
        let index = {
            let mut bits = self.shared.bits();
            bits.conditions.push((name, false));
            bits.conditions.len() - 1
        };
        Condition { shared: self.shared.clone(), index, name }
    }
}

/// One named condition of a [`Readiness`]; its owner sets whether it holds.
#[derive(Clone)]
pub struct Condition {
    shared: Arc<Shared>,
    index: usize,
    name: &'static str,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition").field("name", &self.name).field("holds", &self.holds()).finish()
    }
}

impl Condition {
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn holds(&self) -> bool {
        self.shared.bits().conditions[self.index].1
    }

    /// Sets whether the condition holds. `/readyz` follows at once; gRPC health is updated in
    /// the background (this is callable from synchronous code, e.g. a callback).
    pub fn set(&self, holds: bool) {
        let changed = {
            let mut bits = self.shared.bits();
            let bit = &mut bits.conditions[self.index].1;
            std::mem::replace(bit, holds) != holds
        };
        if changed && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move { shared.publish().await });
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
    incoming: Incoming,
    registry: Arc<Registry>,
    readiness: Readiness,
    shutdown: Shutdown,
) -> Result<(), String> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(AdminState { registry, readiness });
    let (incoming, failed) = incoming.fail_fast();
    let server = axum::serve(incoming, app).with_graceful_shutdown(async move { shutdown.cancelled().await });
    tokio::select! {
        r = server => r.map_err(|e| e.to_string()),
        e = failed => Err(e),
    }
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
        return (StatusCode::OK, "ready".to_owned());
    }
    let failing = state.readiness.failing();
    let body = if failing.is_empty() {
        "not ready".to_owned()
    } else {
        format!("not ready: {}", failing.join(", "))
    };
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

#[cfg(test)]
mod tests {
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    use super::{Readiness, serve_admin};
    use crate::Shutdown;
    use crate::incoming::Incoming;

    /// A health service on a local port, and a client of it.
    async fn health() -> (tonic_health::server::HealthReporter, HealthClient<tonic::transport::Channel>) {
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
        (reporter, HealthClient::new(channel))
    }

    async fn check(client: &mut HealthClient<tonic::transport::Channel>, name: &str) -> i32 {
        let request = tonic::Request::new(HealthCheckRequest { service: name.into() });
        client.check(request).await.map(|r| r.into_inner().status).unwrap_or(-1)
    }

    /// `GET path` on a local server: status code and body.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn ready_only_while_started_and_every_condition_holds() {
        let (reporter, mut client) = health().await;
        let readiness = Readiness::new(reporter, &["cohort.test.v1.Test"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        let stop = Shutdown::new();
        let incoming = Incoming::start(listener, None).unwrap();
        tokio::spawn(serve_admin(incoming, Default::default(), readiness.clone(), stop.clone()));
        let database = readiness.condition("database");
        let cache = readiness.condition("cache");
        readiness.set(true).await;
        assert!(!readiness.is_ready());
        assert_eq!(get(admin, "/readyz").await, (503, "not ready: database, cache".to_owned()));
        assert_eq!(check(&mut client, "cohort.test.v1.Test").await, ServingStatus::NotServing as i32);
        assert_eq!(check(&mut client, "").await, ServingStatus::Serving as i32, "alive");

        database.set(true);
        assert_eq!(get(admin, "/readyz").await, (503, "not ready: cache".to_owned()));
        cache.set(true);
        assert!(readiness.is_ready() && database.holds() && cache.holds());
        assert_eq!(get(admin, "/readyz").await.0, 200);
        let serving = ServingStatus::Serving as i32;
        let mut waited = 0;
        while check(&mut client, "cohort.test.v1.Test").await != serving {
            waited += 1;
            assert!(waited < 100, "gRPC health follows the conditions");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }

        database.clone().set(false);
        assert_eq!(readiness.failing(), ["database"]);
        assert_eq!(get(admin, "/readyz").await, (503, "not ready: database".to_owned()));
        let mut waited = 0;
        while check(&mut client, "cohort.test.v1.Test").await != ServingStatus::NotServing as i32 {
            waited += 1;
            assert!(waited < 100, "gRPC health follows a condition that stops holding");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        database.set(true);
        readiness.set(false).await;
        assert!(!readiness.is_ready(), "stopping, whatever the conditions");
        assert_eq!(check(&mut client, "cohort.test.v1.Test").await, ServingStatus::NotServing as i32);
        stop.cancel();
    }

    #[tokio::test]
    async fn liveness_does_not_follow_readiness() {
        let (reporter, mut client) = health().await;
        let mut status = async |name: &str| check(&mut client, name).await;
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
