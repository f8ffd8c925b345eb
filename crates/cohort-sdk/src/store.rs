//! The compiled config every evaluation reads, swapped atomically, and the client's state.
//!
//! Readers `load()` an `ArcSwap` (a few nanoseconds, never waiting for a writer); the sync task
//! is the only writer. State changes are published on a `watch` channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use cohort_core::CompiledConfig;
use cohort_core::time::unix_ms;
use tokio::sync::watch;

/// How much a client can be trusted right now.
///
/// - `Ready`: the config stream is up and the config it delivered is applied (or, for an
///   offline client, the definitions it was given are served).
/// - `Stale`: a config is served but may be out of date: the stream is down (the config came
///   from an earlier connection, the cache file or bootstrap definitions) and the client keeps
///   trying to reconnect.
/// - `Error`: nothing to serve (every evaluation returns the caller's default with
///   `PROVIDER_NOT_READY`), or the config service rejected the SDK key; in the latter case an
///   earlier or cached config, if any, is still served. [`Status::key_rejected`] says which,
///   and [`crate::Client::last_error`] why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Ready,
    Stale,
    Error,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ready => "READY",
            State::Stale => "STALE",
            State::Error => "ERROR",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state and the version of the served config (0 when none), as published to watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status {
    pub state: State,
    pub version: u64,
    /// The config service rejected the SDK key (UNAUTHENTICATED or PERMISSION_DENIED): it is
    /// unknown, revoked, or not an SDK key. Set when a connection is refused or an open stream
    /// is ended for it; the state is then `Error` until a stream is accepted again.
    pub key_rejected: bool,
}

/// One compiled config as served, with the version it was read at.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) config: CompiledConfig,
    pub(crate) version: u64,
    /// False until a config (from anywhere) is loaded: evaluations then say PROVIDER_NOT_READY.
    pub(crate) present: bool,
}

/// The served config and the state around it.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) current: ArcSwap<Loaded>,
    status: watch::Sender<Status>,
    last_error: Mutex<Option<String>>,
    /// Unix ms of the last moment the config was known to be current (0 = never).
    last_sync_ms: AtomicU64,
}

impl Store {
    pub(crate) fn new() -> Self {
        Store {
            current: ArcSwap::from_pointee(Loaded::default()),
            status: watch::Sender::new(Status { state: State::Error, version: 0, key_rejected: false }),
            last_error: Mutex::new(None),
            last_sync_ms: AtomicU64::new(0),
        }
    }

    /// Serves `config`; returns the config it replaces so the caller can drop it off the
    /// reader path.
    pub(crate) fn swap(&self, config: CompiledConfig, version: u64) -> Arc<Loaded> {
        self.current.swap(Arc::new(Loaded { config, version, present: true }))
    }

    pub(crate) fn present(&self) -> bool {
        self.current.load().present
    }

    pub(crate) fn status(&self) -> Status {
        *self.status.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Publishes a state with the served version; watchers wake only on a change.
    pub(crate) fn set_state(&self, state: State) {
        self.publish(|s| s.state = state);
    }

    /// The config service accepted the stream and its config is served: READY.
    pub(crate) fn set_ready(&self) {
        self.publish(|s| {
            s.state = State::Ready;
            s.key_rejected = false;
        });
    }

    /// The config service rejected the key: ERROR, with the reason as the last error.
    pub(crate) fn set_rejected(&self, reason: &str) {
        self.set_error(format!("sdk key rejected: {reason}"));
        self.publish(|s| {
            s.state = State::Error;
            s.key_rejected = true;
        });
    }

    pub(crate) fn key_rejected(&self) -> bool {
        self.status.borrow().key_rejected
    }

    /// `Stale` when something is served, `Error` otherwise: the state while disconnected. A
    /// rejected key stays `Error` until a stream is accepted.
    pub(crate) fn set_disconnected(&self) {
        let present = self.present();
        self.publish(|s| {
            if !s.key_rejected {
                s.state = if present { State::Stale } else { State::Error };
            }
        });
    }

    /// Applies `change` with the served version; watchers wake only when something changed.
    fn publish(&self, change: impl FnOnce(&mut Status)) {
        let version = self.current.load().version;
        self.status.send_if_modified(|s| {
            let before = *s;
            s.version = version;
            change(s);
            *s != before
        });
    }

    pub(crate) fn set_error(&self, message: impl Into<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.into());
    }

    pub(crate) fn clear_error(&self) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn mark_synced(&self) {
        let now = u64::try_from(unix_ms(SystemTime::now())).unwrap_or(0);
        self.last_sync_ms.store(now, Ordering::Relaxed);
    }

    pub(crate) fn last_sync(&self) -> Option<SystemTime> {
        match self.last_sync_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }
}
