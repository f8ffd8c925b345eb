//! The analysis service: every interval, for each running experiment, per-unit aggregation
//! after first exposure, statistics with group-sequential looks, segment breakdowns, guardrails
//! that pause experiments, and stored results served over gRPC and HTTP.
//!
//! # Layout
//! - [`analyze`]: one experiment's analysis from its aggregates, without I/O.
//! - [`store`]: every SQL statement (aggregation, plans, looks, results).
//! - [`cycle`]: the cycle over all running experiments and leader election.
//! - [`api`]: gRPC `AnalysisService` and `GET /api/v1/experiments/{id}/results`.
//! - [`settings`], [`run`]: configuration and start-up.

pub mod analyze;
pub mod api;
pub mod cycle;
pub mod metrics;
pub mod settings;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use cohort_proto::analysis::v1::analysis_service_server::AnalysisServiceServer;
pub use cohort_runtime::Listeners;
use cohort_runtime::{Readiness, Shutdown};
use prometheus_client::registry::Registry;
use tracing::{info, warn};

pub use settings::Settings;

/// Runs the analysis service until `shutdown` fires.
pub async fn run(settings: Settings, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = cohort_db::connect(
        &settings.database.database_url,
        &cohort_db::PoolOptions {
            max_connections: settings.database.database_max_connections as usize,
            application_name: "cohort-analysis".into(),
            ..Default::default()
        },
    )?;
    if settings.migrate {
        cohort_db::migrate(&pool).await?;
    }
    let mut registry = Registry::default();
    let metrics = metrics::Metrics::new(&mut registry);
    let store = store::Store::new(pool);
    let analyzer = Arc::new(cycle::Analyzer::new(store.clone(), settings.analysis(), metrics));
    // Ready while the database answers (results are read from it) and, on the leader, while
    // cycles succeed.
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = Readiness::new(health_reporter, &["cohort.analysis.v1.AnalysisService"]);
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

    let api = Arc::new(api::Api { store });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cohort_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let servers_down = Shutdown::new();
    let grpc_addr = listeners.grpc.local_addr()?;
    let grpc = {
        let stop = servers_down.clone();
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(AnalysisServiceServer::from_arc(api.clone()))
            .serve_with_incoming_shutdown(cohort_runtime::grpc_incoming(listeners.grpc), async move {
                stop.cancelled().await
            })
    };
    let http = {
        let stop = servers_down.clone();
        axum::serve(cohort_runtime::http_incoming(listeners.http), api::router(api))
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
    readiness.set(true).await;
    info!("analysis service ready");
    let registration = settings.consul.spawn_registration(
        "cohort-analysis",
        grpc_addr,
        "cohort.analysis.v1.AnalysisService",
    );

    shutdown.cancelled().await;
    readiness.set(false).await;
    if let Some(r) = registration {
        r.finish().await;
    }
    let drain = async {
        // Stop cycling first: a cycle in flight finishes its experiment writes or rolls back.
        tasks.cancel();
        let _ = leader.await;
        servers_down.cancel();
        let _ = grpc.await;
        let _ = http.await;
        if let Some(a) = admin {
            let _ = a.await;
        }
    };
    if tokio::time::timeout(settings.common.shutdown_grace.max(Duration::from_millis(100)), drain)
        .await
        .is_err()
    {
        warn!("shutdown grace period ran out");
    }
    Ok(())
}
