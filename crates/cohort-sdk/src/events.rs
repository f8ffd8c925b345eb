//! Exposure and metric events: a bounded, non-blocking queue on the evaluation side and a
//! background worker that batches events (by size or time) and delivers them to the event
//! service with retries.
//!
//! - Recording never waits: a counter reserves a slot under `max_queued_events`, then the
//!   event goes into an unbounded channel (memory is bounded by the counter). Over the bound
//!   the event is dropped, counted and logged (at most every 10 s).
//! - Each event gets its time-ordered UUID v7 id when the worker takes it off the channel,
//!   before any send attempt, so every retry carries the same id and the service stores it once.
//! - Events are spread round-robin over `senders` workers, each batching and delivering on
//!   its own, so a slow round trip to the event service does not cap throughput at one batch
//!   per round trip.
//! - Retryable failures (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ...) back off with
//!   jitter, honouring `google.rpc.RetryInfo` on RESOURCE_EXHAUSTED; refusals that a retry
//!   cannot fix (INVALID_ARGUMENT, UNAUTHENTICATED, per-event `rejected`) are counted as rejected.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use cohort_backoff::{Backoff, BackoffPolicy};
use cohort_core::model::{GENERAL_VARIANT, HOLDOUT_VARIANT};
use cohort_core::time::unix_ms;
use cohort_core::{Context, Decision, TARGETING_KEY_ATTRIBUTE};
use cohort_proto::events::v1 as pb;
use cohort_proto::events::v1::event_service_client::EventServiceClient;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use tracing::{debug, error, warn};
use uuid::Uuid;

use crate::dedup::DedupWindow;
use crate::error::TrackError;

/// Most events the event service takes in one batch.
pub const MAX_BATCH_SIZE: usize = 1000;
/// Longest unit, event name, property name (bytes) the event service accepts.
const MAX_UNIT_BYTES: usize = 256;
const MAX_NAME_BYTES: usize = 128;
/// Longest attribute or property value; longer breakdown values are truncated.
const MAX_VALUE_BYTES: usize = 256;
const MAX_PROPERTIES: usize = 32;
/// Most workers delivering batches side by side.
pub const MAX_SENDERS: usize = 16;
/// How often a full queue is logged, at most.
const DROP_LOG_INTERVAL_MS: u64 = 10_000;

/// How events are batched, bounded and retried.
#[derive(Debug, Clone)]
pub struct EventOptions {
    /// A batch is sent when it holds this many events (at most 1000).
    pub batch_size: usize,
    /// ... or when its oldest event has waited this long.
    pub flush_interval: Duration,
    /// Events held in memory (queued and in flight) at most; beyond it new events are dropped
    /// and counted.
    pub max_queued_events: usize,
    /// Distinct (unit, experiment, variant) exposures remembered for deduplication.
    pub exposure_dedup_capacity: usize,
    /// Workers delivering batches side by side (at most [`MAX_SENDERS`]).
    pub senders: usize,
    /// Retry delays between failed deliveries of a batch.
    pub retry_backoff: BackoffPolicy,
}

impl Default for EventOptions {
    fn default() -> Self {
        EventOptions {
            batch_size: 500,
            flush_interval: Duration::from_secs(1),
            max_queued_events: 100_000,
            exposure_dedup_capacity: 1 << 16,
            senders: 2,
            retry_backoff: BackoffPolicy {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(30),
            },
        }
    }
}

/// A metric event for [`crate::Client::track`]: a unit did something a metric counts or sums.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEvent {
    pub unit: String,
    /// The event name metrics refer to, e.g. `checkout`.
    pub name: String,
    /// A finite number for continuous metrics (revenue); `None` for conversions.
    pub value: Option<f64>,
    pub properties: HashMap<String, String>,
    /// When it happened; `None` means now.
    pub timestamp: Option<SystemTime>,
}

impl MetricEvent {
    pub fn new(unit: impl Into<String>, name: impl Into<String>) -> Self {
        MetricEvent {
            unit: unit.into(),
            name: name.into(),
            value: None,
            properties: HashMap::new(),
            timestamp: None,
        }
    }

    pub fn with_value(mut self, value: f64) -> Self {
        self.value = Some(value);
        self
    }

    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    pub fn at(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    fn validate(&self) -> Result<(), TrackError> {
        let invalid = |field: &str, message: String| TrackError::Invalid { field: field.to_owned(), message };
        let len_ok = |s: &str, max: usize| !s.is_empty() && s.len() <= max;
        if !len_ok(&self.unit, MAX_UNIT_BYTES) {
            return Err(invalid("unit", format!("must be 1 to {MAX_UNIT_BYTES} bytes")));
        }
        if !len_ok(&self.name, MAX_NAME_BYTES) {
            return Err(invalid("name", format!("must be 1 to {MAX_NAME_BYTES} bytes")));
        }
        if self.value.is_some_and(|v| !v.is_finite()) {
            return Err(invalid("value", "must be finite".to_owned()));
        }
        if self.properties.len() > MAX_PROPERTIES {
            return Err(invalid("properties", format!("at most {MAX_PROPERTIES} allowed")));
        }
        for (name, value) in &self.properties {
            if !len_ok(name, MAX_NAME_BYTES) {
                return Err(invalid("properties", format!("names must be 1 to {MAX_NAME_BYTES} bytes")));
            }
            if value.len() > MAX_VALUE_BYTES {
                return Err(invalid(
                    &format!("properties[{name}]"),
                    format!("at most {MAX_VALUE_BYTES} bytes"),
                ));
            }
        }
        Ok(())
    }
}

/// An event as queued, before it gets its id.
#[derive(Debug)]
pub(crate) enum Pending {
    Exposure {
        timestamp_ms: i64,
        unit: String,
        experiment_id: Uuid,
        variant: String,
        config_version: u64,
        attributes: HashMap<String, String>,
    },
    Metric {
        timestamp_ms: i64,
        event: MetricEvent,
    },
}

impl Pending {
    /// The wire event, with a fresh UUID v7 id that every retry reuses: time-ordered, so the
    /// event store's id index grows at its end rather than everywhere.
    fn into_wire(self) -> pb::Event {
        let event_id = Uuid::now_v7().hyphenated().to_string();
        match self {
            Pending::Exposure { timestamp_ms, unit, experiment_id, variant, config_version, attributes } => {
                pb::Event {
                    event_id,
                    timestamp_ms,
                    kind: Some(pb::event::Kind::Exposure(pb::Exposure {
                        unit,
                        experiment_id: experiment_id.hyphenated().to_string(),
                        variant,
                        config_version: i64::try_from(config_version).unwrap_or(i64::MAX),
                        attributes,
                    })),
                }
            }
            Pending::Metric { timestamp_ms, event } => pb::Event {
                event_id,
                timestamp_ms,
                kind: Some(pb::event::Kind::Metric(pb::Metric {
                    unit: event.unit,
                    name: event.name,
                    value: event.value,
                    properties: event.properties,
                })),
            },
        }
    }
}

/// Truncates to at most `max` bytes on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Event counts, shared by the queue, the worker and the client's stats.
#[derive(Debug, Default)]
pub(crate) struct EventCounters {
    /// Events in memory: queued in the channel, batched, or in flight.
    pub(crate) queued: AtomicUsize,
    /// Events the service stored.
    pub(crate) sent: AtomicU64,
    /// Events dropped because the queue was full (or the client closed).
    pub(crate) dropped_full: AtomicU64,
    /// Events the service refused (per event, or the whole batch with a non-retryable status).
    pub(crate) rejected: AtomicU64,
    /// Events still undelivered when the client shut down.
    pub(crate) abandoned: AtomicU64,
    /// Exposures recorded (after deduplication).
    pub(crate) exposures: AtomicU64,
}

/// The evaluation side: records events without waiting.
#[derive(Debug)]
pub(crate) struct EventQueue {
    /// One channel per sender worker, taken in turn.
    txs: Box<[mpsc::UnboundedSender<Pending>]>,
    next_tx: AtomicUsize,
    max_queued: usize,
    pub(crate) counters: Arc<EventCounters>,
    dedup: DedupWindow,
    last_drop_log_ms: AtomicU64,
}

impl EventQueue {
    /// Records a decision's exposures, each once per (unit, experiment, variant) within the
    /// dedup window: the experiment's when the unit is enrolled, and its holdout's (under the
    /// holdout's id, variant `holdout` or `general`, no attributes) when it has one.
    #[inline]
    pub(crate) fn expose(&self, d: &Decision<'_>, ctx: &Context, config_version: u64) {
        let Some(unit) = ctx.key() else { return };
        if let Some(hit) = d.holdout {
            let variant = if hit.held_out { HOLDOUT_VARIANT } else { GENERAL_VARIANT };
            if self.dedup.first_sighting(unit, hit.holdout.id(), variant) {
                self.expose_holdout(hit.holdout.id(), variant, unit, config_version);
            }
        }
        let (true, Some(exp), Some(variant)) = (d.enrolled, d.experiment, d.variant) else {
            return;
        };
        if !self.dedup.first_sighting(unit, exp.id(), variant) {
            return;
        }
        self.expose_slow(exp, variant, unit, ctx, config_version);
    }

    #[cold]
    fn expose_holdout(&self, holdout_id: Uuid, variant: &str, unit: &str, config_version: u64) {
        let pending = Pending::Exposure {
            timestamp_ms: unix_ms(SystemTime::now()),
            unit: unit.to_owned(),
            experiment_id: holdout_id,
            variant: variant.to_owned(),
            config_version,
            attributes: HashMap::new(),
        };
        if self.push(pending).is_ok() {
            self.counters.exposures.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[cold]
    fn expose_slow(
        &self,
        exp: &cohort_core::CompiledExperiment,
        variant: &str,
        unit: &str,
        ctx: &Context,
        config_version: u64,
    ) {
        let attributes = exp
            .breakdown_attributes()
            .iter()
            .filter_map(|name| {
                let value = match ctx.attributes.get(name) {
                    Some(v) => v.to_breakdown_string(),
                    None if name == TARGETING_KEY_ATTRIBUTE => unit.to_owned(),
                    None => return None,
                };
                Some((name.clone(), truncate(value, MAX_VALUE_BYTES)))
            })
            .collect();
        let pending = Pending::Exposure {
            timestamp_ms: unix_ms(SystemTime::now()),
            unit: unit.to_owned(),
            experiment_id: exp.id(),
            variant: variant.to_owned(),
            config_version,
            attributes,
        };
        if self.push(pending).is_ok() {
            self.counters.exposures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a metric event.
    pub(crate) fn track(&self, event: MetricEvent) -> Result<(), TrackError> {
        event.validate()?;
        let timestamp_ms = unix_ms(event.timestamp.unwrap_or_else(SystemTime::now));
        self.push(Pending::Metric { timestamp_ms, event })
    }

    fn push(&self, pending: Pending) -> Result<(), TrackError> {
        let c = &self.counters;
        if c.queued.fetch_add(1, Ordering::Relaxed) >= self.max_queued {
            c.queued.fetch_sub(1, Ordering::Relaxed);
            self.count_drop();
            return Err(TrackError::QueueFull(self.max_queued));
        }
        let tx = &self.txs[self.next_tx.fetch_add(1, Ordering::Relaxed) % self.txs.len()];
        if tx.send(pending).is_err() {
            c.queued.fetch_sub(1, Ordering::Relaxed);
            self.count_drop();
            return Err(TrackError::Disabled);
        }
        Ok(())
    }

    #[cold]
    fn count_drop(&self) {
        let total = self.counters.dropped_full.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(unix_ms(SystemTime::now())).unwrap_or(0);
        let last = self.last_drop_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= DROP_LOG_INTERVAL_MS
            && self.last_drop_log_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            warn!(
                dropped_total = total,
                max_queued_events = self.max_queued,
                "event queue full or closed: dropping events"
            );
        }
    }
}

/// Where batches go: the event service, or a fake in tests.
pub(crate) trait Sink: Send + 'static {
    fn send(
        &mut self,
        batch: pb::SendBatchRequest,
    ) -> impl Future<Output = Result<pb::SendBatchResponse, Status>> + Send;
}

/// The event service over gRPC, rotating endpoints after transport failures.
#[derive(Debug, Clone)]
pub(crate) struct GrpcSink {
    clients: Vec<EventServiceClient<Channel>>,
    next: usize,
    authorization: AsciiMetadataValue,
}

impl GrpcSink {
    /// Channels connect lazily and reconnect by themselves.
    pub(crate) fn new(channels: Vec<Channel>, authorization: AsciiMetadataValue) -> Self {
        GrpcSink {
            clients: channels.into_iter().map(EventServiceClient::new).collect(),
            next: 0,
            authorization,
        }
    }
}

impl Sink for GrpcSink {
    async fn send(&mut self, batch: pb::SendBatchRequest) -> Result<pb::SendBatchResponse, Status> {
        let index = self.next % self.clients.len();
        let mut client = self.clients[index].clone();
        let mut request = tonic::Request::new(batch);
        request.metadata_mut().insert("authorization", self.authorization.clone());
        let result = client.send_batch(request).await;
        if let Err(status) = &result
            && matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown)
        {
            self.next = self.next.wrapping_add(1);
        }
        result.map(tonic::Response::into_inner)
    }
}

/// `Bearer <key>` as a header value.
pub(crate) fn bearer(sdk_key: &str) -> Option<AsciiMetadataValue> {
    MetadataValue::try_from(format!("Bearer {sdk_key}")).ok()
}

/// Requests to the worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Deliver everything queued so far, then answer.
    Flush(oneshot::Sender<()>),
}

/// The client's handle on the worker.
#[derive(Debug)]
pub(crate) struct EventHandle {
    pub(crate) queue: EventQueue,
    /// One per sender worker.
    pub(crate) commands: Vec<mpsc::Sender<Command>>,
}

impl EventHandle {
    /// Asks every worker to deliver what is queued; resolves when all have, or with an
    /// error when the workers are gone.
    pub(crate) async fn flush(&self) -> Result<(), ()> {
        let mut done = Vec::with_capacity(self.commands.len());
        for commands in &self.commands {
            let (tx, rx) = oneshot::channel();
            commands.send(Command::Flush(tx)).await.map_err(|_| ())?;
            done.push(rx);
        }
        for rx in done {
            rx.await.map_err(|_| ())?;
        }
        Ok(())
    }
}

/// Builds the queue and the workers that drain it into `sink`; spawn the returned future.
pub(crate) fn start<S: Sink + Clone>(
    sink: S,
    options: &EventOptions,
    cancel: CancellationToken,
) -> (EventHandle, impl Future<Output = ()> + Send + 'static) {
    let counters = Arc::new(EventCounters::default());
    let (mut txs, mut commands, mut workers) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..options.senders.clamp(1, MAX_SENDERS) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        txs.push(tx);
        commands.push(cmd_tx);
        workers.push(
            Worker {
                sink: sink.clone(),
                rx,
                commands: cmd_rx,
                counters: counters.clone(),
                batch_size: options.batch_size.clamp(1, MAX_BATCH_SIZE),
                flush_interval: options.flush_interval,
                backoff: Backoff::new(options.retry_backoff),
                cancel: cancel.clone(),
                buffer: Vec::new(),
            }
            .run(),
        );
    }
    let queue = EventQueue {
        txs: txs.into(),
        next_tx: AtomicUsize::new(0),
        max_queued: options.max_queued_events.max(1),
        counters: counters.clone(),
        dedup: DedupWindow::new(options.exposure_dedup_capacity),
        last_drop_log_ms: AtomicU64::new(0),
    };
    let all = async move {
        futures::future::join_all(workers).await;
        // Whatever the workers left behind when they stopped.
        let abandoned = counters.queued.swap(0, Ordering::Relaxed);
        if abandoned > 0 {
            counters.abandoned.fetch_add(abandoned as u64, Ordering::Relaxed);
            warn!(abandoned, "event delivery stopped with events undelivered");
        }
    };
    (EventHandle { queue, commands }, all)
}

/// The delivery loop.
struct Worker<S> {
    sink: S,
    rx: mpsc::UnboundedReceiver<Pending>,
    commands: mpsc::Receiver<Command>,
    counters: Arc<EventCounters>,
    batch_size: usize,
    flush_interval: Duration,
    backoff: Backoff,
    cancel: CancellationToken,
    /// The batch being filled, already with ids.
    buffer: Vec<pb::Event>,
}

/// How a delivery ended.
enum Delivered {
    Done,
    Cancelled,
}

impl<S: Sink> Worker<S> {
    async fn run(mut self) {
        // When the current batch's oldest event must go, if there is one.
        let mut deadline: Option<Instant> = None;
        loop {
            let flush_at = deadline;
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                Some(command) = self.commands.recv() => match command {
                    Command::Flush(done) => {
                        if let Delivered::Cancelled = self.deliver_everything().await {
                            break;
                        }
                        deadline = None;
                        let _ = done.send(());
                    }
                },
                pending = self.rx.recv() => {
                    let Some(pending) = pending else { break };
                    if self.buffer.is_empty() {
                        deadline = Some(Instant::now() + self.flush_interval);
                    }
                    self.buffer.push(pending.into_wire());
                    if self.buffer.len() >= self.batch_size {
                        if let Delivered::Cancelled = self.deliver_buffer().await {
                            break;
                        }
                        deadline = None;
                    }
                }
                _ = sleep_until_opt(flush_at) => {
                    if let Delivered::Cancelled = self.deliver_buffer().await {
                        break;
                    }
                    deadline = None;
                }
            }
        }
    }

    /// Drains the channel and delivers everything in batches.
    /// Only what is queued when the flush starts: a steady stream cannot keep it going.
    async fn deliver_everything(&mut self) -> Delivered {
        let mut remaining = self.rx.len();
        loop {
            while remaining > 0 && self.buffer.len() < self.batch_size {
                match self.rx.try_recv() {
                    Ok(pending) => self.buffer.push(pending.into_wire()),
                    Err(_) => break,
                }
                remaining -= 1;
            }
            if self.buffer.is_empty() {
                return Delivered::Done;
            }
            if let Delivered::Cancelled = self.deliver_buffer().await {
                return Delivered::Cancelled;
            }
        }
    }

    /// Delivers the current batch: retries until the service stores or refuses it.
    async fn deliver_buffer(&mut self) -> Delivered {
        if self.buffer.is_empty() {
            return Delivered::Done;
        }
        let request = pb::SendBatchRequest { events: std::mem::take(&mut self.buffer) };
        let n = request.events.len();
        loop {
            let result = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Delivered::Cancelled,
                r = self.sink.send(request.clone()) => r,
            };
            let delay = match result {
                Ok(response) => {
                    self.settle(&request, &response);
                    self.backoff.reset();
                    return Delivered::Done;
                }
                Err(status) if retryable(status.code()) => {
                    let hint = (status.code() == Code::ResourceExhausted)
                        .then(|| status.get_details_retry_info().and_then(|r| r.retry_delay))
                        .flatten();
                    let delay = match hint {
                        // The service said when; a little jitter keeps clients apart.
                        Some(hint) => hint + cohort_backoff::jitter(self.backoff.ceiling()) / 4,
                        None => self.backoff.next_delay(),
                    };
                    warn!(
                        code = ?status.code(),
                        message = status.message(),
                        events = n,
                        attempt = self.backoff.attempts(),
                        retry_in_ms = delay.as_millis() as u64,
                        "event batch not delivered; retrying"
                    );
                    delay
                }
                Err(status) => {
                    error!(
                        code = ?status.code(),
                        message = status.message(),
                        events = n,
                        "event service refused the batch; its events are dropped"
                    );
                    self.counters.rejected.fetch_add(n as u64, Ordering::Relaxed);
                    self.counters.queued.fetch_sub(n, Ordering::Relaxed);
                    return Delivered::Done;
                }
            };
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Delivered::Cancelled,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Counts a batch's outcome.
    fn settle(&self, request: &pb::SendBatchRequest, response: &pb::SendBatchResponse) {
        let n = request.events.len();
        let rejected = response.rejected.len().min(n);
        if let Some(first) = response.rejected.first() {
            warn!(
                rejected,
                first_event_id = first.event_id.as_str(),
                first_reason = first.reason.as_str(),
                "event service rejected events"
            );
        }
        self.counters.sent.fetch_add((n - rejected) as u64, Ordering::Relaxed);
        self.counters.rejected.fetch_add(rejected as u64, Ordering::Relaxed);
        self.counters.queued.fetch_sub(n, Ordering::Relaxed);
        debug!(events = n, accepted = response.accepted, rejected, "event batch delivered");
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Failures a later attempt may get past.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
    )
}

#[cfg(test)]
mod tests;
