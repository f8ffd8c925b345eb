//! Fan-out of environment states to this replica's streams.
//!
//! Each environment with subscribers has one `watch` channel holding its newest state. A
//! change notification makes the replica load the new version once, turn it into a shared
//! snapshot and a delta encoded once as a Sync response, publish it, and offer it to every
//! stream of that environment in one pass: a stream whose queue has room gets the shared bytes
//! at once, without its session task waking. A stream whose queue is full is left to its
//! session, which sends the newest state when the client reads again, so a slow stream skips
//! intermediate versions and never holds up the others.
//!
//! Revocations travel the same way: the revoking transaction notifies `revoked:<key id>`, and
//! every replica ends the streams opened with that key ([`Hub::revoke`]) and forgets it from
//! its auth cache. As a safety net for lost notifications, each poll also asks the database
//! which keys of the open streams still work ([`Hub::recheck_keys`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort_backoff::{Backoff, BackoffPolicy};
use cohort_proto::config::v1 as pb;
use futures::StreamExt;
use pb::sync_response::{Encoded, Message as Out};
use serde_json::{Map, Value};
use tokio::sync::{OnceCell, watch};
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::domain::Kind;
use crate::error::ServiceError;
use crate::metrics::{Metrics, Push};
use crate::store::{ChangeRow, NOTIFY_CHANNEL, REVOKED_PREFIX, SnapshotData, Store};
use crate::sync::Stream;

/// One version of an environment, shared by all its streams.
#[derive(Debug)]
pub(crate) struct EnvState {
    pub environment_id: Uuid,
    pub version: u64,
    pub committed_at_ms: i64,
    /// cohort-core `Definitions` as JSON, serialized once.
    pub snapshot: Bytes,
    /// The Sync response bringing a client from the previous published state to this one,
    /// encoded once, with the version it starts from.
    delta: Option<(u64, Encoded)>,
    /// The snapshot as a Sync response, encoded when a stream first needs it.
    snapshot_response: OnceLock<Encoded>,
    entities: BTreeMap<(Kind, String), Value>,
}

impl EnvState {
    pub(crate) fn new(
        environment_id: Uuid,
        version: u64,
        committed_at_ms: i64,
        entities: BTreeMap<(Kind, String), Value>,
        delta: Option<pb::Delta>,
    ) -> Result<Self, ServiceError> {
        let snapshot = definitions_json(version, &entities)?;
        let delta = delta.map(|d| (d.from_version, Encoded::new(Out::Delta(d))));
        Ok(EnvState {
            environment_id,
            version,
            committed_at_ms,
            snapshot,
            delta,
            snapshot_response: OnceLock::new(),
            entities,
        })
    }

    pub(crate) fn snapshot_message(&self) -> pb::Snapshot {
        pb::Snapshot {
            environment_id: self.environment_id.to_string(),
            version: self.version,
            definitions_json: self.snapshot.clone(),
            committed_at_ms: self.committed_at_ms,
        }
    }

    /// The snapshot as a Sync response, shared by every stream that gets it.
    pub(crate) fn snapshot_response(&self) -> Encoded {
        self.snapshot_response.get_or_init(|| Encoded::new(Out::Snapshot(self.snapshot_message()))).clone()
    }

    /// What brings a client holding version `held` to this state: the shared delta when it is
    /// right behind, else the snapshot (intermediate versions are skipped).
    pub(crate) fn response_after(&self, held: u64) -> (Encoded, Push) {
        match &self.delta {
            Some((from, delta)) if *from == held => (delta.clone(), Push::Delta),
            _ => (self.snapshot_response(), Push::Snapshot),
        }
    }
}

/// `{"version": v, "flags": [...], "experiments": [...], ...}` with lists sorted by key.
fn definitions_json(version: u64, entities: &BTreeMap<(Kind, String), Value>) -> Result<Bytes, ServiceError> {
    let mut doc = Map::new();
    doc.insert("version".into(), version.into());
    for kind in Kind::ALL {
        let list: Vec<&Value> = entities
            .range((kind, String::new())..)
            .take_while(|((k, _), _)| *k == kind)
            .map(|(_, v)| v)
            .collect();
        doc.insert(
            kind.plural().into(),
            serde_json::to_value(list).map_err(|e| ServiceError::Internal(e.to_string()))?,
        );
    }
    serde_json::to_vec(&doc).map(Bytes::from).map_err(|e| ServiceError::Internal(e.to_string()))
}

pub(crate) fn change_message(c: &ChangeRow) -> pb::Change {
    pb::Change {
        version: c.version,
        kind: pb::EntityKind::from(c.kind) as i32,
        key: c.key.clone(),
        definition_json: c.after.as_ref().map(Value::to_string).unwrap_or_default(),
    }
}

#[derive(Debug, Default)]
struct EnvEntry {
    sender: OnceCell<watch::Sender<Arc<EnvState>>>,
    /// Serializes refreshes of one environment, and so its fan-outs.
    refresh: tokio::sync::Mutex<()>,
    idle_since: Mutex<Option<Instant>>,
    /// The streams each new state is offered to, by subscription id.
    streams: Mutex<HashMap<u64, Arc<Stream>>>,
}

impl EnvEntry {
    /// Offers a newly published state to every stream of the environment.
    fn fan_out(&self, state: &EnvState, metrics: &Metrics) {
        let streams: Vec<Arc<Stream>> = lock(&self.streams).values().cloned().collect();
        for stream in streams {
            stream.offer(state, metrics);
        }
    }
}

/// A stream's registration with its environment; dropping it ends the offers.
#[derive(Debug)]
pub(crate) struct Subscription {
    entry: Arc<EnvEntry>,
    id: u64,
    /// The environment's newest state (the hub offers each new one to the stream itself, so
    /// this is only read, never waited on).
    pub updates: watch::Receiver<Arc<EnvState>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.entry.streams).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
pub(crate) struct Hub {
    store: Store,
    metrics: Metrics,
    envs: Mutex<HashMap<Uuid, Arc<EnvEntry>>>,
    next_subscription: std::sync::atomic::AtomicU64,
}

/// Environments with no subscriber for this long are dropped from memory.
const IDLE_EVICTION: Duration = Duration::from_secs(60);

impl Hub {
    pub(crate) fn new(store: Store, metrics: Metrics) -> Self {
        Hub { store, metrics, envs: Mutex::new(HashMap::new()), next_subscription: Default::default() }
    }

    fn entry(&self, env: Uuid) -> Arc<EnvEntry> {
        let mut envs = self.envs.lock().unwrap_or_else(|p| p.into_inner());
        envs.entry(env).or_default().clone()
    }

    async fn sender(&self, env: Uuid) -> Result<(Arc<EnvEntry>, watch::Sender<Arc<EnvState>>), ServiceError> {
        let entry = self.entry(env);
        let mut loaded_here = false;
        let sender = entry
            .sender
            .get_or_try_init(|| async {
                loaded_here = true;
                let state = self.load(env).await?;
                Ok::<_, ServiceError>(watch::Sender::new(Arc::new(state)))
            })
            .await?
            .clone();
        if loaded_here {
            // A notification that arrived while the first load ran was not applied.
            self.refresh(env).await?;
        }
        Ok((entry, sender))
    }

    /// Subscribes a stream to an environment, loading it on first use: from now on every new
    /// state is offered to the stream.
    pub(crate) async fn subscribe(
        &self,
        env: Uuid,
        stream: Arc<Stream>,
    ) -> Result<Subscription, ServiceError> {
        let (entry, sender) = self.sender(env).await?;
        *entry.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let id = self.next_subscription.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&entry.streams).insert(id, stream);
        Ok(Subscription { entry, id, updates: sender.subscribe() })
    }

    /// The newest state of an environment.
    pub(crate) async fn current(&self, env: Uuid) -> Result<Arc<EnvState>, ServiceError> {
        let (_, sender) = self.sender(env).await?;
        let state = sender.borrow().clone();
        Ok(state)
    }

    async fn load(&self, env: Uuid) -> Result<EnvState, ServiceError> {
        let SnapshotData { version, entities, committed_at_ms } = self.store.snapshot(env).await?;
        self.metrics.env_loads.inc();
        let entities = entities.into_iter().map(|e| ((e.kind, e.key), e.definition)).collect();
        EnvState::new(env, version, committed_at_ms, entities, None)
    }

    /// A change was committed: bring the environment up to date if this replica serves it.
    pub(crate) async fn notify(&self, env: Uuid, version: u64) {
        self.metrics.notifications.inc();
        let initialized = {
            let envs = self.envs.lock().unwrap_or_else(|p| p.into_inner());
            envs.get(&env).and_then(|e| e.sender.get()).map(|s| s.borrow().version)
        };
        if let Some(current) = initialized
            && version > current
            && let Err(e) = self.refresh(env).await
        {
            warn!(environment = %env, version, error = %e, "could not load a new version");
        }
    }

    /// Applies every change committed since the published state, publishing one new state.
    pub(crate) async fn refresh(&self, env: Uuid) -> Result<(), ServiceError> {
        let entry = self.entry(env);
        let Some(sender) = entry.sender.get() else { return Ok(()) };
        let _guard = entry.refresh.lock().await;
        let current = sender.borrow().clone();
        let changes = self.store.changes(env, current.version, i64::MAX as u64).await?;
        let Some(last) = changes.last() else { return Ok(()) };
        // A batch's version has several changes.
        let contiguous = crate::store::versions_contiguous(&changes, current.version, last.version);
        let next = if contiguous {
            let mut entities = current.entities.clone();
            for c in &changes {
                match &c.after {
                    Some(def) => entities.insert((c.kind, c.key.clone()), def.clone()),
                    None => entities.remove(&(c.kind, c.key.clone())),
                };
            }
            let delta = pb::Delta {
                from_version: current.version,
                to_version: last.version,
                changes: changes.iter().map(change_message).collect(),
                committed_at_ms: last.at_ms,
            };
            EnvState::new(env, last.version, last.at_ms, entities, Some(delta))?
        } else {
            warn!(environment = %env, from = current.version, "change log has a gap; reloading the environment");
            self.load(env).await?
        };
        self.metrics.env_loads.inc();
        debug!(environment = %env, version = next.version, "publishing new version");
        let next = Arc::new(next);
        sender.send_replace(next.clone());
        entry.fan_out(&next, &self.metrics);
        Ok(())
    }

    /// Refreshes every environment this replica serves (after missed notifications).
    pub(crate) async fn refresh_all(&self) {
        let envs: Vec<Uuid> = {
            let envs = self.envs.lock().unwrap_or_else(|p| p.into_inner());
            envs.iter().filter(|(_, e)| e.sender.initialized()).map(|(id, _)| *id).collect()
        };
        for env in envs {
            if let Err(e) = self.refresh(env).await {
                warn!(environment = %env, error = %e, "could not refresh environment");
            }
        }
    }

    /// Drops environments nobody has watched for a while.
    fn evict_idle(&self) {
        let mut envs = self.envs.lock().unwrap_or_else(|p| p.into_inner());
        envs.retain(|_, e| {
            let Some(sender) = e.sender.get() else { return true };
            if sender.receiver_count() > 0 {
                return true;
            }
            let mut idle = e.idle_since.lock().unwrap_or_else(|p| p.into_inner());
            let since = *idle.get_or_insert_with(Instant::now);
            since.elapsed() < IDLE_EVICTION
        });
    }

    /// Ends every stream opened with API key `key`; returns how many.
    pub(crate) fn revoke(&self, key: Uuid) -> usize {
        let streams = self.streams();
        let mut ended = 0;
        for stream in streams.iter().filter(|s| s.key() == key) {
            stream.revoke();
            ended += 1;
        }
        if ended > 0 {
            info!(key = %key, streams = ended, "api key revoked; ending its streams");
        }
        ended
    }

    /// Ends the streams whose key no longer works, in case a revocation notice was missed.
    pub(crate) async fn recheck_keys(&self) {
        let mut keys: Vec<Uuid> = self.streams().iter().map(|s| s.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return;
        }
        match self.store.active_keys(&keys).await {
            Ok(active) => {
                for key in keys.into_iter().filter(|k| !active.contains(k)) {
                    self.revoke(key);
                }
            }
            Err(e) => warn!(error = %e, "cannot check the keys of open streams"),
        }
    }

    /// Every stream of every environment served here.
    fn streams(&self) -> Vec<Arc<Stream>> {
        let entries: Vec<Arc<EnvEntry>> =
            self.envs.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        entries.iter().flat_map(|e| lock(&e.streams).values().cloned().collect::<Vec<_>>()).collect()
    }

    /// Environments served here and their stream counts.
    pub(crate) fn stream_counts(&self) -> Vec<(Uuid, i32)> {
        let envs = self.envs.lock().unwrap_or_else(|p| p.into_inner());
        envs.iter().filter_map(|(id, e)| e.sender.get().map(|s| (*id, s.receiver_count() as i32))).collect()
    }
}

/// Follows committed changes and revocations: LISTENs on PostgreSQL with a dedicated
/// connection, reconnecting with backoff; after every (re)connect and every `poll` it also
/// refreshes all environments and rechecks the keys of open streams, so a notification lost
/// while disconnected delays a change or a revocation by at most that long.
pub(crate) async fn follow_changes(
    hub: Arc<Hub>,
    auth: Arc<Authenticator>,
    database_url: String,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let mut backoff =
        Backoff::new(BackoffPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(5) });
    loop {
        let delay = match cohort_db::connect_dedicated(&database_url).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                warn!(error = %e, "change listener connection failed");
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).await {
                    warn!(error = %e, "LISTEN failed");
                    driver.abort();
                } else {
                    info!("following config changes");
                    backoff.reset();
                    hub.refresh_all().await;
                    hub.recheck_keys().await;
                    let mut tick = tokio::time::interval(poll);
                    tick.tick().await;
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => {
                                driver.abort();
                                return;
                            }
                            payload = rx.recv() => {
                                let Some(payload) = payload else { break };
                                match parse_payload(&payload) {
                                    Some(Notice::Change(env, version)) => {
                                        let hub = hub.clone();
                                        tokio::spawn(async move { hub.notify(env, version).await });
                                    }
                                    Some(Notice::Revoked(key)) => {
                                        auth.forget(key);
                                        hub.revoke(key);
                                    }
                                    None => debug!(payload, "ignoring an unknown notification"),
                                }
                            }
                            _ = tick.tick() => {
                                hub.evict_idle();
                                hub.refresh_all().await;
                                hub.recheck_keys().await;
                            }
                        }
                    }
                    driver.abort();
                }
                backoff.next_delay()
            }
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(error = %e, retry_in = ?delay, "cannot connect to follow config changes");
                delay
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// What a notification on [`NOTIFY_CHANNEL`] says.
#[derive(Debug, PartialEq, Eq)]
enum Notice {
    /// An environment reached a version.
    Change(Uuid, u64),
    /// An API key was revoked.
    Revoked(Uuid),
}

fn parse_payload(payload: &str) -> Option<Notice> {
    if let Some(key) = payload.strip_prefix(REVOKED_PREFIX) {
        return Some(Notice::Revoked(Uuid::parse_str(key).ok()?));
    }
    let (env, version) = payload.split_once(':')?;
    Some(Notice::Change(Uuid::parse_str(env).ok()?, version.parse().ok()?))
}

#[cfg(test)]
mod tests;
