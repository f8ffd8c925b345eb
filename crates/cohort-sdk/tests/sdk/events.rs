//! Events against the fake event service: exposures (deduplicated, with breakdown
//! attributes) and metrics in batches; retries across a restart and lost acks store every
//! event exactly once by id; a full queue drops and counts.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_proto::events::v1 as epb;
use cohort_sdk::{Client, ClientBuilder, Context, MetricEvent, TrackError};

use crate::support::{EXPERIMENT_ID, EventLog, FakeEvents, KEY, dead_addr, defs, eventually};

/// An offline client (bootstrap definitions, no config stream) that sends events to `uri`.
fn builder(uri: String) -> ClientBuilder {
    Client::builder(KEY)
        .bootstrap(defs(21, true))
        .event_endpoint(uri)
        .event_retry_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .connect_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(2))
        .flush_timeout(Duration::from_secs(15))
}

fn ids(log: &Arc<Mutex<EventLog>>) -> HashSet<String> {
    log.lock().unwrap().stored.keys().cloned().collect()
}

#[tokio::test]
async fn exposures_and_metrics_are_batched_and_delivered() {
    let log = Arc::new(Mutex::new(EventLog::default()));
    let server = FakeEvents::start(log.clone(), None).await;
    let client = builder(server.uri())
        .event_batch_size(4)
        .event_flush_interval(Duration::from_secs(60))
        .build()
        .await
        .unwrap();

    for round in 0..3 {
        for i in 0..10 {
            let ctx = Context::new(format!("user-{i}")).with("country", "NZ").with("plan", "pro");
            let a = client.experiment("exp", &ctx);
            assert!(a.enrolled, "round {round}");
        }
    }
    for i in 0..5 {
        client.track(MetricEvent::new(format!("user-{i}"), "checkout").with_value(10.0 * i as f64)).unwrap();
    }
    client.flush().await.unwrap();

    let log_now = std::mem::take(&mut *log.lock().unwrap());
    assert_eq!(log_now.stored.len(), 15, "10 exposures (deduplicated over 3 rounds) and 5 metrics");
    assert!(
        log_now.batches.iter().all(|b| b.len() <= 4),
        "batch sizes {:?}",
        log_now.batches.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let mut exposures = 0;
    for e in log_now.stored.values() {
        uuid::Uuid::parse_str(&e.event_id).unwrap();
        assert!(e.timestamp_ms > 1_600_000_000_000);
        match e.kind.as_ref().unwrap() {
            epb::event::Kind::Exposure(x) => {
                exposures += 1;
                assert_eq!(x.experiment_id, EXPERIMENT_ID);
                assert!(x.variant == "control" || x.variant == "treatment");
                assert_eq!(x.config_version, 21);
                assert_eq!(x.attributes.len(), 1, "only the breakdown attributes: {:?}", x.attributes);
                assert_eq!(x.attributes["country"], "NZ");
            }
            epb::event::Kind::Metric(m) => {
                assert_eq!(m.name, "checkout");
                assert!(m.value.is_some());
            }
        }
    }
    assert_eq!(exposures, 10);
    let stats = client.stats();
    assert_eq!((stats.events_sent, stats.events_queued, stats.exposures_recorded), (15, 0, 10));
    assert_eq!(client.dropped_events(), 0);
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_partial_batch_goes_after_the_flush_interval() {
    let log = Arc::new(Mutex::new(EventLog::default()));
    let server = FakeEvents::start(log.clone(), None).await;
    let client = builder(server.uri()).event_flush_interval(Duration::from_millis(50)).build().await.unwrap();
    client.track(MetricEvent::new("u", "e")).unwrap();
    eventually("the lone event", || log.lock().unwrap().stored.len() == 1).await;
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_restart_and_lost_acks_still_store_everything_exactly_once() {
    let log = Arc::new(Mutex::new(EventLog::default()));
    let server = FakeEvents::start(log.clone(), None).await;
    let addr = server.addr();
    let client = builder(server.uri()).event_batch_size(5).build().await.unwrap();
    for i in 0..10 {
        client.track(MetricEvent::new(format!("u{i}"), "before")).unwrap();
    }
    client.flush().await.unwrap();
    assert_eq!(ids(&log).len(), 10);

    // The service goes down; events keep being recorded and retried.
    server.stop().await;
    for i in 0..10 {
        client.track(MetricEvent::new(format!("u{i}"), "during")).unwrap();
    }
    let flushing = {
        let client = client.clone();
        tokio::spawn(async move { client.flush().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(client.stats().events_queued > 0, "nothing can be delivered while the service is down");

    // It comes back on the same address, and its first two answers are lost after storing.
    log.lock().unwrap().fail_after_store =
        vec![tonic::Status::unavailable("ack lost"), tonic::Status::internal("ack lost again")];
    let server = FakeEvents::start(log.clone(), Some(addr)).await;
    flushing.await.unwrap().unwrap();

    let log_now = std::mem::take(&mut *log.lock().unwrap());
    assert_eq!(log_now.stored.len(), 20, "every event stored once");
    let retried = log_now.received.values().filter(|n| **n > 1).count();
    assert!(retried >= 5, "lost acks must lead to retries with the same ids ({retried} retried)");
    let stats = client.stats();
    assert_eq!((stats.events_sent, stats.events_queued), (20, 0));
    assert_eq!(client.dropped_events(), 0);
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let addr = dead_addr().await;
    let client = builder(format!("http://{addr}"))
        .max_queued_events(10)
        .flush_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let mut full = 0;
    for i in 0..25 {
        match client.track(MetricEvent::new(format!("u{i}"), "e")) {
            Ok(()) => {}
            Err(TrackError::QueueFull(10)) => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    // Exposures are subject to the same bound, and never fail the evaluation.
    for i in 0..5 {
        assert!(client.experiment("exp", &Context::new(format!("x{i}"))).enrolled);
    }
    assert_eq!(full, 15);
    let stats = client.stats();
    assert_eq!((stats.events_queued, stats.events_dropped), (10, 20));
    assert_eq!(client.dropped_events(), 20);
    // Closing cannot deliver: the rest is counted as abandoned, not lost silently.
    assert!(client.close().await.is_err());
    assert_eq!(client.stats().events_abandoned, 10);
    assert_eq!(client.dropped_events(), 30);
    assert_eq!(client.track(MetricEvent::new("u", "e")), Err(TrackError::Disabled));
}

#[tokio::test]
async fn invalid_events_are_refused_at_track() {
    let addr = dead_addr().await;
    let client = builder(format!("http://{addr}")).build().await.unwrap();
    assert!(matches!(client.track(MetricEvent::new("", "e")), Err(TrackError::Invalid { .. })));
    assert_eq!(client.stats().events_queued, 0);
    let offline = Client::from_definitions(&defs(1, true)).unwrap();
    assert_eq!(offline.track(MetricEvent::new("u", "e")), Err(TrackError::Disabled));
    drop(client);
}

/// The holdout in [`holdout_defs`].
const HOLDOUT_ID: &str = "00000000-0000-4000-8000-0000000000f1";

/// [`defs`] with an environment-wide holdout of half the units.
fn holdout_defs() -> cohort_sdk::Definitions {
    let mut d = defs(21, true);
    d.holdouts = vec![
        serde_json::from_value(serde_json::json!({"id": HOLDOUT_ID, "key": "h", "share_bp": 5000})).unwrap(),
    ];
    d
}

/// The exposures stored, as (unit, experiment id, variant, attribute count), sorted.
fn exposures(log: &Arc<Mutex<EventLog>>) -> Vec<(String, String, String, usize)> {
    let mut out: Vec<_> = log
        .lock()
        .unwrap()
        .stored
        .values()
        .filter_map(|e| match e.kind.as_ref()? {
            epb::event::Kind::Exposure(x) => {
                Some((x.unit.clone(), x.experiment_id.clone(), x.variant.clone(), x.attributes.len()))
            }
            epb::event::Kind::Metric(_) => None,
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_held_out_unit_records_the_holdout_exposure_only_and_a_general_unit_both() {
    let log = Arc::new(Mutex::new(EventLog::default()));
    let server = FakeEvents::start(log.clone(), None).await;
    let client = builder(server.uri()).bootstrap(holdout_defs()).build().await.unwrap();

    let (mut held_out, mut general) = (Vec::new(), Vec::new());
    for i in 0..40 {
        let unit = format!("user-{i}");
        let ctx = Context::new(unit.as_str()).with("country", "NZ");
        // Twice: the dedup window keeps one of each.
        for _ in 0..2 {
            let a = client.experiment("exp", &ctx);
            if a.enrolled { general.push(unit.clone()) } else { held_out.push(unit.clone()) }
        }
    }
    held_out.dedup();
    general.dedup();
    assert!(!held_out.is_empty() && !general.is_empty(), "{held_out:?} {general:?}");
    client.flush().await.unwrap();

    let stored = exposures(&log);
    for unit in &held_out {
        let mine: Vec<_> = stored.iter().filter(|x| &x.0 == unit).collect();
        assert_eq!(mine, [&(unit.clone(), HOLDOUT_ID.to_owned(), "holdout".to_owned(), 0)], "{unit}");
    }
    for unit in &general {
        let mine: Vec<_> =
            stored.iter().filter(|x| &x.0 == unit).map(|x| (&x.1[..], &x.2[..], x.3)).collect();
        assert_eq!(mine.len(), 2, "{unit}: {mine:?}");
        assert!(mine.contains(&(HOLDOUT_ID, "general", 0)), "{unit}: {mine:?}");
        assert!(mine.iter().any(|x| x.0 == EXPERIMENT_ID && x.2 == 1), "{unit}: {mine:?}");
    }
    assert_eq!(stored.len(), held_out.len() + 2 * general.len());
    assert_eq!(client.stats().exposures_recorded, stored.len() as u64);
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn holdout_exposures_are_recorded_when_the_decision_is() {
    let log = Arc::new(Mutex::new(EventLog::default()));
    let server = FakeEvents::start(log.clone(), None).await;
    let client = builder(server.uri()).bootstrap(holdout_defs()).build().await.unwrap();

    let cfg = client.config();
    let ctx = Context::new("user-1");
    let d = cfg.evaluate_without_exposure("exp", &ctx);
    let hit = d.holdout.expect("exp is in the holdout's scope");
    // Flags are never in a holdout's scope, and record nothing.
    assert!(cfg.evaluate("f", &ctx).holdout.is_none());
    client.flush().await.unwrap();
    assert_eq!(exposures(&log), [], "evaluate_without_exposure records nothing");

    cfg.record_exposure(&d, &ctx);
    client.flush().await.unwrap();
    let variant = if hit.held_out { "holdout" } else { "general" };
    let mut expected = vec![("user-1".to_owned(), HOLDOUT_ID.to_owned(), variant.to_owned(), 0)];
    if d.enrolled {
        expected.push(("user-1".to_owned(), EXPERIMENT_ID.to_owned(), d.variant.unwrap().to_owned(), 0));
        expected.sort();
    }
    assert_eq!(exposures(&log), expected);
    drop(cfg);
    client.close().await.unwrap();
    server.stop().await;
}
