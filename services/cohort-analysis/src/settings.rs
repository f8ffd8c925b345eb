//! The analysis service's settings: flags or `COHORT_*` environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser};
use cohort_discovery::ConsulArgs;
use cohort_runtime::{CommonArgs, DatabaseArgs, parse_duration};

use crate::analyze;

#[derive(Debug, Parser)]
#[command(name = "cohort-analysis", version, about = "Cohort's analysis service")]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub consul: ConsulArgs,

    /// gRPC listen address.
    #[arg(long, env = "COHORT_GRPC_ADDR", default_value = "0.0.0.0:50054")]
    pub grpc_addr: SocketAddr,

    /// HTTP JSON listen address (`GET /api/v1/experiments/{id}/results`).
    #[arg(long, env = "COHORT_HTTP_ADDR", default_value = "0.0.0.0:8084")]
    pub http_addr: SocketAddr,

    /// Time between analysis cycles.
    #[arg(long, env = "COHORT_ANALYSIS_INTERVAL", value_parser = parse_duration, default_value = "10s")]
    pub interval: Duration,

    /// Two-sided significance level.
    #[arg(long, env = "COHORT_ALPHA", default_value_t = 0.05)]
    pub alpha: f64,

    /// Power of the sample-size plan.
    #[arg(long, env = "COHORT_POWER", default_value_t = 0.8)]
    pub power: f64,

    /// Relative minimum detectable effect for experiments that set none.
    #[arg(long, env = "COHORT_DEFAULT_MDE", default_value_t = 0.1)]
    pub default_mde: f64,

    /// Units every variant needs before the first look.
    #[arg(long, env = "COHORT_MIN_UNITS_PER_VARIANT", default_value_t = 100)]
    pub min_units_per_variant: u64,

    /// Information a new look must add over the last (bounds the number of looks).
    #[arg(long, env = "COHORT_MIN_LOOK_STEP", default_value_t = 0.02)]
    pub min_look_step: f64,

    /// The config service (running experiments, metrics, callers' keys, guardrail pauses).
    #[arg(long, env = "COHORT_CONFIG_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    pub config_endpoint: String,

    /// This service's key for the config service (`cohort_service_…`); the config service
    /// knows its SHA-256 (`--service-keys`).
    #[arg(long, env = "COHORT_SERVICE_KEY", hide_env_values = true, default_value = "")]
    pub service_key: String,

    /// Apply database migrations at start-up.
    #[arg(long, env = "COHORT_MIGRATE")]
    pub migrate: bool,
}

impl Settings {
    pub fn validate(&self) -> Result<(), String> {
        self.consul.validate()?;
        self.database.validate()?;
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err("--alpha must be between 0 and 0.5".into());
        }
        if !(self.power > 0.5 && self.power < 1.0) {
            return Err("--power must be between 0.5 and 1".into());
        }
        if !(self.default_mde > 0.0 && self.default_mde <= 10.0) {
            return Err("--default-mde must be a relative effect above 0 and at most 10".into());
        }
        if !(self.min_look_step > 0.0 && self.min_look_step <= 0.5) {
            return Err("--min-look-step must be above 0 and at most 0.5".into());
        }
        if self.interval < Duration::from_millis(100) {
            return Err("--interval must be at least 100ms".into());
        }
        if cohort_db::keys::claimed_kind(&self.service_key) != Some(cohort_db::keys::KeyKind::Service) {
            return Err("--service-key must be a service key (cohort_service_…)".into());
        }
        if !(self.config_endpoint.starts_with("http://") || self.config_endpoint.starts_with("https://")) {
            return Err("--config-endpoint must be an http:// or https:// URL".into());
        }
        Ok(())
    }

    pub fn analysis(&self) -> analyze::Settings {
        analyze::Settings {
            alpha: self.alpha,
            power: self.power,
            default_mde: self.default_mde,
            min_units_per_variant: self.min_units_per_variant.max(2),
            min_look_step: self.min_look_step,
            ..analyze::Settings::default()
        }
    }
}
