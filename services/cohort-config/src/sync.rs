//! One `Sync` stream: catch the client up from the version it has, push each new version,
//! record its acknowledgments, keep it alive with heartbeats, and say goodbye on shutdown.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cohort_proto::config::v1 as pb;
use pb::sync_request::Message as In;
use pb::sync_response::Message as Out;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::hub::{EnvState, Hub, change_message};
use crate::metrics::{Metrics, PushLabels};
use crate::propagation::Propagation;
use crate::store::{Store, unix_ms};

/// How long a client has to send Hello after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A client further behind than this gets a snapshot rather than a delta from the log.
const MAX_DELTA_CHANGES: u64 = 500;

pub type Outbound = mpsc::Sender<Result<pb::SyncResponse, Status>>;

/// Everything a stream session needs, shared by all sessions.
#[derive(Debug, Clone)]
pub struct SyncContext {
    pub hub: Arc<Hub>,
    pub store: Store,
    pub propagation: Arc<Propagation>,
    pub metrics: Metrics,
    pub heartbeat: Duration,
    pub shutdown: CancellationToken,
}

/// Decrements the stream gauge however the session ends.
struct Connected(Metrics);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.streams.dec();
    }
}

/// Runs one stream until the client leaves, the server shuts down, or sending fails.
pub async fn session(ctx: SyncContext, env: Uuid, mut inbound: Streaming<pb::SyncRequest>, out: Outbound) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(pb::SyncRequest { message: Some(In::Hello(h)) }))) => h,
        Ok(Ok(Some(_))) => {
            let _ = out
                .send(Err(Status::invalid_argument("the first message on a Sync stream must be hello")))
                .await;
            return;
        }
        Ok(Ok(None)) | Ok(Err(_)) => return,
        Err(_) => {
            let _ = out.send(Err(Status::deadline_exceeded("no hello within 10 s"))).await;
            return;
        }
    };
    let mut updates = match ctx.hub.subscribe(env).await {
        Ok(rx) => rx,
        Err(e) => {
            let _ = out.send(Err(e.into())).await;
            return;
        }
    };
    ctx.metrics.streams.inc();
    let _connected = Connected(ctx.metrics.clone());
    debug!(environment = %env, client = %hello.client, known_version = hello.known_version, "stream opened");

    let mut session =
        Session { ctx: &ctx, env, out: &out, sent: hello.known_version, sent_committed_at_ms: 0 };
    let state = updates.borrow_and_update().clone();
    if session.catch_up(&state).await.is_err() {
        return;
    }
    let mut heartbeat = tokio::time::interval(ctx.heartbeat);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                let bye = Out::GoAway(pb::GoAway { reason: "server shutting down; reconnect".into() });
                let _ = session.send(bye, "go_away").await;
                return;
            }
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
                let state = updates.borrow_and_update().clone();
                if session.push(&state).await.is_err() {
                    return;
                }
            }
            message = inbound.message() => match message {
                Ok(Some(pb::SyncRequest { message: Some(m) })) => {
                    if session.handle(m).await.is_err() {
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => {
                    debug!(environment = %env, error = %e, "stream closed by the client");
                    return;
                }
            },
            _ = heartbeat.tick() => {
                let beat = Out::Heartbeat(pb::Heartbeat {
                    version: session.sent,
                    interval_ms: ctx.heartbeat.as_millis() as u32,
                });
                if session.send(beat, "heartbeat").await.is_err() {
                    return;
                }
            }
        }
    }
}

struct Session<'a> {
    ctx: &'a SyncContext,
    env: Uuid,
    out: &'a Outbound,
    /// The newest version sent to the client (or the one it said it had).
    sent: u64,
    sent_committed_at_ms: i64,
}

struct Gone;

impl Session<'_> {
    async fn send(&self, message: Out, kind: &'static str) -> Result<(), Gone> {
        self.ctx.metrics.pushes.get_or_create(&PushLabels { kind }).inc();
        self.out.send(Ok(pb::SyncResponse { message: Some(message) })).await.map_err(|_| Gone)
    }

    async fn snapshot(&mut self, state: &EnvState) -> Result<(), Gone> {
        self.send(Out::Snapshot(state.snapshot_message()), "snapshot").await?;
        self.mark_sent(state);
        Ok(())
    }

    fn mark_sent(&mut self, state: &EnvState) {
        self.sent = state.version;
        self.sent_committed_at_ms = state.committed_at_ms;
    }

    /// The first answer: nothing, the changes the client missed, or a snapshot.
    async fn catch_up(&mut self, state: &EnvState) -> Result<(), Gone> {
        let known = self.sent;
        if known == state.version && known > 0 {
            let beat = pb::Heartbeat { version: known, interval_ms: self.ctx.heartbeat.as_millis() as u32 };
            return self.send(Out::Heartbeat(beat), "heartbeat").await;
        }
        if known > 0 && known < state.version && state.version - known <= MAX_DELTA_CHANGES {
            match self.ctx.store.changes(self.env, known, state.version).await {
                Ok(changes) if changes.len() as u64 == state.version - known => {
                    let delta = pb::Delta {
                        from_version: known,
                        to_version: state.version,
                        changes: changes.iter().map(change_message).collect(),
                        committed_at_ms: state.committed_at_ms,
                    };
                    self.send(Out::Delta(delta), "delta").await?;
                    self.mark_sent(state);
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(environment = %self.env, error = %e, "cannot read changes; sending a snapshot")
                }
            }
        }
        // No version, an unknown (newer) one, or too far behind: the whole config.
        self.snapshot(state).await
    }

    /// A new state was published: the shared delta when the client is right behind it,
    /// else a snapshot of the newest state (intermediate versions are skipped).
    async fn push(&mut self, state: &EnvState) -> Result<(), Gone> {
        if state.version <= self.sent {
            return Ok(());
        }
        match &state.delta {
            Some(delta) if delta.from_version == self.sent => {
                self.send(Out::Delta(delta.clone()), "delta").await?;
                self.mark_sent(state);
                Ok(())
            }
            _ => self.snapshot(state).await,
        }
    }

    async fn handle(&mut self, message: In) -> Result<(), Gone> {
        match message {
            In::Ack(ack) => {
                self.ctx.metrics.acks.inc();
                if ack.version == self.sent && self.sent_committed_at_ms > 0 {
                    let latency_ms = (unix_ms(SystemTime::now()) - self.sent_committed_at_ms).max(0);
                    self.ctx.metrics.propagation_seconds.observe(latency_ms as f64 / 1000.0);
                    self.ctx.propagation.record(self.env, ack.version, latency_ms as f32);
                }
                Ok(())
            }
            In::Ping(ping) => self.send(Out::Pong(pb::Pong { nonce: ping.nonce }), "pong").await,
            // A second hello is a client confused about its state: start it over.
            In::Hello(hello) => {
                self.sent = hello.known_version;
                let state = self.ctx.hub.current(self.env).await.map_err(|_| Gone)?;
                self.catch_up(&state).await
            }
        }
    }
}
