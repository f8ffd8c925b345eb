//! The event worker against an in-memory sink, on a paused clock: batching by size and time,
//! retries with stable ids, retry hints, refusals, the memory bound, flush and shutdown.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_backoff::BackoffPolicy;
use cohort_proto::events::v1 as pb;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{EventHandle, EventOptions, MetricEvent, Sink, start};
use crate::error::TrackError;

/// What the sink saw and how it answers.
#[derive(Default)]
struct Script {
    /// Every attempt: when, and the event ids.
    attempts: Vec<(Instant, Vec<String>)>,
    /// Answers in order; after them, accept everything.
    answers: VecDeque<Result<pb::SendBatchResponse, Status>>,
    /// Never answer (a hung service).
    hang: bool,
}

#[derive(Clone, Default)]
struct FakeSink(Arc<Mutex<Script>>);

impl Sink for FakeSink {
    async fn send(&mut self, batch: pb::SendBatchRequest) -> Result<pb::SendBatchResponse, Status> {
        let (answer, hang) = {
            let mut s = self.0.lock().unwrap();
            let ids = batch.events.iter().map(|e| e.event_id.clone()).collect();
            s.attempts.push((Instant::now(), ids));
            let accepted = pb::SendBatchResponse { accepted: batch.events.len() as u32, rejected: vec![] };
            (s.answers.pop_front().unwrap_or(Ok(accepted)), s.hang)
        };
        if hang {
            std::future::pending::<()>().await;
        }
        answer
    }
}

impl FakeSink {
    fn attempts(&self) -> Vec<Vec<String>> {
        self.0.lock().unwrap().attempts.iter().map(|(_, ids)| ids.clone()).collect()
    }
}

fn options(batch_size: usize, max_queued: usize) -> EventOptions {
    EventOptions {
        batch_size,
        flush_interval: Duration::from_secs(10),
        max_queued_events: max_queued,
        exposure_dedup_capacity: 1024,
        // One worker keeps the order of attempts predictable; `senders_deliver_side_by_side`
        // covers several.
        senders: 1,
        retry_backoff: BackoffPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(5) },
    }
}

fn spawn(
    sink: FakeSink,
    opts: &EventOptions,
) -> (EventHandle, CancellationToken, tokio::task::JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let (handle, worker) = start(sink, opts, cancel.clone());
    (handle, cancel, tokio::spawn(worker))
}

fn track(h: &EventHandle, n: usize) {
    for i in 0..n {
        h.queue.track(MetricEvent::new(format!("u{i}"), "click")).unwrap();
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

async fn flush(h: &EventHandle) {
    h.flush().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn batches_by_size_then_by_time() {
    let sink = FakeSink::default();
    let (h, _cancel, _task) = spawn(sink.clone(), &options(3, 100));
    track(&h, 7);
    settle().await;
    assert_eq!(sink.attempts().iter().map(Vec::len).collect::<Vec<_>>(), [3, 3]);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(sink.attempts().iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(h.queue.counters.sent.load(Ordering::Relaxed), 7);
    assert_eq!(h.queue.counters.queued.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn retries_keep_event_ids_and_back_off() {
    let sink = FakeSink::default();
    {
        let mut s = sink.0.lock().unwrap();
        s.answers.push_back(Err(Status::unavailable("down")));
        s.answers.push_back(Err(Status::unavailable("still down")));
    }
    let (h, _cancel, _task) = spawn(sink.clone(), &options(2, 100));
    track(&h, 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = sink.attempts();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|ids| *ids == attempts[0]), "ids changed between retries: {attempts:?}");
    let ids: Vec<uuid::Uuid> = attempts[0].iter().map(|id| uuid::Uuid::parse_str(id).unwrap()).collect();
    assert!(ids.iter().all(|id| id.get_version_num() == 7), "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not time-ordered: {ids:?}");
    let times: Vec<Instant> = sink.0.lock().unwrap().attempts.iter().map(|(t, _)| *t).collect();
    let first_gap = times[1] - times[0];
    let second_gap = times[2] - times[1];
    assert!(
        first_gap >= Duration::from_millis(50) && first_gap <= Duration::from_millis(100),
        "{first_gap:?}"
    );
    assert!(
        second_gap >= Duration::from_millis(100) && second_gap <= Duration::from_millis(200),
        "{second_gap:?}"
    );
    assert_eq!(h.queue.counters.sent.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn resource_exhausted_honours_the_retry_hint() {
    let sink = FakeSink::default();
    sink.0.lock().unwrap().answers.push_back(Err(Status::with_error_details(
        Code::ResourceExhausted,
        "spool full",
        ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
    )));
    let (h, _cancel, _task) = spawn(sink.clone(), &options(1, 100));
    track(&h, 1);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let times: Vec<Instant> = sink.0.lock().unwrap().attempts.iter().map(|(t, _)| *t).collect();
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_secs(3) && gap <= Duration::from_secs(4), "{gap:?}");
    assert_eq!(h.queue.counters.sent.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refused_batch_is_counted_not_retried() {
    let sink = FakeSink::default();
    sink.0.lock().unwrap().answers.push_back(Err(Status::invalid_argument("too many events")));
    let (h, _cancel, _task) = spawn(sink.clone(), &options(2, 100));
    track(&h, 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(sink.attempts().len(), 1);
    assert_eq!(h.queue.counters.rejected.load(Ordering::Relaxed), 2);
    assert_eq!(h.queue.counters.queued.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn rejected_events_are_counted() {
    let sink = FakeSink::default();
    let rejected = pb::RejectedEvent {
        index: 1,
        event_id: "x".into(),
        field: "events[1].metric.unit".into(),
        reason: "bad".into(),
        batch: 0,
    };
    sink.0
        .lock()
        .unwrap()
        .answers
        .push_back(Ok(pb::SendBatchResponse { accepted: 2, rejected: vec![rejected] }));
    let (h, _cancel, _task) = spawn(sink.clone(), &options(3, 100));
    track(&h, 3);
    settle().await;
    assert_eq!(h.queue.counters.sent.load(Ordering::Relaxed), 2);
    assert_eq!(h.queue.counters.rejected.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn memory_is_bounded_and_drops_are_counted() {
    let sink = FakeSink::default();
    sink.0.lock().unwrap().hang = true;
    let (h, _cancel, _task) = spawn(sink.clone(), &options(2, 5));
    let mut full = 0;
    for i in 0..12 {
        match h.queue.track(MetricEvent::new(format!("u{i}"), "click")) {
            Ok(()) => {}
            Err(TrackError::QueueFull(5)) => full += 1,
            Err(e) => panic!("{e}"),
        }
        settle().await;
    }
    assert_eq!(full, 7);
    assert_eq!(h.queue.counters.dropped_full.load(Ordering::Relaxed), 7);
    assert_eq!(h.queue.counters.queued.load(Ordering::Relaxed), 5);
}

#[tokio::test(start_paused = true)]
async fn senders_deliver_side_by_side() {
    let sink = FakeSink::default();
    // A service that never answers: what is in flight at once is what the sink saw.
    sink.0.lock().unwrap().hang = true;
    let (h, _cancel, _task) = spawn(sink.clone(), &EventOptions { senders: 3, ..options(2, 100) });
    track(&h, 8);
    settle().await;
    // Three batches of two in flight together; the last two events wait behind them.
    assert_eq!(sink.attempts().iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
    assert_eq!(h.queue.counters.queued.load(Ordering::Relaxed), 8);
}

#[tokio::test(start_paused = true)]
async fn flush_reaches_every_sender() {
    let sink = FakeSink::default();
    let (h, _cancel, _task) = spawn(sink.clone(), &EventOptions { senders: 4, ..options(100, 1000) });
    track(&h, 10);
    flush(&h).await;
    // Round-robin: every worker held a partial batch, and flush sent them all.
    assert_eq!(sink.attempts().len(), 4);
    assert_eq!(sink.attempts().iter().map(Vec::len).sum::<usize>(), 10);
    assert_eq!(h.queue.counters.sent.load(Ordering::Relaxed), 10);
}

#[tokio::test(start_paused = true)]
async fn flush_delivers_everything_queued() {
    let sink = FakeSink::default();
    let (h, _cancel, _task) = spawn(sink.clone(), &options(4, 100));
    track(&h, 10);
    flush(&h).await;
    assert_eq!(sink.attempts().iter().map(Vec::len).sum::<usize>(), 10);
    assert_eq!(h.queue.counters.sent.load(Ordering::Relaxed), 10);
}

#[tokio::test(start_paused = true)]
async fn cancel_counts_undelivered_events_as_abandoned() {
    let sink = FakeSink::default();
    sink.0.lock().unwrap().hang = true;
    let (h, cancel, task) = spawn(sink.clone(), &options(2, 100));
    track(&h, 3);
    settle().await;
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(h.queue.counters.abandoned.load(Ordering::Relaxed), 3);
    assert_eq!(h.queue.counters.queued.load(Ordering::Relaxed), 0);
    // After shutdown, recording drops and counts.
    assert_eq!(h.queue.track(MetricEvent::new("u", "e")), Err(TrackError::Disabled));
    assert_eq!(h.queue.counters.dropped_full.load(Ordering::Relaxed), 1);
}

#[test]
fn invalid_metric_events_are_refused_locally() {
    let long = "x".repeat(300);
    let cases = [
        MetricEvent::new("", "e"),
        MetricEvent::new(long.clone(), "e"),
        MetricEvent::new("u", ""),
        MetricEvent::new("u", "e").with_value(f64::NAN),
        MetricEvent::new("u", "e").with_property("p", long),
        MetricEvent::new("u", "e").with_property("", "v"),
    ];
    for event in cases {
        assert!(matches!(event.validate(), Err(TrackError::Invalid { .. })), "{event:?}");
    }
    let many = (0..33).fold(MetricEvent::new("u", "e"), |e, i| e.with_property(format!("p{i}"), "v"));
    assert!(many.validate().is_err());
    assert!(MetricEvent::new("u", "e").with_value(1.5).with_property("p", "v").validate().is_ok());
}

#[test]
fn truncation_respects_char_boundaries() {
    assert_eq!(super::truncate("héllo".to_owned(), 2), "h");
    assert_eq!(super::truncate("abc".to_owned(), 5), "abc");
}
