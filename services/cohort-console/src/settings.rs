//! The console's settings: flags or `COHORT_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser};
use cohort_runtime::CommonArgs;

#[derive(Debug, Parser)]
#[command(name = "cohort-console", version, about = "Cohort's console: the web page and its API")]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten)]
    pub common: CommonArgs,

    /// gRPC listen address (health and reflection only).
    #[arg(long, env = "COHORT_GRPC_ADDR", default_value = "0.0.0.0:50056")]
    pub grpc_addr: SocketAddr,

    /// HTTP listen address: the page and `/api/v1/...`.
    #[arg(long, env = "COHORT_HTTP_ADDR", default_value = "0.0.0.0:8086")]
    pub http_addr: SocketAddr,

    /// The config service.
    #[arg(long, env = "COHORT_CONFIG_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    pub config_endpoint: String,

    /// The analysis service.
    #[arg(long, env = "COHORT_ANALYSIS_ENDPOINT", default_value = "http://127.0.0.1:50054")]
    pub analysis_endpoint: String,

    /// The built page (`npm run build` in `console/` writes `console/dist`).
    #[arg(long, env = "COHORT_ASSETS_DIR", default_value = "console/dist")]
    pub assets_dir: PathBuf,
}

impl Settings {
    pub fn validate(&self) -> Result<(), String> {
        for (flag, url) in
            [("--config-endpoint", &self.config_endpoint), ("--analysis-endpoint", &self.analysis_endpoint)]
        {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("{flag} must be an http:// or https:// URL"));
            }
        }
        if !self.assets_dir.join("index.html").is_file() {
            return Err(format!(
                "--assets-dir: {} has no index.html; build the page with `npm ci && npm run build` in console/",
                self.assets_dir.display()
            ));
        }
        Ok(())
    }
}
