//! The config service: Cohort's system of record in PostgreSQL, its gRPC API, and the live
//! config stream that pushes every committed change to connected SDKs.
//!
//! # Layout
//! - [`domain`]: write planning without I/O (validation by compiling, revisions, lifecycle).
//! - [`store`]: every SQL statement; a write is one transaction with its version and audit row.
//! - [`hub`]: per-environment state shared by all streams, fed by PostgreSQL `LISTEN`.
//! - [`sync`]: one `Sync` stream session. [`propagation`]: acknowledgment latencies.
//! - [`api`]: the tonic service. [`http`]: `GET /api/v1/config`. [`auth`]: API keys.
//! - [`settings`] and [`run`]: how the process is configured and started.

pub mod api;
pub mod auth;
pub mod domain;
pub mod error;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod propagation;
pub mod settings;
pub mod store;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use cohort_proto::config::v1::config_service_server::ConfigServiceServer;
pub use cohort_runtime::Listeners;
use cohort_runtime::{Readiness, Shutdown};
use prometheus_client::registry::Registry;
use tracing::{info, warn};

pub use settings::ServeSettings;

use crate::api::{Api, BootstrapPolicy};
use crate::auth::Authenticator;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::propagation::Propagation;
use crate::store::Store;
use crate::sync::SyncContext;

/// Runs the config service until `shutdown` fires, then stops in order: readiness off,
/// streams told to go away, servers drained, background tasks finished, all within the
/// grace period.
pub async fn run(settings: ServeSettings, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = cohort_db::connect(
        &settings.database.database_url,
        &cohort_db::PoolOptions {
            max_connections: settings.database.database_max_connections as usize,
            application_name: "cohort-config".into(),
            ..Default::default()
        },
    )?;
    if settings.migrate {
        let applied = cohort_db::migrate(&pool).await?;
        info!(applied = ?applied, "migrations up to date");
    }
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let store = Store::new(pool);
    let hub = Arc::new(Hub::new(store.clone(), metrics.clone()));
    let replica = settings.replica_id.unwrap_or_else(uuid::Uuid::new_v4);
    let propagation = Arc::new(Propagation::new(replica, store.clone()));
    let auth = Arc::new(Authenticator::new(store.clone()));

    // Background work stops on `tasks`, which fires after the servers have drained.
    let tasks = Shutdown::new();
    let follower = tokio::spawn(hub::follow_changes(
        hub.clone(),
        auth.clone(),
        settings.database.database_url.clone(),
        settings.poll_interval,
        tasks.clone(),
    ));
    let flusher =
        tokio::spawn(propagation.clone().run(hub.clone(), Duration::from_millis(250), tasks.clone()));

    let streams = Shutdown::new();
    let api = Api {
        auth: auth.clone(),
        sync: SyncContext {
            hub: hub.clone(),
            store: store.clone(),
            propagation,
            metrics,
            heartbeat: settings.heartbeat_interval,
            shutdown: streams.clone(),
        },
        bootstrap: BootstrapPolicy { token: settings.bootstrap_token.clone() },
        stream_queue: 8,
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = Readiness::new(health_reporter, &["cohort.config.v1.ConfigService"]);
    // Every request reads or writes PostgreSQL: ready only while it answers.
    let database = readiness.condition("database");
    let _database = cohort_db::HealthCheck::spawn(store.pool().clone(), move |up| database.set(up));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cohort_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let grpc_addr = listeners.grpc.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    let servers_down = Shutdown::new();
    let grpc = {
        let stop = servers_down.clone();
        tonic::transport::Server::builder()
            // SDK connections are long-lived; keepalives find dead peers behind NATs.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(20_000))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(ConfigServiceServer::new(api))
            .serve_with_incoming_shutdown(cohort_runtime::grpc_incoming(listeners.grpc), async move {
                stop.cancelled().await
            })
    };
    let http = {
        let stop = servers_down.clone();
        let router = http::router(http::HttpState { auth, hub: hub.clone(), max_age: settings.http_max_age });
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
    readiness.set(true).await;
    info!(%grpc_addr, %http_addr, %replica, "config service ready");
    let registration =
        settings.consul.spawn_registration("cohort-config", grpc_addr, "cohort.config.v1.ConfigService");

    shutdown.cancelled().await;
    info!("shutting down");
    readiness.set(false).await;
    if let Some(r) = registration {
        r.finish().await;
    }
    streams.cancel();
    let drain = async {
        // Streams end after their GoAway; then the servers can finish.
        tokio::time::sleep(Duration::from_millis(100)).await;
        servers_down.cancel();
        let _ = grpc.await;
        let _ = http.await;
        if let Some(a) = admin {
            let _ = a.await;
        }
        tasks.cancel();
        let _ = follower.await;
        let _ = flusher.await;
    };
    if tokio::time::timeout(settings.common.shutdown_grace, drain).await.is_err() {
        warn!(grace = ?settings.common.shutdown_grace, "shutdown grace period ran out");
    }
    Ok(())
}
