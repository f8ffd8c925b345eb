//! The event service's settings, from flags or `COHORT_*` environment variables, and their
//! validation (before any port is bound).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use cohort_runtime::{CommonArgs, DatabaseArgs, parse_duration};

/// Most events in one batch (a protocol limit, not a setting).
pub const MAX_BATCH_EVENTS: usize = 1000;

/// `cohort-events`: accepts exposure and metric events, spools them durably, drains them to
/// PostgreSQL.
#[derive(Debug, Clone, Parser)]
#[command(name = "cohort-events", version, about)]
pub struct Settings {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub consul: cohort_discovery::ConsulArgs,

    /// Address of the gRPC server (EventService, health, reflection).
    #[arg(long, env = "COHORT_GRPC_ADDR", default_value = "0.0.0.0:50053")]
    pub grpc_addr: SocketAddr,

    /// Address of the HTTP JSON server (`POST /api/v1/events/batch`).
    #[arg(long, env = "COHORT_HTTP_ADDR", default_value = "0.0.0.0:8083")]
    pub http_addr: SocketAddr,

    /// Directory of the spool (one per replica, on a persistent volume).
    #[arg(long, env = "COHORT_SPOOL_DIR", default_value = "/var/lib/cohort/spool")]
    pub spool_dir: PathBuf,

    /// Most bytes the spool may hold on disk; past it requests get RESOURCE_EXHAUSTED
    /// (e.g. `2GiB`).
    #[arg(long, env = "COHORT_SPOOL_MAX_BYTES", value_parser = parse_bytes, default_value = "2GiB")]
    pub spool_max_bytes: u64,

    /// Size at which the spool starts a new segment file (e.g. `64MiB`).
    #[arg(long, env = "COHORT_SPOOL_SEGMENT_BYTES", value_parser = parse_bytes, default_value = "64MiB")]
    pub spool_segment_bytes: u64,

    /// How long the spool writer waits for more appends before one write and fsync (`0ms`: it
    /// only groups what queued up during the previous fsync).
    #[arg(long, env = "COHORT_FSYNC_WINDOW", value_parser = parse_duration, default_value = "0ms")]
    pub fsync_window: Duration,

    /// Most events the drainer copies to PostgreSQL in one transaction.
    #[arg(long, env = "COHORT_DRAIN_BATCH_SIZE", default_value_t = 20_000)]
    pub drain_batch_size: usize,

    /// Longest wait between drain retries while PostgreSQL is unreachable.
    #[arg(long, env = "COHORT_DRAIN_MAX_BACKOFF", value_parser = parse_duration, default_value = "5s")]
    pub drain_max_backoff: Duration,

    /// Events per second one environment may send (a token bucket; 0 turns the limit off).
    #[arg(long, env = "COHORT_RATE_LIMIT_PER_ENVIRONMENT", default_value_t = 200_000)]
    pub rate_limit_per_environment: u32,

    /// Events one environment may send at once above its rate (the bucket's size).
    #[arg(long, env = "COHORT_RATE_LIMIT_BURST", default_value_t = 200_000)]
    pub rate_limit_burst: u32,

    /// Largest request body, gRPC message or HTTP JSON (e.g. `4MiB`).
    #[arg(long, env = "COHORT_MAX_REQUEST_BYTES", value_parser = parse_bytes, default_value = "4MiB")]
    pub max_request_bytes: u64,

    /// Most requests served at once over all connections; more are refused (load shedding).
    #[arg(long, env = "COHORT_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,

    /// Batches per second one key may send to this process (0: no limit); beyond it,
    /// RESOURCE_EXHAUSTED (HTTP 429) with a retry hint, and the SDK retries.
    #[arg(long, env = "COHORT_KEY_RATE_LIMIT", default_value_t = 2_000)]
    pub key_rate_limit: u32,

    /// Batches one key may send at once above its rate.
    #[arg(long, env = "COHORT_KEY_RATE_BURST", default_value_t = 4_000)]
    pub key_rate_burst: u32,

    /// Longest a request may take, spool fsync included.
    #[arg(long, env = "COHORT_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub request_timeout: Duration,

    /// How long a verified API key is trusted before it is checked again.
    #[arg(long, env = "COHORT_KEY_CACHE_TTL", value_parser = parse_duration, default_value = "5s")]
    pub key_cache_ttl: Duration,

    /// How long a verified API key stays usable while the config service cannot answer, also
    /// across restarts: verified keys are recorded (as SHA-256 hashes) in the spool directory.
    #[arg(long, env = "COHORT_VERIFIED_KEY_MAX_AGE", value_parser = parse_duration, default_value = "24h")]
    pub verified_key_max_age: Duration,

    /// The config service, which verifies SDK keys (`InternalService.VerifyKey`).
    #[arg(long, env = "COHORT_CONFIG_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    pub config_endpoint: String,

    /// This service's key for the config service (`cohort_service_…`); the config service
    /// knows its SHA-256 (`--service-keys`).
    #[arg(long, env = "COHORT_SERVICE_KEY", hide_env_values = true, default_value = "")]
    pub service_key: String,

    /// How long events are kept: whole day partitions that ended longer ago are dropped,
    /// except days a running experiment still reads (`90d`, `2160h`; `off` or `0` keeps
    /// everything).
    #[arg(long, env = "COHORT_EVENTS_RETENTION", value_parser = parse_retention, default_value = "90d")]
    pub retention: Duration,

    /// How often expired partitions are looked for (also once at start-up).
    #[arg(long, env = "COHORT_EVENTS_RETENTION_INTERVAL", value_parser = parse_duration, default_value = "1h")]
    pub retention_interval: Duration,

    /// Apply pending database migrations at start-up.
    #[arg(long, env = "COHORT_MIGRATE")]
    pub migrate: bool,
}

impl Settings {
    /// Checks what clap cannot; the error is one line for `usage_error`.
    pub fn validate(&self) -> Result<(), String> {
        self.consul.validate()?;
        self.database.validate()?;
        if self.spool_dir.as_os_str().is_empty() {
            return Err("--spool-dir must not be empty".to_owned());
        }
        if self.spool_dir.exists() && !self.spool_dir.is_dir() {
            return Err(format!("--spool-dir {} is not a directory", self.spool_dir.display()));
        }
        const MIB: u64 = 1 << 20;
        if self.spool_segment_bytes < MIB {
            return Err(format!(
                "--spool-segment-bytes must be at least 1MiB, got {}",
                self.spool_segment_bytes
            ));
        }
        if self.spool_max_bytes < 2 * self.spool_segment_bytes {
            return Err(format!(
                "--spool-max-bytes ({}) must be at least twice --spool-segment-bytes ({})",
                self.spool_max_bytes, self.spool_segment_bytes
            ));
        }
        if self.max_request_bytes < 1024 || self.max_request_bytes > 64 * MIB {
            return Err(format!("--max-request-bytes must be 1KiB to 64MiB, got {}", self.max_request_bytes));
        }
        if self.fsync_window > Duration::from_millis(100) {
            return Err(format!("--fsync-window must be at most 100ms, got {:?}", self.fsync_window));
        }
        if !(1..=1_000_000).contains(&self.drain_batch_size) {
            return Err(format!("--drain-batch-size must be 1 to 1000000, got {}", self.drain_batch_size));
        }
        if self.drain_max_backoff < Duration::from_millis(100) {
            return Err("--drain-max-backoff must be at least 100ms".to_owned());
        }
        if self.rate_limit_per_environment > 0 && (self.rate_limit_burst as usize) < MAX_BATCH_EVENTS {
            return Err(format!(
                "--rate-limit-burst must be at least {MAX_BATCH_EVENTS} (one full batch), got {}",
                self.rate_limit_burst
            ));
        }
        if self.max_in_flight == 0 {
            return Err("--max-in-flight must be at least 1".to_owned());
        }
        if self.request_timeout < Duration::from_millis(100) {
            return Err("--request-timeout must be at least 100ms".to_owned());
        }
        if self.key_cache_ttl.is_zero() {
            return Err("--key-cache-ttl must be more than 0".to_owned());
        }
        if self.verified_key_max_age < Duration::from_secs(1) {
            return Err("--verified-key-max-age must be at least 1s".to_owned());
        }
        // Events up to a week old are accepted: a shorter retention would drop them as they
        // arrive.
        if !self.retention.is_zero() && self.retention < MIN_RETENTION {
            return Err(format!("--retention must be off or at least 8d, got {:?}", self.retention));
        }
        if self.retention_interval < Duration::from_secs(1) {
            return Err("--retention-interval must be at least 1s".to_owned());
        }
        // Last, so a setting wrong above is named even when these are not given.
        if cohort_db::keys::claimed_kind(&self.service_key) != Some(cohort_db::keys::KeyKind::Service) {
            return Err("--service-key must be a service key (cohort_service_…)".to_owned());
        }
        let endpoint = &self.config_endpoint;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            || tonic::transport::Endpoint::from_shared(endpoint.clone()).is_err()
        {
            return Err(format!("--config-endpoint must be an http:// or https:// URL, got {endpoint:?}"));
        }
        Ok(())
    }
}

/// Shortest retention: the oldest accepted event (7 days) plus its day.
pub const MIN_RETENTION: Duration = Duration::from_secs(8 * 86_400);

/// Parses a retention: `off` or `0` (zero: keep everything), whole days (`90d`), or a duration
/// of the runtime's parser (`2160h`).
pub fn parse_retention(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(Duration::ZERO);
    }
    match text.strip_suffix('d') {
        Some(days) => {
            let days: u64 = days.parse().map_err(|_| format!("{text:?} is not a number of days like 90d"))?;
            // In hours, so the runtime's parser applies its limits.
            parse_duration(&format!("{}h", days.saturating_mul(24)))
        }
        None => parse_duration(text),
    }
}

/// Parses a size with the `bytesize` crate: `4096`, `64KiB`, `64MiB`, `2GiB`, `1.5GiB`; `KB`,
/// `MB`, `GB` are powers of 1000, units are case-insensitive and may follow a space.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let size: bytesize::ByteSize =
        text.parse().map_err(|e| format!("{text:?} is not a size like 4096, 64MiB or 2GiB: {e}"))?;
    // bytesize saturates instead of failing on overflow.
    if size.as_u64() == u64::MAX {
        return Err(format!("{text:?} is too large"));
    }
    Ok(size.as_u64())
}

#[cfg(test)]
mod tests;
