//! The console: the web page experimenters and release engineers use (built from `console/`
//! with Vite) and the JSON API it calls (console/API.md), served on one origin. The API calls
//! the config and analysis services over gRPC with the signed-in person's own key, so the
//! console holds no credentials and can do nothing the key could not.
//!
//! # Layout
//! - [`api`]: the routes of `/api/v1/...` and the page's fallback.
//! - [`upstream`]: the gRPC clients and the mapping of their errors to JSON.
//! - [`assets`]: the built page, served from memory.
//! - [`settings`], [`run`]: configuration and start-up.

pub mod api;
pub mod assets;
pub mod settings;
pub mod upstream;

pub use cohort_runtime::Listeners;
use cohort_runtime::{GrpcRoutes, Limits, Shutdown, Skeleton};
use tracing::info;

pub use settings::Settings;

/// The name its health follows (it serves no gRPC API of its own).
pub const SERVICE_NAME: &str = "cohort.console";

/// Runs the console until `shutdown` fires.
pub async fn run(settings: Settings, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
    let assets = assets::Assets::load(&settings.assets_dir)?;
    let upstream = upstream::Upstream::new(
        &settings.config_endpoint,
        &settings.analysis_endpoint,
        &settings.common.tls.client(),
    )
    .map_err(anyhow::Error::msg)?;
    let skeleton =
        Skeleton::new("cohort-console", &[SERVICE_NAME], Limits::default()).tls(&settings.common.tls)?;
    let readiness = skeleton.readiness();
    let files = assets.len();
    let http = api::router(api::Console { upstream, assets });
    let running =
        skeleton.serve(listeners, GrpcRoutes::default(), http, cohort_proto::FILE_DESCRIPTOR_SET, |s| s)?;
    readiness.set(true).await;
    info!(files, "console ready");
    Ok(running.serve_until(&shutdown, settings.common.shutdown_grace, async {}, async {}).await?)
}
