//! One `Sync` stream: catch the client up from the version it has, push each new version,
//! record its acknowledgments, keep it alive with heartbeats, and say goodbye on shutdown.
//!
//! New versions normally reach the stream through the hub's fan-out ([`Stream::offer`]), which
//! writes the shared, encoded response into the stream's queue without waking the session.
//! The session takes over delivery while it catches the client up, and when the queue was
//! full: then it waits for room and sends the newest state, skipping the ones in between.
//!
//! A stream ends with a status when its key is revoked (UNAUTHENTICATED, from the hub, see
//! [`Stream::revoke`]) or when the client sends something that is not a `SyncRequest` (the
//! codec's INVALID_ARGUMENT), so the client learns why.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use cohort_core::time::unix_ms;
use cohort_proto::config::v1 as pb;
use pb::sync_request::Message as In;
use pb::sync_response::Message as Out;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::hub::{EnvState, Hub, change_message};
use crate::metrics::{Metrics, Push};
use crate::propagation::Propagation;
use crate::store::Store;

/// How long a client has to send Hello after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A client further behind than this gets a snapshot rather than a delta from the log.
const MAX_DELTA_CHANGES: u64 = 500;
/// How long a closing status may wait for room in the queue of a client that does not read.
const END_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) type Outbound = mpsc::Sender<Result<pb::SyncResponse, Status>>;
type Permit<'a> = mpsc::Permit<'a, Result<pb::SyncResponse, Status>>;

/// Everything a stream session needs, shared by all sessions.
#[derive(Debug, Clone)]
pub(crate) struct SyncContext {
    pub hub: Arc<Hub>,
    pub store: Store,
    pub propagation: Arc<Propagation>,
    pub metrics: Metrics,
    pub heartbeat: Duration,
    pub shutdown: CancellationToken,
}

/// A stream as the hub's fan-out and its session share it.
#[derive(Debug)]
pub(crate) struct Stream {
    out: Outbound,
    sent: Mutex<Sent>,
    /// Wakes the session when an offer found the queue full.
    stalled: Notify,
    /// The API key the stream was opened with.
    key: Uuid,
    /// Fired when that key is revoked: no more config, and the session ends UNAUTHENTICATED.
    revoked: CancellationToken,
}

/// The newest config sent on a stream; messages are queued under this lock, so they are in
/// version order whoever sends them.
#[derive(Debug)]
struct Sent {
    /// The newest version sent to the client (or the one it said it had).
    version: u64,
    committed_at_ms: i64,
    /// The session delivers versions itself (it is catching the client up, or the queue was
    /// full); offers leave the stream alone.
    by_session: bool,
}

impl Stream {
    fn new(out: Outbound, known_version: u64, key: Uuid) -> Self {
        let sent = Sent { version: known_version, committed_at_ms: 0, by_session: true };
        Stream { out, sent: Mutex::new(sent), stalled: Notify::new(), key, revoked: CancellationToken::new() }
    }

    /// The id of the API key that opened the stream.
    pub(crate) fn key(&self) -> Uuid {
        self.key
    }

    /// The stream's key was revoked: nothing more is sent but the UNAUTHENTICATED that ends it.
    pub(crate) fn revoke(&self) {
        // Under the lock that every send takes, so nothing is queued after this returns.
        let _sent = self.sent();
        self.revoked.cancel();
    }

    fn is_revoked(&self) -> bool {
        self.revoked.is_cancelled()
    }

    fn sent(&self) -> MutexGuard<'_, Sent> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new state was published: queue what brings the client to it, unless the session has
    /// the stream or the queue is full (then the session is woken to catch up). Never waits.
    pub(crate) fn offer(&self, state: &EnvState, metrics: &Metrics) {
        let mut sent = self.sent();
        if sent.by_session || state.version <= sent.version || self.is_revoked() {
            return;
        }
        match self.out.try_reserve() {
            Ok(permit) => deliver(&mut sent, permit, state, metrics),
            Err(TrySendError::Full(())) => {
                sent.by_session = true;
                self.stalled.notify_one();
            }
            // The session ends when it next reads or sends.
            Err(TrySendError::Closed(())) => {}
        }
    }

    /// Hands delivery back to the offers after sending `newest` if the client lacks it.
    fn release(&self, permit: Permit<'_>, newest: &EnvState, metrics: &Metrics) {
        let mut sent = self.sent();
        if newest.version > sent.version && !self.is_revoked() {
            deliver(&mut sent, permit, newest, metrics);
        }
        sent.by_session = false;
    }

    /// Queues a message that is not config, dropping it when the queue is full: a client that
    /// does not read needs no heartbeat, and asks again for a pong.
    fn try_send(&self, message: Out, kind: Push, metrics: &Metrics) -> Result<(), Gone> {
        match self.out.try_send(Ok(pb::SyncResponse { message: Some(message) })) {
            Ok(()) => {
                metrics.pushed(kind);
                Ok(())
            }
            Err(TrySendError::Full(_)) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(Gone),
        }
    }
}

/// Queues the shared response that brings the client from what it was sent to `state`.
fn deliver(sent: &mut Sent, permit: Permit<'_>, state: &EnvState, metrics: &Metrics) {
    let (response, kind) = state.response_after(sent.version);
    permit.send(Ok(pb::SyncResponse { message: Some(Out::Encoded(response)) }));
    metrics.pushed(kind);
    sent.version = state.version;
    sent.committed_at_ms = state.committed_at_ms;
}

/// Decrements the stream gauge however the session ends.
struct Connected(Metrics);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.streams.dec();
    }
}

/// Ends the stream with `status`, unless the client neither reads nor is gone.
async fn end(out: &Outbound, status: Status) {
    let _ = tokio::time::timeout(END_TIMEOUT, out.send(Err(status))).await;
}

fn revoked() -> Status {
    Status::unauthenticated("the api key was revoked")
}

/// Runs one stream, opened with API key `key`, until the client leaves, the server shuts
/// down, the key is revoked, or sending fails.
pub(crate) async fn session(
    ctx: SyncContext,
    key: Uuid,
    env: Uuid,
    mut inbound: Streaming<pb::SyncRequest>,
    out: Outbound,
) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(pb::SyncRequest { message: Some(In::Hello(h)) }))) => h,
        Ok(Ok(Some(_))) => {
            end(&out, Status::invalid_argument("the first message on a Sync stream must be hello")).await;
            return;
        }
        Ok(Ok(None)) => return,
        // Bytes that are not a SyncRequest (INVALID_ARGUMENT), or the client is gone.
        Ok(Err(status)) => {
            end(&out, status).await;
            return;
        }
        Err(_) => {
            let _ = out.send(Err(Status::deadline_exceeded("no hello within 10 s"))).await;
            return;
        }
    };
    let stream = Arc::new(Stream::new(out.clone(), hello.known_version, key));
    let subscription = match ctx.hub.subscribe(env, stream.clone()).await {
        Ok(s) => s,
        Err(e) => {
            let _ = out.send(Err(e.into())).await;
            return;
        }
    };
    ctx.metrics.streams.inc();
    let _connected = Connected(ctx.metrics.clone());
    debug!(environment = %env, client = %hello.client, known_version = hello.known_version, "stream opened");

    let session = Session { ctx: &ctx, env, stream: &stream, updates: &subscription.updates };
    if session.catch_up().await.is_err() {
        if stream.is_revoked() {
            end(&out, revoked()).await;
        }
        return;
    }
    let mut heartbeat = tokio::time::interval(ctx.heartbeat);
    heartbeat.tick().await;
    // Made once: every stream of the replica waits on this token.
    let shutdown = ctx.shutdown.cancelled();
    tokio::pin!(shutdown);
    let revocation = stream.revoked.cancelled();
    tokio::pin!(revocation);
    let mut stalled = false;
    loop {
        // In this order, so an acknowledgment is handled without polling the rest.
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                let bye = Out::GoAway(pb::GoAway { reason: "server shutting down; reconnect".into() });
                if out.send(Ok(pb::SyncResponse { message: Some(bye) })).await.is_ok() {
                    ctx.metrics.pushed(Push::GoAway);
                }
                return;
            }
            _ = &mut revocation => {
                debug!(environment = %env, key = %key, "api key revoked; ending its stream");
                end(&out, revoked()).await;
                return;
            }
            message = inbound.message() => match message {
                Ok(Some(pb::SyncRequest { message: Some(m) })) => {
                    if session.handle(m).await.is_err() {
                        if stream.is_revoked() {
                            end(&out, revoked()).await;
                        }
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                // A malformed message (INVALID_ARGUMENT from the codec) or the client gone.
                Err(status) => {
                    debug!(environment = %env, error = %status, "stream closed by the client");
                    end(&out, status).await;
                    return;
                }
            },
            _ = stream.stalled.notified(), if !stalled => stalled = true,
            permit = out.reserve(), if stalled => {
                let Ok(permit) = permit else { return };
                stream.release(permit, &session.newest(), &ctx.metrics);
                stalled = false;
            }
            _ = heartbeat.tick() => {
                let sent = stream.sent();
                let beat = Out::Heartbeat(pb::Heartbeat {
                    version: sent.version,
                    interval_ms: ctx.heartbeat.as_millis() as u32,
                });
                if stream.try_send(beat, Push::Heartbeat, &ctx.metrics).is_err() {
                    return;
                }
            }
        }
    }
}

struct Session<'a> {
    ctx: &'a SyncContext,
    env: Uuid,
    stream: &'a Stream,
    updates: &'a watch::Receiver<Arc<EnvState>>,
}

struct Gone;

impl Session<'_> {
    fn newest(&self) -> Arc<EnvState> {
        self.updates.borrow().clone()
    }

    /// Queues `message`, waiting for room, after which the client holds `version` (committed
    /// at `committed_at_ms`, or 0 when it had it already and its acknowledgment means nothing).
    async fn send_config(
        &self,
        message: Out,
        kind: Push,
        version: u64,
        committed_at_ms: i64,
    ) -> Result<(), Gone> {
        let permit = self.stream.out.reserve().await.map_err(|_| Gone)?;
        let mut sent = self.stream.sent();
        if self.stream.is_revoked() {
            return Err(Gone);
        }
        permit.send(Ok(pb::SyncResponse { message: Some(message) }));
        self.ctx.metrics.pushed(kind);
        sent.version = version;
        sent.committed_at_ms = committed_at_ms;
        Ok(())
    }

    /// The first answer (nothing, the changes the client missed, or a snapshot), then anything
    /// published meanwhile; afterwards the hub's offers deliver.
    async fn catch_up(&self) -> Result<(), Gone> {
        let state = self.newest();
        let known = self.stream.sent().version;
        let (version, at) = (state.version, state.committed_at_ms);
        if known == state.version && known > 0 {
            let beat = pb::Heartbeat { version: known, interval_ms: self.ctx.heartbeat.as_millis() as u32 };
            self.send_config(Out::Heartbeat(beat), Push::Heartbeat, version, 0).await?;
        } else if let Some(delta) = self.delta_from_log(known, &state).await {
            self.send_config(Out::Delta(delta), Push::Delta, version, at).await?;
        } else {
            // No version, an unknown (newer) one, or too far behind: the whole config.
            let snapshot = Out::Encoded(state.snapshot_response());
            self.send_config(snapshot, Push::Snapshot, version, at).await?;
        }
        let permit = self.stream.out.reserve().await.map_err(|_| Gone)?;
        self.stream.release(permit, &self.newest(), &self.ctx.metrics);
        Ok(())
    }

    /// The changes from `known` to `state`, when the client is not too far behind.
    async fn delta_from_log(&self, known: u64, state: &EnvState) -> Option<pb::Delta> {
        if known == 0 || known >= state.version || state.version - known > MAX_DELTA_CHANGES {
            return None;
        }
        match self.ctx.store.changes(self.env, known, state.version).await {
            Ok(changes) if crate::store::versions_contiguous(&changes, known, state.version) => {
                Some(pb::Delta {
                    from_version: known,
                    to_version: state.version,
                    changes: changes.iter().map(change_message).collect(),
                    committed_at_ms: state.committed_at_ms,
                })
            }
            Ok(_) => None,
            Err(e) => {
                warn!(environment = %self.env, error = %e, "cannot read changes; sending a snapshot");
                None
            }
        }
    }

    async fn handle(&self, message: In) -> Result<(), Gone> {
        match message {
            In::Ack(ack) => {
                self.ctx.metrics.acks.inc();
                let committed_at_ms = {
                    let sent = self.stream.sent();
                    if ack.version == sent.version { sent.committed_at_ms } else { 0 }
                };
                if committed_at_ms > 0 {
                    let latency_ms = (unix_ms(SystemTime::now()) - committed_at_ms).max(0);
                    self.ctx.metrics.propagation_seconds.observe(latency_ms as f64 / 1000.0);
                    self.ctx.propagation.record(self.env, ack.version, latency_ms as f32);
                }
                Ok(())
            }
            In::Ping(ping) => {
                self.stream.try_send(Out::Pong(pb::Pong { nonce: ping.nonce }), Push::Pong, &self.ctx.metrics)
            }
            // A second hello is a client confused about its state: start it over.
            In::Hello(hello) => {
                {
                    let mut sent = self.stream.sent();
                    sent.version = hello.known_version;
                    sent.committed_at_ms = 0;
                    sent.by_session = true;
                }
                self.catch_up().await
            }
        }
    }
}

#[cfg(test)]
mod tests;
