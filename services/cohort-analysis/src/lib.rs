//! The analysis service: every interval, for each running experiment, per-unit aggregation
//! after first exposure, statistics with group-sequential looks, segment breakdowns, guardrails
//! that pause experiments, and stored results served over gRPC and HTTP.
//!
//! # Layout
//! - [`analyze`]: one experiment's analysis from its aggregates, without I/O.
//! - [`store`]: every SQL statement (aggregation, plans, looks, results).
//! - [`config`]: the config service over gRPC: running experiments, callers' keys, pauses.
//! - [`cycle`]: the cycle over all running experiments and leader election.
//! - [`api`]: gRPC `AnalysisService` and `GET /api/v1/experiments/{id}/results`.
//! - [`settings`], [`run`]: configuration and start-up.

pub mod analyze;
pub mod api;
pub mod config;
pub mod cycle;
pub mod metrics;
pub mod settings;
pub mod store;

use std::sync::Arc;

use cohort_proto::analysis::v1::analysis_service_server::AnalysisServiceServer;
pub use cohort_runtime::Listeners;
use cohort_runtime::{GrpcRoutes, Limits, Shutdown, Skeleton};
use tracing::info;

pub use settings::Settings;

/// The fully qualified gRPC service name, for health and Consul checks.
pub const SERVICE_NAME: &str = "cohort.analysis.v1.AnalysisService";

/// Runs the analysis service until `shutdown` fires (or one of its servers dies: then an
/// error, so the process exits non-zero).
pub async fn run(settings: Settings, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = cohort_db::connect(
        &settings.database.database_url,
        &cohort_db::PoolOptions {
            max_connections: settings.database.database_max_connections as usize,
            application_name: "cohort-analysis".into(),
            // Events are read under cohort_events' read-model contract; what config knows comes
            // over its gRPC API, never its tables.
            search_path: ["cohort_analysis", "cohort_events"].map(String::from).into(),
            ..Default::default()
        },
    )?;
    // Refuses a schema newer than this binary knows, migrating or not.
    cohort_db::migrate::at_start(&pool, &cohort_db::migrate::ANALYSIS, settings.migrate).await?;
    let mut skeleton =
        Skeleton::new("cohort-analysis", &[SERVICE_NAME], Limits::default()).tls(&settings.common.tls)?;
    let metrics = metrics::Metrics::new(skeleton.registry());
    cohort_runtime::metrics::register_pool(skeleton.registry(), pool.clone());
    let store = store::Store::new(pool);
    let config = config::ConfigClient::new(
        &settings.config_endpoint,
        &settings.service_key,
        &settings.common.tls.client(),
    )
    .map_err(anyhow::Error::msg)?;
    let analyzer =
        Arc::new(cycle::Analyzer::new(store.clone(), config.clone(), settings.analysis(), metrics));
    // Ready while the database answers (results are read from it) and, on the leader, while
    // cycles succeed.
    let readiness = skeleton.readiness();
    let database = readiness.condition("database");
    let _database = cohort_db::HealthCheck::spawn(store.pool().clone(), move |up| database.set(up));
    let cycles = readiness.condition("analysis cycles");
    let tasks = Shutdown::new();
    let leader = tokio::spawn(cycle::lead(
        analyzer,
        settings.database.database_url.clone(),
        settings.interval,
        cycles,
        tasks.clone(),
    ));

    let api = Arc::new(api::Api { store, config });
    let grpc_addr = listeners.grpc.local_addr()?;
    let routes = GrpcRoutes::new(AnalysisServiceServer::from_arc(api.clone()));
    let running =
        skeleton.serve(listeners, routes, api::router(api), cohort_proto::FILE_DESCRIPTOR_SET, |s| s)?;
    readiness.set(true).await;
    info!("analysis service ready");
    let registration = settings.consul.spawn_registration(
        "cohort-analysis",
        grpc_addr,
        SERVICE_NAME,
        settings.common.tls.tls_cert.is_some(),
    );

    let after = async {
        // A cycle in flight finishes its experiment writes or rolls back.
        tasks.cancel();
        let _ = leader.await;
    };
    Ok(running.serve_until(&shutdown, settings.common.shutdown_grace, registration.finish(), after).await?)
}
