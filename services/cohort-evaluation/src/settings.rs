//! The evaluation service's settings: flags or `COHORT_*` environment variables, validated
//! before any port is bound.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use cohort_discovery::ConsulArgs;
use cohort_runtime::{CommonArgs, parse_duration};

/// Longest environment warm-up a request may wait for; longer would hold requests hostage.
const MAX_INIT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Parser)]
#[command(name = "cohort-evaluation", version, about = "Cohort's evaluation service")]
pub struct Settings {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub consul: ConsulArgs,

    /// gRPC listen address (`cohort.evaluation.v1.EvaluationService`).
    #[arg(long, env = "COHORT_GRPC_ADDR", default_value = "0.0.0.0:50052")]
    pub grpc_addr: SocketAddr,

    /// HTTP JSON listen address (`POST /api/v1/evaluate`).
    #[arg(long, env = "COHORT_HTTP_ADDR", default_value = "0.0.0.0:8082")]
    pub http_addr: SocketAddr,

    /// Config service endpoints, comma-separated (used when Consul is not configured).
    #[arg(
        long,
        env = "COHORT_CONFIG_ENDPOINT",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50051"
    )]
    pub config_endpoint: Vec<String>,

    /// Event service endpoints for exposures, comma-separated (used when Consul is not
    /// configured).
    #[arg(
        long,
        env = "COHORT_EVENTS_ENDPOINT",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50053"
    )]
    pub events_endpoint: Vec<String>,

    /// Close an environment's SDK client after no request used its key for this long.
    #[arg(long, env = "COHORT_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "10m")]
    pub idle_timeout: Duration,

    /// Exposures remembered per environment for deduplication (8 bytes each): size it to the
    /// (unit, experiment) pairs seen in a few minutes, or repeat visits are recorded again.
    #[arg(long, env = "COHORT_EXPOSURE_DEDUP_CAPACITY", default_value_t = 1 << 18)]
    pub exposure_dedup_capacity: usize,

    /// Exposures held in memory per environment before new ones are dropped and counted.
    #[arg(long, env = "COHORT_MAX_QUEUED_EVENTS", default_value_t = 200_000)]
    pub max_queued_events: usize,

    /// Batches each environment delivers to the event service side by side (1 to 16).
    #[arg(long, env = "COHORT_EVENT_SENDERS", default_value_t = 4)]
    pub event_senders: usize,

    /// Most environments (SDK clients) held at once; beyond it the least recently used closes.
    #[arg(long, env = "COHORT_MAX_ENVIRONMENTS", default_value_t = 1000)]
    pub max_environments: usize,

    /// How long a request waits for its environment's first config before UNAVAILABLE.
    #[arg(long, env = "COHORT_INIT_TIMEOUT", value_parser = parse_duration, default_value = "2s")]
    pub init_timeout: Duration,

    /// Deadline of one request inside the service (environment warm-up included).
    #[arg(long, env = "COHORT_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub request_timeout: Duration,

    /// Requests in progress at once, over all connections; beyond it requests are shed.
    #[arg(long, env = "COHORT_MAX_CONCURRENT_REQUESTS", default_value_t = 10_000)]
    pub max_concurrent_requests: usize,

    /// Requests per second one key may make in this process (0: no limit); beyond it,
    /// RESOURCE_EXHAUSTED (HTTP 429) with a retry hint.
    #[arg(long, env = "COHORT_KEY_RATE_LIMIT", default_value_t = 20_000)]
    pub key_rate_limit: u32,

    /// Requests one key may make at once above its rate.
    #[arg(long, env = "COHORT_KEY_RATE_BURST", default_value_t = 40_000)]
    pub key_rate_burst: u32,

    /// Most keys one request may name.
    #[arg(long, env = "COHORT_MAX_KEYS", default_value_t = 1000)]
    pub max_keys: usize,

    /// Most contexts one EvaluateBatch may carry.
    #[arg(long, env = "COHORT_MAX_BATCH_CONTEXTS", default_value_t = 100)]
    pub max_batch_contexts: usize,

    /// This service's own key (`cohort_service_…`, its SHA-256 listed in the config service's
    /// `--service-keys`). With it the service answers client-side keys (their config streams
    /// are opened under it) and browsers (it reads each environment's allowed origins);
    /// without it, both are refused.
    #[arg(long, env = "COHORT_SERVICE_KEY", hide_env_values = true)]
    pub service_key: Option<String>,

    /// SDK or client keys that flagd calls (`flagd.evaluation.v1`/`v2`) without an
    /// `authorization` evaluate as, for flagd providers that cannot send metadata: `KEY` for
    /// every such call, `SELECTOR=KEY` for those whose `flagd-selector` header (the providers'
    /// `selector` option) is SELECTOR, so one listener serves several environments. Anyone who
    /// reaches the gRPC port then evaluates as these keys (a client key shows them no ids);
    /// without a binding, such calls are UNAUTHENTICATED. Repeat it, or separate with commas.
    #[arg(
        long = "flagd-environment-key",
        env = "COHORT_FLAGD_ENVIRONMENT_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub flagd_environment_keys: Vec<String>,

    /// Largest `max-age` (seconds) a caller may ask for with `?cache=N`.
    #[arg(long, env = "COHORT_HTTP_MAX_CACHE", default_value_t = 300)]
    pub http_max_cache: u64,
}

impl Settings {
    /// Checks what clap cannot; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        self.consul.validate()?;
        let uris = |name: &str, list: &[String]| -> Result<(), String> {
            if list.is_empty() {
                return Err(format!("{name} needs at least one endpoint"));
            }
            for uri in list {
                let parsed: http::Uri = uri.parse().map_err(|e| format!("{name} {uri:?}: {e}"))?;
                if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
                    return Err(format!("{name} {uri:?} must look like http://host:port"));
                }
            }
            Ok(())
        };
        uris("--config-endpoint", &self.config_endpoint)?;
        uris("--events-endpoint", &self.events_endpoint)?;
        if self.idle_timeout < Duration::from_millis(100) {
            return Err("--idle-timeout must be at least 100ms".into());
        }
        if self.max_environments == 0 {
            return Err("--max-environments must be at least 1".into());
        }
        if self.init_timeout.is_zero() || self.init_timeout > MAX_INIT_TIMEOUT {
            return Err("--init-timeout must be between 1ms and 30s".into());
        }
        if self.request_timeout <= self.init_timeout {
            return Err("--request-timeout must be longer than --init-timeout".into());
        }
        if self.max_concurrent_requests == 0 {
            return Err("--max-concurrent-requests must be at least 1".into());
        }
        if !(1..=1 << 26).contains(&self.exposure_dedup_capacity) {
            return Err("--exposure-dedup-capacity must be 1 to 67108864".into());
        }
        if self.max_queued_events == 0 {
            return Err("--max-queued-events must be at least 1".into());
        }
        if !(1..=cohort_sdk::MAX_EVENT_SENDERS).contains(&self.event_senders) {
            return Err(format!("--event-senders must be 1 to {}", cohort_sdk::MAX_EVENT_SENDERS));
        }
        if self.max_keys == 0 || self.max_batch_contexts == 0 {
            return Err("--max-keys and --max-batch-contexts must be at least 1".into());
        }
        if let Some(key) = &self.service_key {
            let random = key.strip_prefix("cohort_service_").unwrap_or_default();
            if random.len() != 64 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("--service-key must be a service key (cohort_service_ and 64 hex digits)".into());
            }
        }
        let mut selectors = std::collections::HashSet::new();
        for binding in &self.flagd_environment_keys {
            let (selector, key) = flagd_binding(binding);
            let random = key.strip_prefix("cohort_sdk_").or_else(|| key.strip_prefix("cohort_client_"));
            if !random.is_some_and(|r| r.len() == 64 && r.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Err("--flagd-environment-key must be an SDK or client key (cohort_sdk_ or cohort_client_ and 64 hex digits), optionally after SELECTOR=".into());
            }
            if key.starts_with("cohort_client_") && self.service_key.is_none() {
                return Err("--flagd-environment-key is a client key, which needs --service-key".into());
            }
            if selector == Some("") {
                return Err("--flagd-environment-key: an empty selector before '='".into());
            }
            if !selectors.insert(selector) {
                let which =
                    selector.map_or("without a selector".to_owned(), |s| format!("for selector {s:?}"));
                return Err(format!("--flagd-environment-key: two keys {which}"));
            }
        }
        Ok(())
    }
}

/// A `--flagd-environment-key` entry as (selector, key): `SELECTOR=KEY` or `KEY` (keys hold no
/// `=`).
pub fn flagd_binding(entry: &str) -> (Option<&str>, &str) {
    match entry.split_once('=') {
        Some((selector, key)) => (Some(selector.trim()), key.trim()),
        None => (None, entry.trim()),
    }
}
