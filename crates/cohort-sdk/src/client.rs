//! The [`Client`]: local evaluation over the served config, events, state and stats.
//!
//! Every evaluation loads the current config from an `ArcSwap` (never waiting for the sync
//! task), evaluates with cohort-core and, for an enrolled experiment decision or one in a
//! holdout's scope, offers exposures to the event queue (a dedup check, and for a first
//! sighting a non-blocking push).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cohort_core::{
    CompiledConfig, Context, Decision, Definitions, ErrorCode, Reason, compile, evaluate, evaluate_all,
    evaluate_all_at, evaluate_at,
};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::builder::ClientBuilder;
use crate::decision::{Assignment, Details, Evaluation};
use crate::error::{SdkError, TrackError};
use crate::events::{EventHandle, EventQueue, MetricEvent};
use crate::store::{Loaded, State, Status, Store};

/// A handle on one environment's config. Cheap to clone; every clone shares the config, the
/// stream and the event queue. Dropping the last clone stops the background tasks (without
/// delivering queued events: call [`Client::close`] for that).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Arc<Store>,
    pub(crate) events: Option<EventHandle>,
    /// Stops the sync task and the cache writer.
    pub(crate) sync_cancel: CancellationToken,
    /// Stops the event worker.
    pub(crate) events_cancel: CancellationToken,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) events_task: Mutex<Option<JoinHandle<()>>>,
    pub(crate) flush_timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.sync_cancel.cancel();
        self.events_cancel.cancel();
    }
}

/// Counters and state, for dashboards and health checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub state: State,
    /// The served config's version (0 when none).
    pub config_version: u64,
    /// When the config was last known to be the server's (a config applied or a heartbeat
    /// confirming the version).
    pub last_sync: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Events in memory (queued, batched or in flight).
    pub events_queued: usize,
    /// Events the event service stored.
    pub events_sent: u64,
    /// Events dropped because the queue was full or the client closed.
    pub events_dropped: u64,
    /// Events the event service refused.
    pub events_rejected: u64,
    /// Events still undelivered when delivery stopped.
    pub events_abandoned: u64,
    /// Exposures recorded (after deduplication).
    pub exposures_recorded: u64,
}

/// A loaded config held for zero-copy evaluation; get one with [`Client::config`].
///
/// Decisions borrow from the guard. Hold it for one request at most: a held guard keeps its
/// config alive after a newer one is swapped in.
#[derive(Debug)]
pub struct ConfigGuard<'c> {
    loaded: arc_swap::Guard<Arc<Loaded>>,
    events: Option<&'c EventQueue>,
}

impl<'c> ConfigGuard<'c> {
    /// The version of this config (0 when none is loaded).
    pub fn version(&self) -> u64 {
        self.loaded.version
    }

    /// Whether a config is loaded; when not, every evaluation is PROVIDER_NOT_READY.
    pub fn is_loaded(&self) -> bool {
        self.loaded.present
    }

    /// The compiled config itself.
    pub fn compiled(&self) -> &CompiledConfig {
        &self.loaded.config
    }

    /// Evaluates `key`, recording an exposure when the unit is enrolled in an experiment, and
    /// the holdout's exposure when the experiment is in one's scope.
    #[inline]
    pub fn evaluate<'g>(&'g self, key: &'g str, ctx: &Context) -> Decision<'g> {
        let d = self.evaluate_without_exposure(key, ctx);
        self.record_exposure(&d, ctx);
        d
    }

    /// Evaluates `key` without recording an exposure (to look ahead, or to record it later
    /// with [`ConfigGuard::record_exposure`] when the variant is actually shown).
    #[inline]
    pub fn evaluate_without_exposure<'g>(&'g self, key: &'g str, ctx: &Context) -> Decision<'g> {
        if !self.loaded.present {
            return not_ready(key);
        }
        let config = &self.loaded.config;
        // Reading the clock costs; only targeting that reads the time pays for it.
        if config.reads_clock() {
            evaluate_at(config, ctx, key, now_seconds())
        } else {
            evaluate(config, ctx, key)
        }
    }

    /// Records the exposures of a decision (deduplicated): the experiment's when the unit is
    /// enrolled, and the holdout's (held out or not) when the experiment is in one's scope;
    /// a no-op otherwise.
    #[inline]
    pub fn record_exposure(&self, d: &Decision<'_>, ctx: &Context) {
        if (d.enrolled || d.holdout.is_some())
            && let Some(events) = self.events
        {
            events.expose(d, ctx, self.loaded.version);
        }
    }

    /// Every flag, then every experiment, recording exposures as [`ConfigGuard::evaluate`] does.
    pub fn evaluate_all(&self, ctx: &Context) -> Vec<Decision<'_>> {
        let config = &self.loaded.config;
        let all = if config.reads_clock() {
            evaluate_all_at(config, ctx, now_seconds())
        } else {
            evaluate_all(config, ctx)
        };
        for d in &all {
            self.record_exposure(d, ctx);
        }
        all
    }
}

/// The decision when no config is loaded.
fn not_ready(key: &str) -> Decision<'_> {
    Decision {
        key,
        kind: None,
        variant: None,
        value: None,
        value_json: None,
        enrolled: false,
        reason: Reason::Error,
        error: Some(ErrorCode::ProviderNotReady),
        rule_id: None,
        experiment: None,
        holdout: None,
        metadata: None,
    }
}

/// Unix seconds now, for targeting that reads the time (`$flagd.timestamp`).
fn now_seconds() -> i64 {
    cohort_core::time::unix_ms(std::time::SystemTime::now()).div_euclid(1000)
}

impl Client {
    /// A builder for a client that syncs with the config service using `sdk_key`.
    pub fn builder(sdk_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(sdk_key)
    }

    /// An offline client serving `defs` as they are: no stream, no events, no runtime needed.
    /// Its state is READY. For tests and for running from a file.
    pub fn from_definitions(defs: &Definitions) -> Result<Client, SdkError> {
        let config = compile(defs)?;
        let store = Store::new();
        store.swap(config, defs.version);
        store.mark_synced();
        store.set_state(State::Ready);
        Ok(Client::from_parts(Inner {
            store: Arc::new(store),
            events: None,
            sync_cancel: CancellationToken::new(),
            events_cancel: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            events_task: Mutex::new(None),
            flush_timeout: Duration::from_secs(5),
        }))
    }

    pub(crate) fn from_parts(inner: Inner) -> Client {
        Client { inner: Arc::new(inner) }
    }

    /// The current config, for zero-copy evaluation. Never waits.
    #[inline]
    pub fn config(&self) -> ConfigGuard<'_> {
        ConfigGuard {
            loaded: self.inner.store.current.load(),
            events: self.inner.events.as_ref().map(|e| &e.queue),
        }
    }

    /// Runs `f` over the current config.
    #[inline]
    pub fn with_config<R>(&self, f: impl FnOnce(&ConfigGuard<'_>) -> R) -> R {
        f(&self.config())
    }

    /// Evaluates `key` and copies the decision out.
    pub fn evaluate(&self, key: &str, ctx: &Context) -> Evaluation {
        let cfg = self.config();
        Evaluation::new(&cfg.evaluate(key, ctx), cfg.version())
    }

    /// Every flag, then every experiment, recording an exposure for each enrollment (use
    /// [`ConfigGuard::evaluate_without_exposure`] per key to look without recording).
    pub fn evaluate_all(&self, ctx: &Context) -> Vec<Evaluation> {
        let cfg = self.config();
        cfg.evaluate_all(ctx).iter().map(|d| Evaluation::new(d, cfg.version())).collect()
    }

    /// An experiment's assignment for the context's unit.
    pub fn experiment(&self, key: &str, ctx: &Context) -> Assignment {
        let cfg = self.config();
        Assignment::new(&cfg.evaluate(key, ctx), cfg.version())
    }

    /// A boolean flag's value, or `default` on any error.
    #[inline]
    pub fn bool_value(&self, key: &str, ctx: &Context, default: bool) -> bool {
        self.config().evaluate(key, ctx).bool_value().unwrap_or(default)
    }

    /// A string flag's value, or `default` on any error.
    pub fn string_value(&self, key: &str, ctx: &Context, default: &str) -> String {
        let cfg = self.config();
        cfg.evaluate(key, ctx).string_value().unwrap_or(default).to_owned()
    }

    /// A number flag's value, or `default` on any error.
    #[inline]
    pub fn number_value(&self, key: &str, ctx: &Context, default: f64) -> f64 {
        self.config().evaluate(key, ctx).number_value().unwrap_or(default)
    }

    /// A flag's JSON value (or an experiment's payload), or `default` on any error.
    pub fn json_value(&self, key: &str, ctx: &Context, default: Value) -> Value {
        let cfg = self.config();
        match cfg.evaluate(key, ctx).json_value() {
            Ok(v) => v.clone(),
            Err(_) => default,
        }
    }

    /// [`Client::bool_value`] with the variant, reason and error (OpenFeature's resolution details).
    pub fn bool_details(&self, key: &str, ctx: &Context, default: bool) -> Details<bool> {
        let cfg = self.config();
        Details::resolve(&cfg.evaluate(key, ctx), default, "bool", Value::as_bool, cfg.version())
    }

    /// [`Client::string_value`] with the variant, reason and error.
    pub fn string_details(&self, key: &str, ctx: &Context, default: &str) -> Details<String> {
        let cfg = self.config();
        let get = |v: &Value| v.as_str().map(str::to_owned);
        Details::resolve(&cfg.evaluate(key, ctx), default.to_owned(), "string", get, cfg.version())
    }

    /// [`Client::number_value`] with the variant, reason and error.
    pub fn number_details(&self, key: &str, ctx: &Context, default: f64) -> Details<f64> {
        let cfg = self.config();
        Details::resolve(&cfg.evaluate(key, ctx), default, "number", Value::as_f64, cfg.version())
    }

    /// [`Client::json_value`] with the variant, reason and error.
    pub fn json_details(&self, key: &str, ctx: &Context, default: Value) -> Details<Value> {
        let cfg = self.config();
        Details::resolve(&cfg.evaluate(key, ctx), default, "json", |v| Some(v.clone()), cfg.version())
    }

    /// Queues a metric event. Never waits; a full queue drops the event (counted).
    pub fn track(&self, event: MetricEvent) -> Result<(), TrackError> {
        match &self.inner.events {
            Some(events) => events.queue.track(event),
            None => Err(TrackError::Disabled),
        }
    }

    /// Delivers every event queued so far, waiting at most the flush timeout.
    pub async fn flush(&self) -> Result<(), SdkError> {
        self.flush_within(self.inner.flush_timeout).await
    }

    /// Delivers every event queued so far, waiting at most `timeout`.
    pub async fn flush_within(&self, timeout: Duration) -> Result<(), SdkError> {
        let Some(events) = &self.inner.events else {
            return Err(SdkError::EventsDisabled);
        };
        let deliver = async { events.flush().await.map_err(|_| SdkError::EventsDisabled) };
        match tokio::time::timeout(timeout, deliver).await {
            Ok(result) => result,
            Err(_) => Err(SdkError::Timeout(timeout, self.events_queued())),
        }
    }

    /// Stops the config stream, delivers queued events (within the flush timeout), then stops
    /// event delivery. Evaluation keeps serving the last config afterwards (state STALE).
    /// Events still undelivered are counted as abandoned.
    pub async fn close(&self) -> Result<(), SdkError> {
        self.inner.sync_cancel.cancel();
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        let flushed = match &self.inner.events {
            Some(_) => self.flush().await,
            None => Ok(()),
        };
        self.inner.events_cancel.cancel();
        let worker = self.inner.events_task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        match flushed {
            Err(SdkError::EventsDisabled) => Ok(()),
            other => other,
        }
    }

    /// READY, STALE or ERROR; see [`State`].
    pub fn state(&self) -> State {
        self.inner.store.status().state
    }

    /// The state and the served version.
    pub fn status(&self) -> Status {
        self.inner.store.status()
    }

    /// A watch of (state, version): it changes when either does.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.inner.store.subscribe()
    }

    /// The served config's version (0 when none).
    pub fn version(&self) -> u64 {
        self.inner.store.current.load().version
    }

    /// Why the client is not READY, when it knows: the rejection message or the last
    /// connection failure.
    pub fn last_error(&self) -> Option<String> {
        self.inner.store.last_error()
    }

    /// When the config was last known to be current.
    pub fn last_sync(&self) -> Option<SystemTime> {
        self.inner.store.last_sync()
    }

    /// Events lost so far: dropped on a full queue, refused by the service, or abandoned at
    /// shutdown.
    pub fn dropped_events(&self) -> u64 {
        let s = self.stats();
        s.events_dropped + s.events_rejected + s.events_abandoned
    }

    fn events_queued(&self) -> usize {
        self.inner
            .events
            .as_ref()
            .map_or(0, |e| e.queue.counters.queued.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// State, version, sync time and event counters.
    pub fn stats(&self) -> Stats {
        use std::sync::atomic::Ordering::Relaxed;
        let status = self.status();
        let mut stats = Stats {
            state: status.state,
            config_version: self.version(),
            last_sync: self.last_sync(),
            last_error: self.last_error(),
            events_queued: 0,
            events_sent: 0,
            events_dropped: 0,
            events_rejected: 0,
            events_abandoned: 0,
            exposures_recorded: 0,
        };
        if let Some(e) = &self.inner.events {
            let c = &e.queue.counters;
            stats.events_queued = c.queued.load(Relaxed);
            stats.events_sent = c.sent.load(Relaxed);
            stats.events_dropped = c.dropped_full.load(Relaxed);
            stats.events_rejected = c.rejected.load(Relaxed);
            stats.events_abandoned = c.abandoned.load(Relaxed);
            stats.exposures_recorded = c.exposures.load(Relaxed);
        }
        stats
    }
}
