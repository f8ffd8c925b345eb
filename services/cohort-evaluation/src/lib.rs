//! The evaluation service: remote evaluation for clients that cannot embed the SDK. It is
//! built on cohort-sdk, one client per SDK key presented, so it evaluates (and records
//! exposures) exactly as an embedded SDK does.
//!
//! # Layout
//! - [`environments`]: SDK or client key → SDK client, built on first use, idle ones closed,
//!   bounded. A client-side key's client streams its config under this service's own key.
//! - [`origins`]: environments' allowed browser origins (CORS), read from the config service.
//! - [`discovery`]: static or Consul-discovered config and event service endpoints.
//! - [`evaluate`]: request checks and decisions, without tonic or axum.
//! - [`api`]: the tonic `EvaluationService`. [`http`]: `POST /api/v1/evaluate` (JSON, CORS,
//!   caching on request). [`ofrep`]: the OpenFeature Remote Evaluation Protocol's
//!   `POST /ofrep/v1/evaluate/flags[/{key}]`.
//! - [`flagd`]: flagd's evaluation gRPC service (`flagd.evaluation.v1.Service` and `v2`), for
//!   OpenFeature's flagd providers in RPC mode.
//! - [`metrics`]: Prometheus metrics (the tower stack and request metrics are the
//!   `cohort_runtime::Skeleton`'s).
//! - [`error`]: the service error and its mapping to gRPC and HTTP.
//! - [`settings`] and [`run`]: how the process is configured and started.

pub mod api;
pub mod discovery;
pub mod environments;
pub mod error;
pub mod evaluate;
pub mod flagd;
pub mod http;
pub mod metrics;
pub mod ofrep;
pub mod origins;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use cohort_proto::evaluation::v1::evaluation_service_server::EvaluationServiceServer;
use cohort_proto::flagd::evaluation::{v1 as flagd_v1, v2 as flagd_v2};
pub use cohort_runtime::Listeners;
use cohort_runtime::{GrpcRoutes, Shutdown, Skeleton};
use tracing::info;

pub use settings::Settings;

use crate::api::Api;
use crate::discovery::Endpoints;
use crate::environments::{ClientOptions, Environments};
use crate::evaluate::{Evaluator, Limits};
use crate::flagd::Flagd;
use crate::metrics::Metrics;
use crate::origins::Origins;
use cohort_discovery::{Upstream, balanced_channel};

/// The fully qualified gRPC service name, for health and Consul checks.
pub const SERVICE_NAME: &str = "cohort.evaluation.v1.EvaluationService";

/// Runs the evaluation service until `shutdown` fires, then stops in order: readiness off,
/// Consul deregistration, servers drained, every SDK client closed (queued exposures
/// delivered), all within the grace period.
pub async fn run(settings: Settings, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
    let limits = cohort_runtime::Limits {
        max_concurrent_requests: settings.max_concurrent_requests,
        request_timeout: settings.request_timeout,
        per_key_rate: settings.key_rate_limit,
        per_key_burst: settings.key_rate_burst,
    };
    let mut skeleton = Skeleton::new(
        "cohort-evaluation",
        &[SERVICE_NAME, flagd::SERVICE_NAMES[0], flagd::SERVICE_NAMES[1]],
        limits,
    )
    .tls(&settings.common.tls)?;
    let metrics = Arc::new(Metrics::new(skeleton.registry()));

    // Background work (Consul followers, the idle reaper) stops on `tasks`.
    let tasks = Shutdown::new();
    let consul = settings.consul.client()?;
    let (config, events) = match &consul {
        Some(consul) => (
            Endpoints::consul(consul.clone(), "cohort-config", tasks.clone()),
            Endpoints::consul(consul.clone(), "cohort-events", tasks.clone()),
        ),
        None => (Endpoints::fixed(&settings.config_endpoint), Endpoints::fixed(&settings.events_endpoint)),
    };
    let tls = settings.common.tls.client();
    tls.load()?;
    // The config service's internal API, for environments' allowed origins.
    let internal = match &settings.service_key {
        Some(key) => {
            let upstream = match consul {
                Some(client) => {
                    Upstream::Consul { client: Box::new(client), service: "cohort-config".into() }
                }
                None => Upstream::Static(settings.config_endpoint.clone()),
            };
            Some((balanced_channel(upstream, &tls, Duration::from_secs(2), tasks.clone())?, key.as_str()))
        }
        None => None,
    };
    let origins = Origins::new(internal, settings.max_environments as u64).map_err(anyhow::Error::msg)?;
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
            tls,
            service_key: settings.service_key.clone(),
        },
        metrics.environments.clone(),
    );
    let reaper = tokio::spawn(environments.clone().reap_until(tasks.clone()));
    let evaluator = Evaluator {
        environments: environments.clone(),
        origins,
        limits: Limits { max_keys: settings.max_keys, max_batch_contexts: settings.max_batch_contexts },
        metrics: (*metrics).clone(),
    };

    let readiness = skeleton.readiness();
    let grpc_addr = listeners.grpc.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    let router = http::router(
        http::HttpState { evaluator: evaluator.clone(), max_cache: settings.http_max_cache },
        http::cors(),
    )
    .merge(ofrep::router(ofrep::OfrepState { evaluator: evaluator.clone() }));
    // flagd's event streams end on this at shutdown, before the servers drain.
    let flagd_streams = tokio_util::sync::CancellationToken::new();
    let flagd = Flagd::new(evaluator.clone(), &settings.flagd_environment_keys, flagd_streams.clone());
    let running = skeleton.serve(
        listeners,
        GrpcRoutes::new(EvaluationServiceServer::new(Api { evaluator }))
            .add_service(flagd_v1::service_server::ServiceServer::new(flagd.clone()))
            .add_service(flagd_v2::service_server::ServiceServer::new(flagd)),
        router,
        cohort_proto::FILE_DESCRIPTOR_SET,
        |server| {
            server
                // Clients keep connections open; keepalives find dead peers behind NATs.
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .max_concurrent_streams(Some(10_000))
        },
    )?;
    readiness.set(true).await;
    info!(%grpc_addr, %http_addr, "evaluation service ready");
    let registration = settings.consul.spawn_registration(
        "cohort-evaluation",
        grpc_addr,
        SERVICE_NAME,
        settings.common.tls.tls_cert.is_some(),
    );

    let leaving = async {
        flagd_streams.cancel();
        registration.finish().await;
    };
    let after = async {
        tasks.cancel();
        let _ = reaper.await;
        // Last: queued exposures reach the event service before the process exits.
        environments.close_all().await;
    };
    Ok(running.serve_until(&shutdown, settings.common.shutdown_grace, leaving, after).await?)
}
