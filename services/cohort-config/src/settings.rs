//! The config service's settings: flags or `COHORT_*` environment variables, validated before
//! any port is bound.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use cohort_discovery::ConsulArgs;
use cohort_runtime::{CommonArgs, DatabaseArgs, parse_duration};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "cohort-config", version, about = "Cohort's config service")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeSettings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations of one service's schema and exit.
    Migrate {
        /// Whose schema: this service's, or another's for a migration job that runs each
        /// service's migrations with that service's database URL (and role).
        #[arg(long, env = "COHORT_MIGRATE_SCHEMA", default_value = "config",
              value_parser = ["config", "events", "analysis"])]
        schema: String,
    },
    /// Create the first organization, environment and admin key, print the key, and exit.
    Bootstrap {
        #[arg(long, env = "COHORT_BOOTSTRAP_ORGANIZATION")]
        organization: String,
        #[arg(long, env = "COHORT_BOOTSTRAP_ENVIRONMENT", default_value = "production")]
        environment: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub consul: ConsulArgs,

    /// gRPC listen address.
    #[arg(long, env = "COHORT_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,

    /// HTTP JSON listen address (`GET /api/v1/config`).
    #[arg(long, env = "COHORT_HTTP_ADDR", default_value = "0.0.0.0:8081")]
    pub http_addr: SocketAddr,

    /// Apply database migrations at start-up.
    #[arg(long, env = "COHORT_MIGRATE")]
    pub migrate: bool,

    /// Heartbeat interval on config streams.
    #[arg(long, env = "COHORT_HEARTBEAT_INTERVAL", value_parser = parse_duration, default_value = "5s")]
    pub heartbeat_interval: Duration,

    /// How often to check for changes whose notification was missed.
    #[arg(long, env = "COHORT_POLL_INTERVAL", value_parser = parse_duration, default_value = "5s")]
    pub poll_interval: Duration,

    /// Cache-Control max-age of `GET /api/v1/config`, in seconds.
    #[arg(long, env = "COHORT_HTTP_MAX_AGE", default_value_t = 5)]
    pub http_max_age: u64,

    /// Token that allows the Bootstrap RPC. Without one, Bootstrap works only on an empty database.
    #[arg(long, env = "COHORT_BOOTSTRAP_TOKEN")]
    pub bootstrap_token: Option<String>,

    /// This replica's id in propagation records (random when unset).
    #[arg(long, env = "COHORT_REPLICA_ID")]
    pub replica_id: Option<Uuid>,

    /// Keys of Cohort's own services, as `NAME=SHA256` (the hex SHA-256 of the secret, which
    /// this service never sees), comma-separated. Two entries with one name rotate it: both
    /// work until the old one is removed. A key: `cohort_service_` and 64 random hex digits
    /// (`openssl rand -hex 32`); its hash: `printf %s "$KEY" | sha256sum`.
    #[arg(long, env = "COHORT_SERVICE_KEYS", value_delimiter = ',')]
    pub service_keys: Vec<String>,
}

impl ServeSettings {
    /// Checks what clap cannot; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval < Duration::from_millis(100)
            || self.heartbeat_interval > Duration::from_secs(300)
        {
            return Err("--heartbeat-interval must be between 100ms and 5m".into());
        }
        if self.poll_interval < Duration::from_millis(100) {
            return Err("--poll-interval must be at least 100ms".into());
        }
        if self.bootstrap_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err("--bootstrap-token must be at least 16 characters".into());
        }
        crate::auth::ServiceKeys::parse(&self.service_keys)?;
        self.consul.validate()?;
        self.database.validate()
    }
}

impl Cli {
    /// The serve settings (every command connects with them) and the subcommand's own.
    pub fn validate(&self) -> Result<(), String> {
        self.serve.validate()?;
        if let Some(Command::Bootstrap { organization, environment }) = &self.command {
            if organization.trim().is_empty() {
                return Err("--organization must not be empty".into());
            }
            // The environment key rule of the Bootstrap RPC.
            let key_ok = (1..=64).contains(&environment.len())
                && environment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !key_ok {
                return Err("--environment must be 1 to 64 characters of a-z 0-9 - _".into());
            }
        }
        Ok(())
    }
}
