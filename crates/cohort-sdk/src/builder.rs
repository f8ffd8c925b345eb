//! [`ClientBuilder`]: endpoints, timeouts, the cache file, event knobs, and `build()`, which
//! loads the last-known-good config, starts the background tasks and waits for the first
//! config up to the init timeout.
//!
//! `build()` fails only for invalid options, unless `fail_on_rejected_key(true)`: a rejected
//! SDK key otherwise yields a client in state ERROR (serving defaults or the cached config)
//! as soon as the config service says so, without waiting for the init timeout.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_backoff::BackoffPolicy;
use cohort_core::{Definitions, compile};
use cohort_transport::{ClientTls, LoadedTls};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::cache;
use crate::client::{Client, Inner};
use crate::error::SdkError;
use crate::events::{self, EventOptions, GrpcSink, bearer};
use crate::store::{State, Store};
use crate::sync::{InitOutcome, SyncOptions, SyncTask, cache_writer};

/// Sent in Hello so the config service's logs say who connected.
const CLIENT_NAME: &str = concat!("cohort-sdk-rust/", env!("CARGO_PKG_VERSION"));

/// Options for a [`Client`]; start with [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    sdk_key: String,
    config_endpoints: Vec<String>,
    event_endpoints: Vec<String>,
    cache_path: Option<PathBuf>,
    bootstrap: Option<Definitions>,
    init_timeout: Duration,
    connect_timeout: Duration,
    request_timeout: Duration,
    heartbeat_interval: Duration,
    reconnect_backoff: BackoffPolicy,
    events: EventOptions,
    flush_timeout: Duration,
    fail_on_rejected_key: bool,
    tls: ClientTls,
    service_key: Option<String>,
}

impl ClientBuilder {
    pub(crate) fn new(sdk_key: impl Into<String>) -> Self {
        ClientBuilder {
            sdk_key: sdk_key.into(),
            config_endpoints: Vec::new(),
            event_endpoints: Vec::new(),
            cache_path: None,
            bootstrap: None,
            init_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(15),
            reconnect_backoff: BackoffPolicy::default(),
            events: EventOptions::default(),
            flush_timeout: Duration::from_secs(5),
            fail_on_rejected_key: false,
            tls: ClientTls::default(),
            service_key: None,
        }
    }

    /// A config service address, e.g. `http://cohort-config:7000`. Several may be given: each
    /// reconnect goes to the next.
    pub fn config_endpoint(mut self, uri: impl Into<String>) -> Self {
        self.config_endpoints.push(uri.into());
        self
    }

    pub fn config_endpoints<I: IntoIterator<Item = S>, S: Into<String>>(mut self, uris: I) -> Self {
        self.config_endpoints.extend(uris.into_iter().map(Into::into));
        self
    }

    /// An event service address. Without one, no events are recorded.
    pub fn event_endpoint(mut self, uri: impl Into<String>) -> Self {
        self.event_endpoints.push(uri.into());
        self
    }

    /// Where to keep the last-known-good config. Read at start when the config service
    /// cannot be reached; rewritten after each applied version.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_path = Some(path.into());
        self
    }

    /// Definitions to serve until the stream delivers (when no cache file is usable). Without
    /// config endpoints the client is offline and serves only these (state READY).
    pub fn bootstrap(mut self, defs: Definitions) -> Self {
        self.bootstrap = Some(defs);
        self
    }

    /// How long `build()` waits for the first config (default 5 s).
    pub fn init_timeout(mut self, d: Duration) -> Self {
        self.init_timeout = d;
        self
    }

    /// TCP and HTTP/2 connection establishment (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Unary calls and the stream's first answer (default 10 s).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// The heartbeat interval assumed until the server announces its own (default 15 s).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = d;
        self
    }

    /// Reconnect delays (default about 100 ms doubling to 30 s, jittered).
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_backoff = BackoffPolicy { initial, max };
        self
    }

    /// Events per batch (default 500, at most 1000).
    pub fn event_batch_size(mut self, n: usize) -> Self {
        self.events.batch_size = n;
        self
    }

    /// Longest wait before a partial batch is sent (default 1 s).
    pub fn event_flush_interval(mut self, d: Duration) -> Self {
        self.events.flush_interval = d;
        self
    }

    /// Most events held in memory (default 100 000); more are dropped and counted.
    pub fn max_queued_events(mut self, n: usize) -> Self {
        self.events.max_queued_events = n;
        self
    }

    /// Retry delays for undelivered batches (default about 100 ms doubling to 30 s).
    pub fn event_retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.events.retry_backoff = BackoffPolicy { initial, max };
        self
    }

    /// Distinct exposures remembered for deduplication (default 65 536; 8 bytes each).
    pub fn exposure_dedup_capacity(mut self, n: usize) -> Self {
        self.events.exposure_dedup_capacity = n;
        self
    }

    /// Workers delivering event batches side by side (default 2, at most 16): more keep up
    /// with more events per second when each round trip to the event service takes long.
    pub fn event_senders(mut self, n: usize) -> Self {
        self.events.senders = n;
        self
    }

    /// How long `flush()` and `close()` wait for delivery (default 5 s).
    pub fn flush_timeout(mut self, d: Duration) -> Self {
        self.flush_timeout = d;
        self
    }

    /// Make `build()` return [`SdkError::KeyRejected`] when the config service rejects the key
    /// (default false: the client is returned in state ERROR and keeps retrying).
    pub fn fail_on_rejected_key(mut self, yes: bool) -> Self {
        self.fail_on_rejected_key = yes;
        self
    }

    /// TLS for `https://` endpoints: the CA bundle to trust instead of the system's roots, a
    /// client certificate for servers that ask for one, or the name the servers' certificates
    /// are issued for when the endpoints are addresses. The files are read by `build()`.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// For Cohort's evaluation service only: the key is a client-side key (which may not read
    /// the config itself), and the stream is opened under the service's own key as well, on
    /// the client key's behalf. Sent as `cohort-service-authorization` on the config stream.
    pub fn service_key(mut self, secret: impl Into<String>) -> Self {
        self.service_key = Some(secret.into());
        self
    }

    fn validate(&self) -> Result<(), SdkError> {
        let positive = |option: &'static str, d: Duration| {
            if d.is_zero() {
                Err(SdkError::InvalidOption { option, message: "must be more than zero".to_owned() })
            } else {
                Ok(())
            }
        };
        positive("connect_timeout", self.connect_timeout)?;
        positive("request_timeout", self.request_timeout)?;
        positive("heartbeat_interval", self.heartbeat_interval)?;
        positive("event_flush_interval", self.events.flush_interval)?;
        if self.reconnect_backoff.initial > self.reconnect_backoff.max {
            return Err(SdkError::InvalidOption {
                option: "reconnect_backoff",
                message: "initial exceeds max".to_owned(),
            });
        }
        if !(1..=events::MAX_BATCH_SIZE).contains(&self.events.batch_size) {
            return Err(SdkError::InvalidOption {
                option: "event_batch_size",
                message: format!("must be 1 to {}", events::MAX_BATCH_SIZE),
            });
        }
        if self.events.max_queued_events == 0 {
            return Err(SdkError::InvalidOption {
                option: "max_queued_events",
                message: "must be at least 1".into(),
            });
        }
        if !(1..=events::MAX_SENDERS).contains(&self.events.senders) {
            return Err(SdkError::InvalidOption {
                option: "event_senders",
                message: format!("must be 1 to {}", events::MAX_SENDERS),
            });
        }
        Ok(())
    }

    fn endpoint(&self, uri: &str, tls: &LoadedTls) -> Result<Endpoint, SdkError> {
        // HTTP/2 pings (set there) find a dead TCP connection even when heartbeats cannot tell.
        Ok(cohort_transport::endpoint(uri, tls)
            .map_err(|e| SdkError::InvalidEndpoint { endpoint: uri.to_owned(), message: e.to_string() })?
            .connect_timeout(self.connect_timeout))
    }

    /// Builds the client: loads the cache (or bootstrap), starts the stream and event delivery,
    /// and waits for the first config up to the init timeout. Must run inside a tokio runtime.
    pub async fn build(self) -> Result<Client, SdkError> {
        self.validate()?;
        let offline = self.config_endpoints.is_empty();
        if offline && self.bootstrap.is_none() {
            return Err(SdkError::NoConfigSource);
        }
        let authorization = if offline && self.event_endpoints.is_empty() {
            None
        } else {
            Some(bearer(&self.sdk_key).filter(|_| !self.sdk_key.is_empty()).ok_or(SdkError::InvalidKey)?)
        };
        let tls =
            self.tls.load().map_err(|e| SdkError::InvalidOption { option: "tls", message: e.to_string() })?;
        let config_endpoints =
            self.config_endpoints.iter().map(|u| self.endpoint(u, &tls)).collect::<Result<Vec<_>, _>>()?;
        let event_endpoints =
            self.event_endpoints.iter().map(|u| self.endpoint(u, &tls)).collect::<Result<Vec<_>, _>>()?;

        let store = Arc::new(Store::new());
        let fingerprint = cache::key_fingerprint(&self.sdk_key);
        let held = self.initial_config(&store, &fingerprint, offline).await?;

        let sync_cancel = CancellationToken::new();
        let events_cancel = CancellationToken::new();
        let mut tasks = Vec::new();

        let (events, events_task) = match (&authorization, event_endpoints.is_empty()) {
            (Some(auth), false) => {
                let channels: Vec<Channel> = event_endpoints
                    .into_iter()
                    .map(|e| e.timeout(self.request_timeout).connect_lazy())
                    .collect();
                let sink = GrpcSink::new(channels, auth.clone());
                let (handle, worker) = events::start(sink, &self.events, events_cancel.clone());
                (Some(handle), Some(tokio::spawn(worker)))
            }
            _ => (None, None),
        };

        let mut init_rx = None;
        if let (Some(auth), false) = (authorization, offline) {
            let cache_tx = self.cache_path.as_ref().map(|path| {
                let (tx, rx) = watch::channel(None);
                tasks.push(tokio::spawn(cache_writer(
                    path.clone(),
                    fingerprint.clone(),
                    rx,
                    sync_cancel.clone(),
                )));
                tx
            });
            let (init_tx, rx) = oneshot::channel();
            init_rx = Some(rx);
            let service_authorization = match &self.service_key {
                Some(key) => {
                    Some(bearer(key).filter(|_| !key.is_empty()).ok_or(SdkError::InvalidOption {
                        option: "service_key",
                        message: "not a usable key".into(),
                    })?)
                }
                None => None,
            };
            let options = SyncOptions {
                endpoints: config_endpoints,
                authorization: auth,
                service_authorization,
                request_timeout: self.request_timeout,
                heartbeat_interval: self.heartbeat_interval,
                backoff: self.reconnect_backoff,
                client_name: CLIENT_NAME.to_owned(),
            };
            let task = SyncTask::new(store.clone(), options, held, cache_tx, init_tx, sync_cancel.clone());
            tasks.push(tokio::spawn(task.run()));
        }

        let client = Client::from_parts(Inner {
            store,
            events,
            sync_cancel,
            events_cancel,
            tasks: Mutex::new(tasks),
            events_task: Mutex::new(events_task),
            flush_timeout: self.flush_timeout,
        });

        if let Some(rx) = init_rx {
            match tokio::time::timeout(self.init_timeout, rx).await {
                Ok(Ok(InitOutcome::Applied)) => {}
                Ok(Ok(InitOutcome::Rejected(reason))) => {
                    if self.fail_on_rejected_key {
                        return Err(SdkError::KeyRejected(reason));
                    }
                }
                Ok(Err(_)) => {}
                Err(_) => warn!(
                    timeout_ms = self.init_timeout.as_millis() as u64,
                    state = %client.state(),
                    version = client.version(),
                    "no config from the config service within the init timeout; serving what is loaded"
                ),
            }
        }
        Ok(client)
    }

    /// Serves the cache file's config, or the bootstrap definitions; returns the definitions
    /// to resume from.
    async fn initial_config(
        &self,
        store: &Store,
        fingerprint: &str,
        offline: bool,
    ) -> Result<Option<Arc<Definitions>>, SdkError> {
        if let Some(path) = self.cache_path.clone() {
            let fp = fingerprint.to_owned();
            let loaded = tokio::task::spawn_blocking(move || {
                let file = cache::read(&path, &fp)?;
                Ok::<_, cache::CacheError>(file.and_then(|f| match compile(&f.definitions) {
                    Ok(config) => Some((f, config)),
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "cache file does not compile; ignoring it");
                        None
                    }
                }))
            })
            .await;
            match loaded {
                Ok(Ok(Some((file, config)))) => {
                    info!(
                        version = file.version,
                        written_at_ms = file.written_at,
                        "serving the cached config"
                    );
                    store.swap(config, file.version);
                    store.set_state(State::Stale);
                    return Ok(Some(Arc::new(file.definitions)));
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => warn!(error = %e, "ignoring the cache file"),
                Err(e) => warn!(error = %e, "reading the cache file failed"),
            }
        }
        if let Some(defs) = &self.bootstrap {
            let config = compile(defs)?;
            store.swap(config, defs.version);
            store.set_state(if offline { State::Ready } else { State::Stale });
            // Bootstrap definitions are not the server's: never resume a stream from them.
            return Ok(None);
        }
        Ok(None)
    }
}
