//! The gRPC server's tower layers, built in one function ([`grpc_layers`]), and the metrics
//! layer that sits outermost.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::Status;
use tonic::body::Body;
use tower::layer::util::{Identity, Stack};
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, Layer, Service, ServiceBuilder};

use crate::metrics::{MethodLabels, Metrics, RequestLabels};

/// The layers [`grpc_layers`] builds, outermost first.
pub type GrpcLayers =
    Stack<TimeoutLayer, Stack<ConcurrencyLimitLayer, Stack<LoadShedLayer, Stack<MetricsLayer, Identity>>>>;

/// The gRPC server's cross-cutting concerns, outermost first.
pub fn grpc_layers(metrics: Arc<Metrics>, max_concurrent: usize, timeout: Duration) -> GrpcLayers {
    ServiceBuilder::new()
        // Outermost, so every request is counted and timed with its final code, including
        // the ones shed or timed out by the layers below (their errors become statuses here).
        .layer(MetricsLayer { metrics })
        // A saturated service answers RESOURCE_EXHAUSTED at once instead of queueing: queued
        // requests would only add latency, and clients retry elsewhere with backoff.
        .layer(LoadShedLayer::new())
        // One bound on requests in progress over all connections (clones share the
        // semaphore), so memory and latency stay bounded however many clients connect.
        .layer(ConcurrencyLimitLayer::new(max_concurrent))
        // Innermost: bounds the handler itself, environment warm-up included, so a request
        // never outlives its usefulness even if the client sent no deadline.
        .layer(TimeoutLayer::new(timeout))
        .into_inner()
}

/// Counts requests by method and gRPC code and records their latency.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<http::Request<B>> for MetricsService<S>
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
        let method = method_name(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let response = match response.await {
                Ok(r) => r,
                Err(e) => status_of_error(e.into()).into_http(),
            };
            let code = code_name(&response);
            metrics.requests.get_or_create(&RequestLabels { method, code }).inc();
            metrics.latency.get_or_create(&MethodLabels { method }).observe(started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

/// The status a layer's error stands for.
fn status_of_error(e: BoxError) -> Status {
    if e.is::<tower::timeout::error::Elapsed>() {
        Status::deadline_exceeded("the request took too long")
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        Status::resource_exhausted("too many requests in progress; retry with backoff")
    } else {
        Status::from_error(e)
    }
}

/// A fixed label for the path (no allocation, bounded cardinality).
pub fn method_name(path: &str) -> &'static str {
    match path.rsplit_once('/') {
        Some(("/cohort.evaluation.v1.EvaluationService", "Evaluate")) => "Evaluate",
        Some(("/cohort.evaluation.v1.EvaluationService", "EvaluateBatch")) => "EvaluateBatch",
        Some(("/grpc.health.v1.Health", _)) => "health",
        Some((s, _)) if s.starts_with("/grpc.reflection.") => "reflection",
        _ => "other",
    }
}

/// The gRPC code of a response: `grpc-status` in its headers (an error answered at once), else
/// OK (unary answers carry their status in trailers, and handlers here fail before the body).
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
