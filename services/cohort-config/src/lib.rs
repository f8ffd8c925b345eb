//! The config service: Cohort's system of record in PostgreSQL, its gRPC API, and the live
//! config stream that pushes every committed change to connected SDKs.
//!
//! # Layout
//! - `domain`: write planning without I/O (validation by compiling, revisions, lifecycle).
//! - `store`: every SQL statement; a write is one transaction with its version and audit row.
//! - `hub`: per-environment state shared by all streams, fed by PostgreSQL `LISTEN`.
//! - `sync`: one `Sync` stream session. `propagation`: acknowledgment latencies.
//! - `api`: the tonic service. `internal`: the internal API for service keys. `http`:
//!   `GET /api/v1/config`. `auth`: API keys and service keys.
//! - [`settings`], [`run`] and [`bootstrap`]: how the process is configured and started, the
//!   only public items: other services meet this one over gRPC, never through its code.

mod api;
mod auth;
mod domain;
mod error;
mod http;
mod hub;
mod internal;
mod metrics;
mod propagation;
pub mod settings;
mod store;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use cohort_proto::config::v1::config_service_server::ConfigServiceServer;
use cohort_proto::config::v1::internal_service_server::InternalServiceServer;
pub use cohort_runtime::Listeners;
use cohort_runtime::{GrpcRoutes, Limits, Shutdown, Skeleton};
use tracing::info;

pub use settings::ServeSettings;

use crate::api::{Api, BootstrapPolicy};
use crate::auth::Authenticator;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::propagation::Propagation;
use crate::store::Store;
use crate::sync::SyncContext;

/// Creates the first organization, its environment and an admin key; returns what to print
/// for the operator (the key's secret is shown only here).
pub async fn bootstrap(
    pool: cohort_db::Pool,
    organization: &str,
    environment: &str,
) -> anyhow::Result<String> {
    let (org, env, key, secret) =
        Store::new(pool).bootstrap(organization, environment).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(format!(
        "organization {organization} ({org})\nenvironment  {} ({})\nadmin key    {secret} ({})",
        env.key, env.id, key.id
    ))
}

/// The fully qualified gRPC service name, for health and Consul checks.
pub const SERVICE_NAME: &str = "cohort.config.v1.ConfigService";

/// Runs the config service until `shutdown` fires (or one of its servers dies: then an error,
/// so the process exits non-zero), then stops in order: readiness off,
/// streams told to go away, servers drained, background tasks finished, all within the
/// grace period.
pub async fn run(settings: ServeSettings, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = cohort_db::connect(
        &settings.database.database_url,
        &cohort_db::PoolOptions {
            max_connections: settings.database.database_max_connections as usize,
            application_name: "cohort-config".into(),
            search_path: vec![cohort_db::migrate::CONFIG.name.into()],
            ..Default::default()
        },
    )?;
    // Refuses a schema newer than this binary knows, migrating or not.
    let applied = cohort_db::migrate::at_start(&pool, &cohort_db::migrate::CONFIG, settings.migrate).await?;
    if settings.migrate {
        info!(applied = ?applied, "migrations up to date");
    }
    let mut skeleton =
        Skeleton::new("cohort-config", &[SERVICE_NAME], Limits::default()).tls(&settings.common.tls)?;
    let metrics = Metrics::new(skeleton.registry());
    cohort_runtime::metrics::register_pool(skeleton.registry(), pool.clone());
    let store = Store::new(pool);
    let hub = Arc::new(Hub::new(store.clone(), metrics.clone()));
    let replica = settings.replica_id.unwrap_or_else(uuid::Uuid::new_v4);
    let propagation = Arc::new(Propagation::new(replica, store.clone()));
    let services = auth::ServiceKeys::parse(&settings.service_keys).map_err(anyhow::Error::msg)?;
    let auth = Arc::new(Authenticator::new(store.clone(), services));
    let internal_auth = auth.clone();

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

    let readiness = skeleton.readiness();
    // Every request reads or writes PostgreSQL: ready only while it answers.
    let database = readiness.condition("database");
    let _database = cohort_db::HealthCheck::spawn(store.pool().clone(), move |up| database.set(up));

    let grpc_addr = listeners.grpc.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    let router = http::router(http::HttpState { auth, hub: hub.clone(), max_age: settings.http_max_age });
    let running = skeleton.serve(
        listeners,
        GrpcRoutes::new(ConfigServiceServer::new(api)).add_service(InternalServiceServer::new(
            internal::Internal { auth: internal_auth, store: store.clone() },
        )),
        router,
        cohort_proto::FILE_DESCRIPTOR_SET,
        |server| {
            server
                // SDK connections are long-lived; keepalives find dead peers behind NATs.
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .max_concurrent_streams(Some(20_000))
        },
    )?;
    readiness.set(true).await;
    info!(%grpc_addr, %http_addr, %replica, "config service ready");
    let registration = settings.consul.spawn_registration(
        "cohort-config",
        grpc_addr,
        SERVICE_NAME,
        settings.common.tls.tls_cert.is_some(),
    );

    let leaving = async {
        registration.finish().await;
        // Streams end after their GoAway; then the servers can finish.
        streams.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after = async {
        tasks.cancel();
        let _ = follower.await;
        let _ = flusher.await;
    };
    Ok(running.serve_until(&shutdown, settings.common.shutdown_grace, leaving, after).await?)
}
