//! Environments: one SDK client per SDK key, built on first use and shared by every request
//! presenting that key, closed when idle, bounded in number.
//!
//! - The map is keyed by the SHA-256 of the key (the key itself is never stored here nor
//!   logged; logs name an environment by the first 8 hex digits of that hash). It is split
//!   into shards, each an `RwLock<HashMap>` taken for reading on the hot path and released
//!   before any await.
//! - A client is built in a background task (so a request that gives up does not cancel it);
//!   requests wait for it, and for its first config, up to the init timeout.
//! - A key the config service rejects is remembered for [`REJECTED_TTL`], so a flood of bad
//!   keys answers UNAUTHENTICATED without reconnecting each time. So is a key revoked while
//!   its client is live: the config service ends the client's stream, the SDK marks the key
//!   rejected ([`cohort_sdk::Status::key_rejected`]), and the environment's watcher closes the
//!   client at once; requests answer UNAUTHENTICATED from then on.
//! - A reaper closes clients idle for the idle timeout; inserting beyond the maximum closes
//!   the least recently used one. Closing delivers queued exposures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use cohort_sdk::{Client, SdkError};
use foldhash::fast::RandomState;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::discovery::Endpoints;
use crate::error::ServiceError;
use crate::metrics::OutcomeLabels;

/// How long a rejected key answers UNAUTHENTICATED from memory.
pub const REJECTED_TTL: Duration = Duration::from_secs(5);
/// The retry hint of an environment that is not ready yet.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest SDK key accepted (real keys are about 80 bytes).
const MAX_KEY_BYTES: usize = 512;
/// A power of two; the first byte of the key hash picks the shard.
const SHARDS: usize = 16;

/// The SHA-256 of an SDK key: the map key, and (abbreviated) the name in logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 32]);

impl KeyId {
    pub fn of(sdk_key: &str) -> KeyId {
        KeyId(Sha256::digest(sdk_key.as_bytes()).into())
    }

    /// The SHA-256 of the key, as the config service knows it.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 8 hex digits: enough to tell environments apart in logs, useless to an attacker.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    fn shard(&self) -> usize {
        usize::from(self.0[0]) & (SHARDS - 1)
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({})", self.short())
    }
}

/// How SDK clients are built.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub config: Endpoints,
    pub events: Endpoints,
    /// How long a request waits for an environment's first config.
    pub init_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_environments: usize,
    /// Per environment: see the settings of the same names.
    pub exposure_dedup_capacity: usize,
    pub max_queued_events: usize,
    pub event_senders: usize,
    /// For `https://` endpoints (checked at start-up; each client reads the files again).
    pub tls: cohort_sdk::ClientTls,
    /// This service's own key: client-side keys' config streams are opened under it. Without
    /// it, client-side keys are refused.
    pub service_key: Option<String>,
}

/// Environment counters, registered by [`crate::metrics::Metrics`].
#[derive(Debug, Clone)]
pub struct EnvMetrics {
    pub live: Gauge,
    /// Client builds by outcome: ready, not_ready (no config within the init timeout), rejected.
    pub builds: Family<OutcomeLabels, Counter>,
    /// Clients closed by reason: idle, evicted, rejected (the key was revoked), shutdown.
    pub closed: Family<OutcomeLabels, Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Building,
    Built,
    Rejected(Arc<str>),
}

/// One environment as seen through one SDK key.
#[derive(Debug)]
struct Env {
    id: KeyId,
    client: OnceLock<Client>,
    phase: watch::Sender<Phase>,
    /// Milliseconds since the registry started.
    last_used_ms: AtomicU64,
    /// Set when removed from the map: a client built afterwards is closed at once.
    removed: AtomicBool,
    /// Whether the built client is counted in the live gauge (whoever clears it uncounts it).
    counted: AtomicBool,
    /// The built client's key was rejected (revoked): it is closed, requests answer
    /// UNAUTHENTICATED until the environment is forgotten.
    rejected: AtomicBool,
    /// Fired when removed from the map; ends the client's rejection watch.
    gone: CancellationToken,
    /// Whoever sets this closes the built client (a retire, a late build, or the rejection).
    closed: AtomicBool,
}

type Shard = RwLock<HashMap<KeyId, Arc<Env>, RandomState>>;

/// Every environment in use; cheap to clone.
#[derive(Debug, Clone)]
pub struct Environments {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shards: Box<[Shard]>,
    len: AtomicUsize,
    options: ClientOptions,
    metrics: EnvMetrics,
    started: Instant,
    /// Builds and closes in flight, awaited at shutdown.
    tasks: TaskTracker,
    /// Fired by [`Environments::close_all`]: no new environments, no lingering rejections.
    stop: CancellationToken,
}

impl Environments {
    pub fn new(options: ClientOptions, metrics: EnvMetrics) -> Self {
        Environments {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
                len: AtomicUsize::new(0),
                options,
                metrics,
                started: Instant::now(),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// Environments held now (building, built, or remembered as rejected).
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client for the key in an `authorization` value (`Bearer <sdk key>`), with a config
    /// loaded: built on first use, waited for up to the init timeout.
    pub async fn client(&self, authorization: Option<&str>) -> Result<Client, ServiceError> {
        let key = bearer(authorization)?;
        if is_client_key(key) && self.inner.options.service_key.is_none() {
            return Err(ServiceError::PermissionDenied(
                "this evaluation service takes no client-side keys: it was started without --service-key"
                    .into(),
            ));
        }
        let env = self.entry(key)?;
        if env.rejected.load(Ordering::Acquire) {
            return Err(key_rejected(&env));
        }
        let now = self.inner.now_ms();
        if env.last_used_ms.load(Ordering::Relaxed) != now {
            env.last_used_ms.store(now, Ordering::Relaxed);
        }
        let deadline = tokio::time::Instant::now() + self.inner.options.init_timeout;
        let client = match env.client.get() {
            Some(c) => c,
            None => self.wait_built(&env, deadline).await?,
        };
        if client.config().is_loaded() {
            return Ok(client.clone());
        }
        wait_loaded(&env, client, deadline).await?;
        Ok(client.clone())
    }

    /// The environment for `key`, inserted (and its client build started) when new.
    fn entry(&self, key: &str) -> Result<Arc<Env>, ServiceError> {
        let id = KeyId::of(key);
        let shard = &self.inner.shards[id.shard()];
        if let Some(env) = shard.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(env.clone());
        }
        if self.inner.stop.is_cancelled() {
            return Err(ServiceError::ResourceExhausted("the service is shutting down".into()));
        }
        let (env, inserted) = {
            let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
            match map.get(&id) {
                Some(env) => (env.clone(), false),
                None => {
                    let env = Arc::new(Env {
                        id,
                        client: OnceLock::new(),
                        phase: watch::Sender::new(Phase::Building),
                        last_used_ms: AtomicU64::new(self.inner.now_ms()),
                        removed: AtomicBool::new(false),
                        counted: AtomicBool::new(false),
                        rejected: AtomicBool::new(false),
                        gone: CancellationToken::new(),
                        closed: AtomicBool::new(false),
                    });
                    map.insert(id, env.clone());
                    (env, true)
                }
            }
        };
        if inserted {
            let live = self.inner.len.fetch_add(1, Ordering::Relaxed) + 1;
            if live > self.inner.options.max_environments {
                self.evict_least_recent(&id);
            }
            let this = self.clone();
            let (key, env2) = (key.to_owned(), env.clone());
            self.inner.tasks.spawn(async move { this.build(key, env2).await });
        }
        Ok(env)
    }

    async fn wait_built<'e>(
        &self,
        env: &'e Env,
        deadline: tokio::time::Instant,
    ) -> Result<&'e Client, ServiceError> {
        let mut rx = env.phase.subscribe();
        let waited = tokio::time::timeout_at(deadline, rx.wait_for(|p| *p != Phase::Building)).await;
        let phase = match waited {
            Ok(Ok(phase)) => phase.clone(),
            // The sender lives in `env`, which we hold: it cannot close.
            Ok(Err(_)) | Err(_) => return Err(not_ready()),
        };
        match phase {
            Phase::Rejected(reason) => {
                Err(ServiceError::Unauthenticated(format!("sdk key rejected: {reason}")))
            }
            _ => env.client.get().ok_or_else(not_ready),
        }
    }

    /// Builds the client, then publishes it (or the rejection), then watches it for a
    /// rejection of its key for as long as it is in use.
    async fn build(self, key: String, env: Arc<Env>) {
        let o = &self.inner.options;
        let config = o.config.resolve().await;
        let events = o.events.resolve().await;
        let started = Instant::now();
        let service_key = o.service_key.clone().filter(|_| is_client_key(&key));
        let mut builder =
            events.iter().fold(Client::builder(key).config_endpoints(config.iter().cloned()), |b, uri| {
                b.event_endpoint(uri.clone())
            });
        if let Some(service_key) = service_key {
            builder = builder.service_key(service_key);
        }
        let built = builder
            .init_timeout(o.init_timeout)
            .fail_on_rejected_key(true)
            .exposure_dedup_capacity(o.exposure_dedup_capacity)
            .max_queued_events(o.max_queued_events)
            .event_senders(o.event_senders)
            .tls(o.tls.clone())
            .build()
            .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match built {
            Ok(client) => {
                let loaded = client.config().is_loaded();
                let outcome = if loaded { "ready" } else { "not_ready" };
                self.inner.metrics.builds.get_or_create(&OutcomeLabels { outcome }).inc();
                info!(env = %env.id.short(), version = client.version(), elapsed_ms, loaded, "environment client built");
                let _ = env.client.set(client);
                env.counted.store(true, Ordering::SeqCst);
                self.inner.metrics.live.inc();
                env.phase.send_replace(Phase::Built);
                if env.removed.load(Ordering::SeqCst)
                    && let Some(c) = env.client.get()
                    && !env.closed.swap(true, Ordering::SeqCst)
                {
                    if env.counted.swap(false, Ordering::SeqCst) {
                        self.inner.metrics.live.dec();
                    }
                    close(env.id, c.clone(), "evicted").await;
                } else if let Some(c) = env.client.get() {
                    self.watch_rejection(&env, c.clone()).await;
                }
            }
            Err(e) => {
                self.inner.metrics.builds.get_or_create(&OutcomeLabels { outcome: "rejected" }).inc();
                let reason: Arc<str> = match &e {
                    SdkError::KeyRejected(m) => m.as_str().into(),
                    other => other.to_string().into(),
                };
                debug!(env = %env.id.short(), error = %e, "sdk key rejected");
                env.phase.send_replace(Phase::Rejected(reason));
                self.forget_later(&env).await;
            }
        }
    }

    /// Waits until the config service rejects the client's key (it was revoked), then answers
    /// UNAUTHENTICATED for it and closes the client. Returns when the environment is removed
    /// or the service stops first.
    async fn watch_rejection(&self, env: &Arc<Env>, client: Client) {
        let mut status = client.subscribe();
        tokio::select! {
            _ = self.inner.stop.cancelled() => return,
            _ = env.gone.cancelled() => return,
            rejected = status.wait_for(|s| s.key_rejected) => if rejected.is_err() { return },
        }
        let reason: Arc<str> = client.last_error().unwrap_or_else(|| "sdk key rejected".into()).into();
        env.phase.send_replace(Phase::Rejected(reason));
        env.rejected.store(true, Ordering::Release);
        // A retire that raced this closes the client.
        if env.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        warn!(env = %env.id.short(), "sdk key rejected while in use; closing its client");
        if env.counted.swap(false, Ordering::SeqCst) {
            self.inner.metrics.live.dec();
        }
        self.inner.metrics.closed.get_or_create(&OutcomeLabels { outcome: "rejected" }).inc();
        close(env.id, client, "rejected").await;
        self.forget_later(env).await;
    }

    /// Remembers a rejection for a while, then forgets it: the key may be created later.
    async fn forget_later(&self, env: &Arc<Env>) {
        tokio::select! {
            _ = self.inner.stop.cancelled() => {}
            _ = tokio::time::sleep(REJECTED_TTL) => {}
        }
        self.remove(env);
    }

    /// Takes `env` out of the map if it is still there; true if this call removed it.
    fn remove(&self, env: &Arc<Env>) -> bool {
        let shard = &self.inner.shards[env.id.shard()];
        let removed = {
            let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
            match map.get(&env.id) {
                Some(e) if Arc::ptr_eq(e, env) => map.remove(&env.id).is_some(),
                _ => false,
            }
        };
        if removed {
            env.removed.store(true, Ordering::SeqCst);
            env.gone.cancel();
            self.inner.len.fetch_sub(1, Ordering::Relaxed);
            if env.counted.swap(false, Ordering::SeqCst) {
                self.inner.metrics.live.dec();
            }
        }
        removed
    }

    /// Removes `env` and closes its client in the background.
    fn retire(&self, env: &Arc<Env>, reason: &'static str) {
        if !self.remove(env) {
            return;
        }
        let client = env.client.get().cloned();
        // Closed already when its key was rejected; a build still running closes it itself.
        if client.is_some() && env.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.metrics.closed.get_or_create(&OutcomeLabels { outcome: reason }).inc();
        if let Some(client) = client {
            self.inner.tasks.spawn(close(env.id, client, reason));
        }
    }

    /// Over the maximum: forgets a remembered rejection if there is one (they serve nobody),
    /// else closes the least recently used environment other than `keep`.
    fn evict_least_recent(&self, keep: &KeyId) {
        let mut oldest: Option<Arc<Env>> = None;
        // Rejections sort before everything, then by last use.
        let rank = |e: &Env| {
            let rejected = matches!(*e.phase.borrow(), Phase::Rejected(_));
            (!rejected, e.last_used_ms.load(Ordering::Relaxed))
        };
        for shard in self.inner.shards.iter() {
            for env in shard.read().unwrap_or_else(|p| p.into_inner()).values() {
                if env.id == *keep {
                    continue;
                }
                if oldest.as_ref().is_none_or(|o| rank(env) < rank(o)) {
                    oldest = Some(env.clone());
                }
            }
        }
        if let Some(env) = oldest {
            warn!(env = %env.id.short(), max = self.inner.options.max_environments, "too many environments; closing the least recently used");
            self.retire(&env, "evicted");
        }
    }

    /// Closes every environment unused for the idle timeout; returns how many.
    pub fn reap_idle(&self) -> usize {
        let now = self.inner.now_ms();
        let idle_ms = self.inner.options.idle_timeout.as_millis() as u64;
        let mut idle = Vec::new();
        for shard in self.inner.shards.iter() {
            let map = shard.read().unwrap_or_else(|p| p.into_inner());
            idle.extend(
                map.values()
                    .filter(|e| *e.phase.borrow() == Phase::Built)
                    .filter(|e| now.saturating_sub(e.last_used_ms.load(Ordering::Relaxed)) >= idle_ms)
                    .cloned(),
            );
        }
        for env in &idle {
            info!(env = %env.id.short(), idle_ms, "closing an idle environment");
            self.retire(env, "idle");
        }
        idle.len()
    }

    /// Runs the idle reaper until `stop`.
    pub async fn reap_until(self, stop: CancellationToken) {
        let tick =
            (self.inner.options.idle_timeout / 4).clamp(Duration::from_millis(25), Duration::from_secs(30));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = interval.tick() => { self.reap_idle(); }
            }
        }
    }

    /// Stops taking new environments, waits for builds in progress, then closes every client
    /// (delivering queued exposures) concurrently.
    pub async fn close_all(&self) {
        self.inner.stop.cancel();
        let mut all = Vec::new();
        for shard in self.inner.shards.iter() {
            all.extend(shard.read().unwrap_or_else(|p| p.into_inner()).values().cloned());
        }
        let n = all.len();
        for env in &all {
            self.retire(env, "shutdown");
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        // Builds that finished after the sweep were removed already and closed themselves.
        info!(environments = n, "every environment client closed");
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

async fn close(id: KeyId, client: Client, reason: &'static str) {
    let stats = client.stats();
    match client.close().await {
        Ok(()) => {
            debug!(env = %id.short(), reason, events_sent = stats.events_sent, "environment client closed")
        }
        Err(e) => {
            warn!(env = %id.short(), reason, error = %e, "environment client closed with events undelivered")
        }
    }
}

/// UNAUTHENTICATED for an environment whose key the config service rejected.
fn key_rejected(env: &Env) -> ServiceError {
    match &*env.phase.borrow() {
        Phase::Rejected(reason) => ServiceError::Unauthenticated(format!("sdk key rejected: {reason}")),
        _ => ServiceError::Unauthenticated("sdk key rejected".into()),
    }
}

/// Waits until the client has a config, or says why not.
async fn wait_loaded(env: &Env, client: &Client, deadline: tokio::time::Instant) -> Result<(), ServiceError> {
    let rejected = || ServiceError::Unauthenticated("sdk key rejected".into());
    let mut rx = client.subscribe();
    if rx.borrow().key_rejected {
        return Err(rejected());
    }
    let waited = tokio::time::timeout_at(deadline, rx.wait_for(|s| s.version > 0 || s.key_rejected)).await;
    if client.status().key_rejected {
        return Err(rejected());
    }
    match waited {
        Ok(Ok(_)) if client.config().is_loaded() => Ok(()),
        _ => {
            debug!(env = %env.id.short(), state = %client.state(), "environment has no config yet");
            Err(not_ready())
        }
    }
}

fn not_ready() -> ServiceError {
    ServiceError::Unavailable {
        message: "the environment's config is not loaded yet; retry shortly".into(),
        retry_after: RETRY_AFTER,
    }
}

/// Whether a key is client-side (browsers, mobile apps), by its visible prefix: it evaluates
/// here, and its answers leave out what only the definitions' authors need.
pub fn is_client_key(key: &str) -> bool {
    key.starts_with("cohort_client_")
}

/// The SDK or client key of `Bearer <key>` (the scheme in any case).
pub fn bearer(authorization: Option<&str>) -> Result<&str, ServiceError> {
    let missing = || ServiceError::Unauthenticated("send `authorization: Bearer <sdk or client key>`".into());
    let key = authorization.and_then(cohort_runtime::bearer).ok_or_else(missing)?;
    if key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::Unauthenticated("malformed sdk key".into()));
    }
    // A key's kind is its visible prefix: admin and service keys are refused for what they
    // are, without asking the config service.
    if key.starts_with("cohort_admin_") || key.starts_with("cohort_service_") {
        return Err(ServiceError::PermissionDenied(
            "the evaluation service takes SDK and client keys".into(),
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
