//! The background task that holds the config service's `Sync` stream: Hello with the held
//! version, snapshots and deltas compiled off the reader path and swapped in, an Ack per applied
//! version, Ping when the server is quiet, reconnects with jittered backoff across endpoints,
//! and the cache file writer.
//!
//! Session rules:
//! - Hello carries the held version (0 for none, or to force a snapshot after a bad delta).
//! - A Snapshot replaces everything; a Delta applies only on top of its `from_version`.
//!   A Delta that does not follow, or does not apply or compile, ends the session and the next
//!   Hello says 0, so the server sends a snapshot.
//! - Any message proves the stream alive. After 1.5 heartbeat intervals of silence the client
//!   sends a Ping; after 3 it gives the stream up. The interval is the server's latest
//!   `Heartbeat.interval_ms` (the builder's assumption until one arrives).
//! - Two heartbeats in a row announcing another version than the held one (with nothing
//!   applied in between) mean the server will not bring this client to its version: resync
//!   with a snapshot.
//! - GoAway: reconnect at once to the next endpoint. UNAUTHENTICATED / PERMISSION_DENIED, when
//!   the stream is opened or ending an open one (a revoked key): the key is rejected (state
//!   ERROR, `Status::key_rejected`), retried at the maximum backoff. Other failures: the next
//!   endpoint after a jittered backoff, reset once a session has delivered a message.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cohort_backoff::{Backoff, BackoffPolicy};
use cohort_core::{CompiledConfig, Definitions, compile};
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use cohort_proto::config::v1::sync_request::Message as Request;
use cohort_proto::config::v1::sync_response::Message as Response;
use cohort_proto::config::v1::{Ack, Delta, Hello, Ping, Snapshot, SyncRequest};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Endpoint;
use tonic::{Code, Status};
use tracing::{debug, error, info, warn};

use crate::cache;
use crate::delta::{self, DeltaError};
use crate::store::{Loaded, State, Store};

/// How long a replaced config is kept before it is dropped on a blocking thread, so that a
/// reader holding it briefly is never the one that frees a large config.
const RETIRE_AFTER: Duration = Duration::from_secs(2);

/// Everything the sync task needs to know, from the builder.
#[derive(Debug, Clone)]
pub(crate) struct SyncOptions {
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) authorization: AsciiMetadataValue,
    /// A service's own key, streaming for a client-side key ([`crate::ClientBuilder::service_key`]).
    pub(crate) service_authorization: Option<AsciiMetadataValue>,
    /// For the stream's response headers.
    pub(crate) request_timeout: Duration,
    /// Assumed until the server announces its interval.
    pub(crate) heartbeat_interval: Duration,
    pub(crate) backoff: BackoffPolicy,
    pub(crate) client_name: String,
}

/// What `build()` waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InitOutcome {
    /// A config from the stream is applied.
    Applied,
    /// The config service rejected the key.
    Rejected(String),
}

/// Why a session ended, and so what to do next.
#[derive(Debug)]
enum End {
    /// Reconnect now to the next endpoint.
    GoAway(String),
    /// Reconnect asking for a snapshot.
    Resync(String),
    /// Reconnect to the next endpoint after a backoff.
    Failed(String),
    /// The key is rejected.
    Rejected(String),
}

/// The stream client.
#[derive(Debug)]
pub(crate) struct SyncTask {
    store: Arc<Store>,
    options: SyncOptions,
    /// The definitions behind the served config, to apply deltas to.
    held: Option<Arc<Definitions>>,
    cache: Option<watch::Sender<Option<Arc<Definitions>>>>,
    init: Option<oneshot::Sender<InitOutcome>>,
    cancel: CancellationToken,
    /// Resyncs since the last applied config: a second one in a row waits a backoff.
    resync_streak: u32,
    /// Say version 0 in the next Hello, to get a snapshot.
    force_snapshot: bool,
}

impl SyncTask {
    pub(crate) fn new(
        store: Arc<Store>,
        options: SyncOptions,
        held: Option<Arc<Definitions>>,
        cache: Option<watch::Sender<Option<Arc<Definitions>>>>,
        init: oneshot::Sender<InitOutcome>,
        cancel: CancellationToken,
    ) -> Self {
        SyncTask {
            store,
            options,
            held,
            cache,
            init: Some(init),
            cancel,
            resync_streak: 0,
            force_snapshot: false,
        }
    }

    pub(crate) async fn run(mut self) {
        let cancel = self.cancel.clone();
        let endpoints = self.options.endpoints.clone();
        let mut index = 0usize;
        let mut backoff = Backoff::new(self.options.backoff);
        loop {
            let known = if self.force_snapshot { 0 } else { self.held.as_ref().map_or(0, |d| d.version) };
            let endpoint = &endpoints[index % endpoints.len()];
            let uri = endpoint.uri().to_string();
            let mut healthy = false;
            debug!(endpoint = %uri, known_version = known, "opening config stream");
            let end = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                end = self.session(endpoint, known, &mut healthy) => end,
            };
            if healthy {
                backoff.reset();
            }
            let delay = match end {
                End::GoAway(reason) => {
                    info!(endpoint = %uri, reason, "config service going away; reconnecting");
                    index = index.wrapping_add(1);
                    if healthy { Duration::ZERO } else { backoff.next_delay() }
                }
                End::Resync(reason) => {
                    warn!(endpoint = %uri, reason, "config stream out of step; asking for a snapshot");
                    self.force_snapshot = true;
                    self.resync_streak += 1;
                    if healthy && self.resync_streak == 1 { Duration::ZERO } else { backoff.next_delay() }
                }
                End::Failed(reason) => {
                    index = index.wrapping_add(1);
                    let delay = backoff.next_delay();
                    warn!(
                        endpoint = %uri,
                        reason,
                        attempt = backoff.attempts(),
                        retry_in_ms = delay.as_millis() as u64,
                        "config stream lost"
                    );
                    if !self.store.key_rejected() {
                        self.store.set_error(reason);
                    }
                    delay
                }
                End::Rejected(reason) => {
                    index = index.wrapping_add(1);
                    let delay = backoff.max_delay();
                    error!(
                        endpoint = %uri,
                        reason,
                        retry_in_ms = delay.as_millis() as u64,
                        "config service rejected the sdk key"
                    );
                    self.store.set_rejected(&reason);
                    if let Some(init) = self.init.take() {
                        let _ = init.send(InitOutcome::Rejected(reason));
                    }
                    delay
                }
            };
            // A rejected key keeps ERROR until a session succeeds.
            self.store.set_disconnected();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        if self.store.present() && self.store.status().state == State::Ready {
            self.store.set_state(State::Stale);
        }
        debug!("config stream task stopped");
    }

    /// One connection: returns when it ends, with `healthy` set once a message arrived.
    async fn session(&mut self, endpoint: &Endpoint, known: u64, healthy: &mut bool) -> End {
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            // The endpoint named, so a TLS refusal says which server and why.
            Err(e) => {
                return End::Failed(format!(
                    "connect to {}: {}",
                    endpoint.uri(),
                    cohort_core::error::chain(&e)
                ));
            }
        };
        let mut client = ConfigServiceClient::new(channel);
        let (tx, rx) = mpsc::channel::<SyncRequest>(64);
        let hello = Request::Hello(Hello { known_version: known, client: self.options.client_name.clone() });
        // The channel is empty: this cannot fail.
        let _ = tx.try_send(SyncRequest { message: Some(hello) });
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        request.metadata_mut().insert("authorization", self.options.authorization.clone());
        if let Some(service) = &self.options.service_authorization {
            request.metadata_mut().insert(cohort_proto::config::v1::SERVICE_AUTHORIZATION, service.clone());
        }
        let mut stream = match tokio::time::timeout(self.options.request_timeout, client.sync(request)).await
        {
            Err(_) => return End::Failed(format!("no answer within {:?}", self.options.request_timeout)),
            Ok(Err(status)) => return classify(&status),
            Ok(Ok(response)) => response.into_inner(),
        };

        let mut interval = self.options.heartbeat_interval;
        let mut last_message = Instant::now();
        let mut pinged = false;
        let mut nonce = 0u64;
        // The last heartbeat announced another version than the held one.
        let mut behind = false;
        loop {
            let quiet_for = if pinged { interval * 3 } else { interval * 3 / 2 };
            let message = tokio::select! {
                m = stream.message() => m,
                _ = tokio::time::sleep_until(last_message + quiet_for) => {
                    if pinged {
                        return End::Failed(format!("no message for {:?} (3 heartbeat intervals)", interval * 3));
                    }
                    pinged = true;
                    nonce += 1;
                    let _ = tx.try_send(SyncRequest { message: Some(Request::Ping(Ping { nonce })) });
                    continue;
                }
            };
            let message = match message {
                Ok(Some(m)) => m,
                Ok(None) => return End::Failed("the server closed the stream".to_owned()),
                Err(status) => return classify(&status),
            };
            last_message = Instant::now();
            pinged = false;
            *healthy = true;
            match message.message {
                Some(Response::Snapshot(snapshot)) => match self.apply_snapshot(snapshot).await {
                    Ok(version) => {
                        behind = false;
                        ack(&tx, version);
                    }
                    Err(reason) => return End::Failed(reason),
                },
                Some(Response::Delta(d)) => match self.apply_delta(d).await {
                    Ok(version) => {
                        behind = false;
                        ack(&tx, version);
                    }
                    Err(reason) => return End::Resync(reason),
                },
                Some(Response::Heartbeat(hb)) => {
                    if hb.interval_ms > 0 {
                        interval = Duration::from_millis(u64::from(hb.interval_ms));
                    }
                    let held = self.held.as_ref().map_or(0, |d| d.version);
                    if self.held.is_some() && held == hb.version {
                        // Up to date (e.g. resumed from the cache at the server's version).
                        behind = false;
                        self.in_sync();
                    } else {
                        // One heartbeat at another version may be a delta in flight; two in a
                        // row mean the server will not bring this client to its version (it is
                        // ahead and sends nothing, or behind, e.g. an environment rebuilt).
                        if behind {
                            return End::Resync(format!(
                                "the server is at version {} and the client at {held}",
                                hb.version
                            ));
                        }
                        behind = true;
                    }
                }
                Some(Response::Pong(_)) => {}
                Some(Response::GoAway(g)) => return End::GoAway(g.reason),
                // A message kind from a newer server: ignore it. (`Encoded` is a server's way
                // of sending a response; decoding never yields it.)
                Some(Response::Encoded(_)) | None => {}
            }
        }
    }

    async fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<u64, String> {
        let version = snapshot.version;
        let bytes = snapshot.definitions_json;
        let built = tokio::task::spawn_blocking(move || {
            let mut defs: Definitions = serde_json::from_slice(&bytes)
                .map_err(|e| format!("snapshot {version}: definitions_json: {e}"))?;
            defs.version = version;
            let config = compile(&defs).map_err(|e| format!("snapshot {version} does not compile: {e}"))?;
            Ok::<_, String>((defs, config))
        })
        .await
        .map_err(|e| format!("snapshot {version}: compile task failed: {e}"))?;
        let (defs, config) =
            built.inspect_err(|reason| error!(reason, "snapshot refused; keeping the served config"))?;
        self.install(defs, config);
        info!(version, entries = self.store.current.load().config.len(), "config snapshot applied");
        Ok(version)
    }

    async fn apply_delta(&mut self, d: Delta) -> Result<u64, String> {
        let Some(held) = self.held.clone() else {
            return Err(format!("delta from version {} without a snapshot", d.from_version));
        };
        if held.version != d.from_version {
            return Err(DeltaError::Gap { held: held.version, from: d.from_version }.to_string());
        }
        let (from, to, changes) = (d.from_version, d.to_version, d.changes.len());
        let built = tokio::task::spawn_blocking(move || {
            let mut defs = (*held).clone();
            delta::apply(&mut defs, &d).map_err(|e| format!("delta {from}..{to}: {e}"))?;
            let config = compile(&defs).map_err(|e| format!("delta {from}..{to} does not compile: {e}"))?;
            Ok::<_, String>((defs, config))
        })
        .await
        .map_err(|e| format!("delta {from}..{to}: compile task failed: {e}"))?;
        let (defs, config) = built?;
        self.install(defs, config);
        debug!(from, to, changes, "config delta applied");
        Ok(to)
    }

    /// Serves a newly built config and remembers its definitions.
    fn install(&mut self, defs: Definitions, config: CompiledConfig) {
        let defs = Arc::new(defs);
        let old = self.store.swap(config, defs.version);
        retire(old);
        if let Some(cache) = &self.cache {
            cache.send_replace(Some(defs.clone()));
        }
        self.held = Some(defs);
        self.resync_streak = 0;
        self.force_snapshot = false;
        self.in_sync();
    }

    /// The served config is the server's: READY.
    fn in_sync(&mut self) {
        self.store.clear_error();
        self.store.mark_synced();
        self.store.set_ready();
        if let Some(init) = self.init.take() {
            let _ = init.send(InitOutcome::Applied);
        }
    }
}

fn ack(tx: &mpsc::Sender<SyncRequest>, version: u64) {
    // Acks are advisory: if the server stopped reading, the stream is about to end anyway.
    let _ = tx.try_send(SyncRequest { message: Some(Request::Ack(Ack { version })) });
}

/// Drops a replaced config later, on a blocking thread.
fn retire(old: Arc<Loaded>) {
    if !old.present {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            tokio::time::sleep(RETIRE_AFTER).await;
            let _ = tokio::task::spawn_blocking(move || drop(old)).await;
        });
    }
}

fn classify(status: &Status) -> End {
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => End::Rejected(status.message().to_owned()),
        code => End::Failed(format!("{code:?}: {}", status.message())),
    }
}

/// Writes each newly applied config to the cache file, latest first: configs that arrive
/// while a write is in progress collapse into one write of the newest.
pub(crate) async fn cache_writer(
    path: PathBuf,
    fingerprint: String,
    mut rx: watch::Receiver<Option<Arc<Definitions>>>,
    cancel: CancellationToken,
) {
    loop {
        let stop = tokio::select! {
            biased;
            _ = cancel.cancelled() => true,
            changed = rx.changed() => changed.is_err(),
        };
        // On stop, still write a config that arrived and was not written yet.
        if stop && !rx.has_changed().unwrap_or(false) {
            break;
        }
        let Some(defs) = rx.borrow_and_update().clone() else {
            if stop {
                break;
            }
            continue;
        };
        let (p, f) = (path.clone(), fingerprint.clone());
        let version = defs.version;
        match tokio::task::spawn_blocking(move || cache::write(&p, &defs, &f)).await {
            Ok(Ok(())) => debug!(version, path = %path.display(), "cache file written"),
            Ok(Err(e)) => warn!(version, error = %e, "could not write the cache file"),
            Err(e) => warn!(version, error = %e, "cache write task failed"),
        }
        if stop {
            break;
        }
    }
}
