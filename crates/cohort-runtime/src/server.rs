//! The one service skeleton: every service serves its gRPC services and HTTP routes through
//! [`Skeleton`], which adds gRPC health and reflection, puts the same tower stack on every
//! RPC and route, runs the servers and the admin listener, and supervises them: if any
//! server ends before shutdown, readiness turns off first and the service's `run` returns an
//! error, so the process exits non-zero instead of living on half-deaf.
//!
//! A service's `run` is then its domain and little else:
//!
//! ```text
//! let mut skeleton = Skeleton::new("cohort-x", &[SERVICE_NAME], limits);
//! let readiness = skeleton.readiness();           // add conditions before serving
//! let metrics = Metrics::new(skeleton.registry()); // the service's own metrics
//! let routes = GrpcRoutes::new(XServiceServer::new(api)); // reflection lists these
//! let running = skeleton.serve(listeners, routes, http_router, FILE_DESCRIPTOR_SET, |s| s)?;
//! readiness.set(true).await;
//! let outcome = running.until(&shutdown).await;   // Err if a server died
//! readiness.set(false).await;
//! // ... service-specific steps (deregister, tell streams to go away) ...
//! running.drain(grace, async { /* background work, final flushes */ }).await;
//! outcome
//! ```

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tower::{BoxError, Layer, Service, ServiceBuilder};
use tracing::{Instrument, error, info, warn};

use crate::ApiError;
use crate::incoming::Incoming;
use crate::throttle::{FailedAuth, KeyRateLimit};
use crate::tls::{ServerTls, Side, TlsArgs, TlsError};
use crate::{Listeners, Readiness, Shutdown};

/// How much work a service takes on at once, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests in progress at once over all connections, gRPC and HTTP together; beyond it,
    /// requests are shed at once.
    pub max_concurrent_requests: usize,
    /// Longest a handler may take to answer (a stream's answer is its start).
    pub request_timeout: Duration,
    /// Requests per second one API key may make (bursts of `per_key_burst`); 0 for no limit.
    pub per_key_rate: u32,
    pub per_key_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_requests: 10_000,
            request_timeout: Duration::from_secs(30),
            per_key_rate: 0,
            per_key_burst: 0,
        }
    }
}

/// What the stack knows of callers: keys over their rate, addresses failing to authenticate.
#[derive(Debug, Clone)]
struct Guard {
    keys: Option<Arc<KeyRateLimit>>,
    failures: Arc<FailedAuth>,
}

impl Guard {
    /// RESOURCE_EXHAUSTED when the request's key is over its rate.
    fn check_key(&self, headers: &http::HeaderMap) -> Result<(), ApiError> {
        let Some(keys) = &self.keys else { return Ok(()) };
        // `X-API-Key` is how OFREP clients may send a key instead.
        let bearer =
            headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(crate::bearer);
        let api_key = || headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim);
        match bearer.or_else(api_key).filter(|s| !s.is_empty()) {
            Some(secret) => keys.check(secret),
            None => Ok(()),
        }
    }
}

/// Why the servers could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// A server that ended on its own, before shutdown: the process must not live on.
#[derive(Debug, thiserror::Error)]
#[error("the {server} server stopped: {reason}")]
pub struct ServerStopped {
    pub server: &'static str,
    pub reason: String,
}

/// A service being assembled; see the module doc.
pub struct Skeleton {
    name: &'static str,
    readiness: Readiness,
    /// Adds the health service (its type is hidden behind `impl Health`).
    add_health: Box<dyn FnOnce(Routes) -> Routes + Send>,
    registry: Registry,
    requests: RequestMetrics,
    limits: Limits,
    tls: Option<ServerTls>,
}

impl std::fmt::Debug for Skeleton {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Skeleton").field("name", &self.name).field("limits", &self.limits).finish()
    }
}

impl Skeleton {
    /// `services` are the gRPC services whose health follows readiness.
    pub fn new(name: &'static str, services: &[&'static str], limits: Limits) -> Skeleton {
        let (reporter, health) = tonic_health::server::health_reporter();
        let mut registry = Registry::default();
        crate::metrics::register_process(&mut registry, name);
        let requests = RequestMetrics::new(&mut registry);
        Skeleton {
            name,
            readiness: Readiness::new(reporter, services),
            add_health: Box::new(move |routes: Routes| routes.add_service(health)),
            registry,
            requests,
            limits,
            tls: None,
        }
    }

    /// Serves every listener over TLS as `args` say (plaintext when they name no
    /// certificate); the files are read now, and again whenever they change.
    pub fn tls(mut self, args: &TlsArgs) -> Result<Skeleton, TlsError> {
        self.tls = ServerTls::load(args)?;
        Ok(self)
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// The process's one registry: the service registers its own metrics here.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Starts the gRPC server (the service's `routes`, health and reflection over
    /// `descriptors`), the HTTP server (`http`) and the admin server, each behind the common
    /// layers. `grpc` tunes the gRPC server (keepalives, stream limits) before the layers go on.
    /// Reflection lists the services of `routes`, health and itself, nothing else of
    /// `descriptors` (which hold every Cohort proto).
    pub fn serve(
        self,
        listeners: Listeners,
        routes: GrpcRoutes,
        http: axum::Router,
        descriptors: &'static [u8],
        grpc: impl FnOnce(tonic::transport::Server) -> tonic::transport::Server,
    ) -> Result<Running, ServeError> {
        let Skeleton { name, readiness, add_health, mut registry, requests, limits, tls } = self;
        learn_methods(descriptors);
        let GrpcRoutes { routes, names } = routes;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptors)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let listed = names.into_iter().chain([HEALTH, REFLECTION]);
        let reflection = listed.fold(reflection, |b, name| b.with_service_name(name)).build_v1()?;
        let routes = add_health(routes).add_service(reflection);

        let stop = Shutdown::new();
        if let Some(tls) = &tls {
            tls.watch(stop.clone());
        }
        let on = |side| tls.clone().map(|t| (t, side));
        let mut tasks = JoinSet::new();
        // One bound on requests in progress over all connections and both protocols.
        let in_flight = Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_requests));
        let guard = Guard {
            keys: KeyRateLimit::new(limits.per_key_rate, limits.per_key_burst).map(Arc::new),
            failures: Arc::new(FailedAuth::default()),
        };
        registry.sub_registry_with_prefix("cohort").register(
            "auth_failures_slowed",
            "Failed authentications answered late: their address was past its allowance",
            guard.failures.slowed_counter(),
        );
        let grpc_server = grpc(tonic::transport::Server::builder())
            .layer(grpc_layers(requests.clone(), in_flight.clone(), limits.request_timeout, guard.clone()))
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                Incoming::start(listeners.grpc, on(Side::Service))?.into_stream(),
                stop.clone().cancelled_owned(),
            );
        tasks.spawn(async move { ("gRPC", grpc_server.await.map_err(|e| cohort_core::error::chain(&e))) });

        let http = http_layers(http, requests, in_flight, limits.request_timeout, guard);
        let (incoming, failed) = Incoming::start(listeners.http, on(Side::Service))?.fail_fast();
        // Handlers and layers see the peer's address (failed authentications count by it).
        let http = http.into_make_service_with_connect_info::<crate::incoming::Peer>();
        let server = axum::serve(incoming, http).with_graceful_shutdown(stop.clone().cancelled_owned());
        tasks.spawn(async move {
            let outcome = tokio::select! {
                r = server => r.map_err(|e| e.to_string()),
                e = failed => Err(e),
            };
            ("HTTP", outcome)
        });
        if let Some(listener) = listeners.admin {
            let incoming = Incoming::start(listener, on(Side::Admin))?;
            let (registry, readiness, stop) = (Arc::new(registry), readiness.clone(), stop.clone());
            tasks.spawn(
                async move { ("admin", crate::serve_admin(incoming, registry, readiness, stop).await) },
            );
        }
        Ok(Running { name, readiness, stop, tasks })
    }
}

const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION: &str = "grpc.reflection.v1.ServerReflection";

/// The gRPC services one server routes, with their names: what reflection on that server
/// lists, so a server never advertises a service it does not serve.
#[derive(Debug, Default)]
pub struct GrpcRoutes {
    routes: Routes,
    names: Vec<&'static str>,
}

impl GrpcRoutes {
    pub fn new<S>(service: S) -> GrpcRoutes
    where
        S: Service<http::Request<Body>, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        GrpcRoutes::default().add_service(service)
    }

    pub fn add_service<S>(mut self, service: S) -> GrpcRoutes
    where
        S: Service<http::Request<Body>, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes = self.routes.add_service(service);
        self
    }

    /// The fully qualified names of the services routed, in the order added.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// The services reflection on `channel`'s server lists, sorted: how tests (and an operator's
/// check) see what a port advertises.
pub async fn reflected_services(channel: tonic::transport::Channel) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await?
        .into_inner();
    match answers.message().await?.and_then(|a| a.message_response) {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            Ok(names)
        }
        other => Err(tonic::Status::internal(format!("not a list of services: {other:?}"))),
    }
}

/// The servers of a service, supervised.
#[derive(Debug)]
pub struct Running {
    name: &'static str,
    readiness: Readiness,
    stop: Shutdown,
    tasks: JoinSet<(&'static str, Result<(), String>)>,
}

impl Running {
    /// Waits for `shutdown`; `Err` if a server ended first (readiness is turned off before
    /// this returns, so probes see it before the process exits).
    pub async fn until(&mut self, shutdown: &Shutdown) -> Result<(), ServerStopped> {
        let stopped = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            Some(ended) = self.tasks.join_next() => ended,
        };
        self.readiness.set(false).await;
        let (server, reason) = match stopped {
            Ok((server, Err(reason))) => (server, reason),
            Ok((server, Ok(()))) => (server, "it ended without an error".to_owned()),
            Err(e) => ("a", format!("its task failed: {e}")),
        };
        error!(service = self.name, server, reason, "a server stopped; the service stops");
        Err(ServerStopped { server, reason })
    }

    /// The rest of a service's life: serves until `shutdown` (or until a server dies), then
    /// turns readiness off, runs `leaving` (deregistration, telling streams to go away), and
    /// drains with `after` within `grace`. `Err` if a server died.
    pub async fn serve_until(
        mut self,
        shutdown: &Shutdown,
        grace: Duration,
        leaving: impl Future<Output = ()>,
        after: impl Future<Output = ()>,
    ) -> Result<(), ServerStopped> {
        let outcome = self.until(shutdown).await;
        info!(service = self.name, "shutting down");
        // Load balancers and probes first.
        self.readiness.set(false).await;
        leaving.await;
        self.drain(grace, after).await;
        outcome
    }

    /// Stops the servers (in-flight requests finish), then runs `after` (background work,
    /// final flushes), all within `grace`.
    pub async fn drain(mut self, grace: Duration, after: impl Future<Output = ()>) {
        let work = async {
            self.stop.cancel();
            while let Some(ended) = self.tasks.join_next().await {
                if let Ok((server, Err(reason))) = ended {
                    warn!(server, reason, "server ended with an error while draining");
                }
            }
            after.await;
        };
        if tokio::time::timeout(grace.max(Duration::from_millis(100)), work).await.is_err() {
            warn!(service = self.name, ?grace, "shutdown grace period ran out");
        } else {
            info!(service = self.name, "stopped");
        }
    }
}

/// Request counts and durations, by gRPC method and code, or HTTP route and status.
#[derive(Debug, Clone)]
struct RequestMetrics {
    grpc: Family<GrpcLabels, Counter>,
    grpc_seconds: Family<MethodLabel, Histogram>,
    http: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabel, Histogram>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GrpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

fn latency() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl RequestMetrics {
    fn new(registry: &mut Registry) -> Self {
        let m = RequestMetrics {
            grpc: Family::default(),
            grpc_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
            http: Family::default(),
            http_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
        };
        let r = registry.sub_registry_with_prefix("cohort");
        r.register("grpc_requests", "gRPC requests by method and code", m.grpc.clone());
        r.register("grpc_request_duration_seconds", "gRPC time to answer by method", m.grpc_seconds.clone());
        r.register("http_requests", "HTTP requests by route and status", m.http.clone());
        r.register("http_request_duration_seconds", "HTTP time to answer by route", m.http_seconds.clone());
        m
    }
}

/// Every gRPC method path served, for labels of bounded cardinality: a path no service has is
/// labelled "other". Learned once per process (every service serves the same descriptors),
/// so the leaked strings are bounded too.
static METHODS: OnceLock<HashSet<&'static str>> = OnceLock::new();

fn learn_methods(descriptors: &'static [u8]) {
    METHODS.get_or_init(|| {
        use prost::Message;
        let mut paths = HashSet::new();
        for set in [descriptors, tonic_health::pb::FILE_DESCRIPTOR_SET] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(set) else { continue };
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                        paths.insert(&*Box::leak(path.into_boxed_str()));
                    }
                }
            }
        }
        paths
    });
}

fn method_label(path: &str) -> &'static str {
    if let Some(m) = METHODS.get().and_then(|m| m.get(path)) {
        return m;
    }
    if path.starts_with("/grpc.reflection.") { "reflection" } else { "other" }
}

/// A request id: the caller's `x-request-id` when it sends one, else this process's next.
fn request_id(headers: &http::HeaderMap) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    match headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() && id.len() <= 128 => id.to_owned(),
        _ => format!("{:x}-{}", process_tag(), NEXT.fetch_add(1, Ordering::Relaxed)),
    }
}

/// Distinguishes this process's ids from another replica's.
fn process_tag() -> u32 {
    static TAG: OnceLock<u32> = OnceLock::new();
    *TAG.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        nanos ^ std::process::id().rotate_left(16)
    })
}

/// The gRPC stack, outermost first.
fn grpc_layers(
    metrics: RequestMetrics,
    in_flight: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
    guard: Guard,
) -> GrpcLayers {
    ServiceBuilder::new()
        // Outermost, so every request is counted and timed with its final code, including
        // the ones shed or timed out below (their errors become statuses here), and runs in a
        // span that carries its request id.
        .layer(ObserveLayer { metrics, guard: guard.clone() })
        // A saturated service answers RESOURCE_EXHAUSTED at once instead of queueing: queued
        // requests would only add latency, and clients retry with backoff.
        .layer(tower::load_shed::LoadShedLayer::new())
        // One bound on requests in progress over all connections (shared with HTTP), so memory
        // and latency stay bounded however many clients connect.
        .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(in_flight))
        // Innermost: bounds the handler itself, so an answer never outlives its usefulness
        // even when the client sent no deadline.
        .layer(tower::timeout::TimeoutLayer::new(timeout))
        // Innermost, past the limits: a key over its rate is answered without its handler.
        .layer(KeyGateLayer { guard })
        .into_inner()
}

#[derive(Debug, Clone)]
struct KeyGateLayer {
    guard: Guard,
}

impl<S> Layer<S> for KeyGateLayer {
    type Service = KeyGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyGate { inner, guard: self.guard.clone() }
    }
}

#[derive(Debug, Clone)]
struct KeyGate<S> {
    inner: S,
    guard: Guard,
}

impl<S, B> Service<http::Request<B>> for KeyGate<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The routes are always ready; nothing is reserved that an unanswered call would keep.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.guard.check_key(request.headers()) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(e) => {
                let response = tonic::Status::from(e).into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

type GrpcLayers = tower::layer::util::Stack<
    KeyGateLayer,
    tower::layer::util::Stack<
        tower::timeout::TimeoutLayer,
        tower::layer::util::Stack<
            tower::limit::GlobalConcurrencyLimitLayer,
            tower::layer::util::Stack<
                tower::load_shed::LoadShedLayer,
                tower::layer::util::Stack<ObserveLayer, tower::layer::util::Identity>,
            >,
        >,
    >,
>;

#[derive(Debug, Clone)]
struct ObserveLayer {
    metrics: RequestMetrics,
    guard: Guard,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner, metrics: self.metrics.clone(), guard: self.guard.clone() }
    }
}

#[derive(Debug, Clone)]
struct Observe<S> {
    inner: S,
    metrics: RequestMetrics,
    guard: Guard,
}

impl<S, B> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_label(request.uri().path());
        let id = request_id(request.headers());
        let from = request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|a| a.ip());
        let span = tracing::debug_span!("grpc", method, request_id = %id);
        let started = Instant::now();
        let response = span.in_scope(|| self.inner.call(request));
        let (metrics, failures) = (self.metrics.clone(), self.guard.failures.clone());
        Box::pin(
            async move {
                let mut response = match response.await {
                    Ok(r) => r,
                    Err(e) => status_of_error(e.into()).into_http(),
                };
                if response.headers().get("grpc-status").is_some_and(|v| v == "16") {
                    // UNAUTHENTICATED: past an address's allowance of failures, answered late.
                    failures.failed(from).await;
                }
                if let Ok(v) = http::HeaderValue::from_str(&id) {
                    response.headers_mut().insert("x-request-id", v);
                }
                let code = code_name(&response);
                metrics.grpc.get_or_create(&GrpcLabels { method, code }).inc();
                metrics
                    .grpc_seconds
                    .get_or_create(&MethodLabel { method })
                    .observe(started.elapsed().as_secs_f64());
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// The status a layer's error stands for.
fn status_of_error(e: BoxError) -> tonic::Status {
    if e.is::<tower::timeout::error::Elapsed>() {
        tonic::Status::deadline_exceeded("the request took too long")
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        tonic::Status::resource_exhausted("too many requests in progress; retry with backoff")
    } else {
        tonic::Status::from_error(e)
    }
}

/// The gRPC code of a response: `grpc-status` in its headers (an error answered at once), else
/// OK (a unary answer carries its status in trailers, after this layer has seen the response).
fn code_name(response: &http::Response<Body>) -> &'static str {
    let code = response
        .headers()
        .get("grpc-status")
        .map_or(tonic::Code::Ok, |v| tonic::Code::from_bytes(v.as_bytes()));
    match code {
        tonic::Code::Ok => "ok",
        tonic::Code::Cancelled => "cancelled",
        tonic::Code::Unknown => "unknown",
        tonic::Code::InvalidArgument => "invalid_argument",
        tonic::Code::DeadlineExceeded => "deadline_exceeded",
        tonic::Code::NotFound => "not_found",
        tonic::Code::AlreadyExists => "already_exists",
        tonic::Code::PermissionDenied => "permission_denied",
        tonic::Code::ResourceExhausted => "resource_exhausted",
        tonic::Code::FailedPrecondition => "failed_precondition",
        tonic::Code::Aborted => "aborted",
        tonic::Code::OutOfRange => "out_of_range",
        tonic::Code::Unimplemented => "unimplemented",
        tonic::Code::Internal => "internal",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::DataLoss => "data_loss",
        tonic::Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP stack: the same concerns as gRPC's, with HTTP's answers (503 with `Retry-After`
/// when shed, 504 when a handler runs out of time).
fn http_layers(
    router: axum::Router,
    metrics: RequestMetrics,
    in_flight: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
    guard: Guard,
) -> axum::Router {
    use axum::error_handling::HandleErrorLayer;
    use axum::response::IntoResponse;
    let observe =
        axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
            let (metrics, guard) = (metrics.clone(), guard.clone());
            async move {
                let route =
                    request.extensions().get::<MatchedPath>().map_or("unmatched", |p| intern(p.as_str()));
                let id = request_id(request.headers());
                let span = tracing::debug_span!("http", route, request_id = %id);
                let started = Instant::now();
                let from = request
                    .extensions()
                    .get::<axum::extract::ConnectInfo<crate::incoming::Peer>>()
                    .map(|info| info.0.0.ip());
                let mut response = match guard.check_key(request.headers()) {
                    Ok(()) => next.run(request).instrument(span).await,
                    Err(e) => e.into_response(),
                };
                if response.status() == http::StatusCode::UNAUTHORIZED {
                    guard.failures.failed(from).await;
                }
                if let Ok(v) = http::HeaderValue::from_str(&id) {
                    response.headers_mut().insert("x-request-id", v);
                }
                let status = response.status().as_u16();
                metrics.http.get_or_create(&HttpLabels { route, status }).inc();
                metrics
                    .http_seconds
                    .get_or_create(&RouteLabel { route })
                    .observe(started.elapsed().as_secs_f64());
                response
            }
        });
    let guard = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|e: BoxError| async move {
            if e.is::<tower::timeout::error::Elapsed>() {
                (http::StatusCode::GATEWAY_TIMEOUT, "the request took too long").into_response()
            } else {
                let mut r = (http::StatusCode::SERVICE_UNAVAILABLE, "too many requests in progress; retry")
                    .into_response();
                r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
                r
            }
        }))
        .layer(tower::load_shed::LoadShedLayer::new())
        .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(in_flight))
        .layer(tower::timeout::TimeoutLayer::new(timeout));
    // Matched routes are observed after routing (their pattern is the label); the guard
    // wraps everything.
    router.route_layer(observe).layer(guard)
}

/// A route pattern as a `&'static str`: patterns are few and fixed, so this stays small.
fn intern(pattern: &str) -> &'static str {
    static PATTERNS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut patterns = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    let set = patterns.get_or_insert_with(HashSet::new);
    if let Some(p) = set.get(pattern) {
        return p;
    }
    let leaked: &'static str = Box::leak(pattern.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests;
