//! The API's semantics: dedupe of retries, per-event errors, authentication, tenant isolation,
//! HTTP JSON, limits with retry hints, health, and graceful shutdown.

use std::time::Duration;

use cohort_proto::events::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::support::{
    Cluster, count, exposure, exposures, http_request, http_request_full, metric, now_ms, send, stored_ids,
    wait_until,
};

#[tokio::test]
async fn retried_batches_are_stored_once() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let pool = cluster.pool();
    let service = cluster.start_events(&[]).await;
    let mut client = service.client().await;

    let experiment = Uuid::new_v4();
    let mut batch: Vec<_> = (0..50).map(|i| exposure(Uuid::new_v4(), experiment, &format!("u{i}"))).collect();
    batch.extend((0..50).map(|i| metric(Uuid::new_v4(), &format!("u{i}"), Some(1.5))));
    for _ in 0..3 {
        let r = send(&mut client, &tenant.sdk_key, batch.clone()).await.unwrap();
        assert_eq!((r.accepted, r.rejected.len()), (100, 0));
    }
    // A marker after the retries: once it is stored, the retries before it were drained too.
    let marker = Uuid::new_v4();
    send(&mut client, &tenant.sdk_key, vec![metric(marker, "m", None)]).await.unwrap();
    wait_until(Duration::from_secs(30), "the marker to be stored", || async {
        stored_ids(&pool, tenant.environment_id).await.contains_key(&marker)
    })
    .await;
    assert_eq!(count(&pool, "exposures", tenant.environment_id).await, 50);
    assert_eq!(count(&pool, "metric_events", tenant.environment_id).await, 51);
    assert_eq!(service.metric("cohort_events_duplicates_skipped_total").await, 200.0);

    // What was stored is what was sent.
    let client_db = pool.get().await.unwrap();
    let row = client_db
        .query_one(
            "SELECT unit, variant, config_version, attributes->>'country', experiment_id FROM exposures
             WHERE event_id = $1",
            &[&Uuid::parse_str(&batch[7].event_id).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "u7");
    assert_eq!(row.get::<_, String>(1), "treatment");
    assert_eq!(row.get::<_, i64>(2), 3);
    assert_eq!(row.get::<_, String>(3), "NL");
    assert_eq!(row.get::<_, Uuid>(4), experiment);
    let value: Option<f64> = client_db
        .query_one("SELECT value FROM metric_events WHERE event_id = $1", &[&marker])
        .await
        .unwrap()
        .get(0);
    assert_eq!(value, None);
    cluster.stop_events().await;
}

#[tokio::test]
async fn bad_events_are_rejected_by_index_and_field_and_good_ones_kept() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let pool = cluster.pool();
    let service = cluster.start_events(&[]).await;
    let mut client = service.client().await;

    let experiment = Uuid::new_v4();
    let mut events =
        vec![exposure(Uuid::new_v4(), experiment, "ok-0"), exposure(Uuid::new_v4(), experiment, "")];
    let mut bad_id = exposure(Uuid::new_v4(), experiment, "x");
    bad_id.event_id = "not-a-uuid".to_owned();
    events.push(bad_id);
    events.push(metric(Uuid::new_v4(), "ok-3", Some(2.0)));
    let mut future = metric(Uuid::new_v4(), "x", None);
    future.timestamp_ms = now_ms() + 3_600_000;
    events.push(future);
    events.push(pb::Event { event_id: Uuid::new_v4().to_string(), timestamp_ms: now_ms(), kind: None });
    events.push(metric(Uuid::new_v4(), "x", Some(f64::NAN)));

    let r = send(&mut client, &tenant.sdk_key, events).await.unwrap();
    assert_eq!(r.accepted, 2);
    let reasons: Vec<(u32, &str)> = r.rejected.iter().map(|x| (x.index, x.reason.as_str())).collect();
    assert_eq!(reasons[0], (1, "events[1].exposure.unit: must be 1 to 256 bytes"));
    assert_eq!(reasons[1].0, 2);
    assert!(reasons[1].1.starts_with("events[2].event_id: must be a UUID"));
    assert_eq!(reasons[2], (4, "events[4].timestamp_ms: must not be more than 5 minutes in the future"));
    assert_eq!(reasons[3], (5, "events[5].kind: must be exactly one of exposure or metric"));
    assert_eq!(reasons[4], (6, "events[6].metric.value: must be a finite number"));
    assert_eq!(r.rejected[0].field, "events[1].exposure.unit");

    let too_many = send(&mut client, &tenant.sdk_key, exposures(1001)).await.unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert!(too_many.message().contains("at most 1000"), "{}", too_many.message());
    assert_eq!(send(&mut client, &tenant.sdk_key, vec![]).await.unwrap_err().code(), Code::InvalidArgument);

    wait_until(Duration::from_secs(30), "the two good events", || async {
        count(&pool, "exposures", tenant.environment_id).await == 1
            && count(&pool, "metric_events", tenant.environment_id).await == 1
    })
    .await;
    assert_eq!(service.metric("cohort_events_rejected_events_total").await, 5.0);
    cluster.stop_events().await;
}

#[tokio::test]
async fn unknown_keys_are_unauthenticated_and_tenants_are_isolated() {
    let mut cluster = Cluster::start().await;
    let a = cluster.db().seed_tenant("tenant-a").await;
    let b = cluster.db().seed_tenant("tenant-b").await;
    let pool = cluster.pool();
    let service = cluster.start_events(&[]).await;
    let mut client = service.client().await;

    let unknown = cohort_db::keys::generate(cohort_db::keys::KeyKind::Sdk).secret;
    for key in [unknown.as_str(), "garbage", ""] {
        let status = send(&mut client, key, exposures(1)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{key:?}: {status:?}");
    }
    let status = send(&mut client, &a.admin_key, exposures(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Tenant A's key writes only into A's environment: nothing in a request can name B's.
    let sent = exposures(20);
    send(&mut client, &a.sdk_key, sent.clone()).await.unwrap();
    let marker = Uuid::new_v4();
    send(&mut client, &b.sdk_key, vec![metric(marker, "b", None)]).await.unwrap();
    wait_until(Duration::from_secs(30), "both tenants' events", || async {
        count(&pool, "exposures", a.environment_id).await == 20
            && stored_ids(&pool, b.environment_id).await.contains_key(&marker)
    })
    .await;
    assert_eq!(count(&pool, "exposures", b.environment_id).await, 0);
    let b_ids = stored_ids(&pool, b.environment_id).await;
    assert_eq!(b_ids.len(), 1);

    // Revoked keys stop working once the cache entry expires (the test uses a short TTL
    // service below); unknown keys never reach a write.
    let (status, body) =
        http_request(service.http(), "POST", "/api/v1/events/batch", Some(&unknown), "{\"events\":[]}").await;
    assert_eq!(status, 401, "{body}");
    cluster.stop_events().await;
}

#[tokio::test]
async fn http_json_has_the_same_semantics() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let pool = cluster.pool();
    let service = cluster.start_events(&[("--max-request-bytes", "64KiB")]).await;

    let (good, metric_id) = (Uuid::new_v4(), Uuid::new_v4());
    let body = serde_json::json!({"events": [
        {"event_id": good, "timestamp_ms": now_ms(), "exposure": {
            "unit": "user-1", "experiment_id": Uuid::new_v4(), "variant": "control", "config_version": 4,
            "attributes": {"country": "DE"}}},
        {"event_id": Uuid::new_v4(), "timestamp_ms": now_ms(), "exposure": {
            "unit": "", "experiment_id": Uuid::new_v4(), "variant": "control"}},
        {"event_id": metric_id, "timestamp_ms": now_ms(), "metric": {"unit": "user-1", "name": "buy", "value": 9.5}}
    ]});
    let path = "/api/v1/events/batch";
    let (status, text) =
        http_request(service.http(), "POST", path, Some(&tenant.sdk_key), &body.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"][0]["index"], 1);
    assert_eq!(answer["rejected"][0]["reason"], "events[1].exposure.unit: must be 1 to 256 bytes");

    let (status, text) =
        http_request(service.http(), "POST", path, Some(&tenant.sdk_key), "{\"events\": [{\"bogus\": 1}]}")
            .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("events[0]"), "{text}");
    // A key written twice (here an attribute) is refused and named, not kept last-wins.
    let twice = r#"{"events": [{"event_id": "e", "timestamp_ms": 1, "exposure": {"unit": "u", "attributes": {"country": "DE", "country": "FR"}}}]}"#;
    let (status, text) = http_request(service.http(), "POST", path, Some(&tenant.sdk_key), twice).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("events[0].exposure.attributes.country: duplicate key"), "{text}");
    let (status, _) = http_request(service.http(), "POST", path, None, &body.to_string()).await;
    assert_eq!(status, 401);
    let huge = format!("{{\"events\": [], \"pad\": \"{}\"}}", "x".repeat(100_000));
    let (status, _) = http_request(service.http(), "POST", path, Some(&tenant.sdk_key), &huge).await;
    assert_eq!(status, 413);

    wait_until(Duration::from_secs(30), "the HTTP events", || async {
        let ids = stored_ids(&pool, tenant.environment_id).await;
        ids.contains_key(&good) && ids.contains_key(&metric_id)
    })
    .await;
    cluster.stop_events().await;
}

#[tokio::test]
async fn rate_limits_refuse_with_a_retry_hint() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let other = cluster.db().seed_tenant("other").await;
    let flags = [("--rate-limit-per-environment", "100"), ("--rate-limit-burst", "1000")];
    let service = cluster.start_events(&flags).await;
    let mut client = service.client().await;

    send(&mut client, &tenant.sdk_key, exposures(1000)).await.unwrap();
    let status = send(&mut client, &tenant.sdk_key, exposures(500)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = status.get_details_retry_info().expect("RetryInfo detail");
    let delay = retry.retry_delay.expect("a delay");
    assert!(delay > Duration::from_secs(1) && delay <= Duration::from_secs(6), "{delay:?}");
    // Another environment has its own bucket.
    send(&mut client, &other.sdk_key, exposures(1000)).await.unwrap();

    let (status, headers, _) = http_request_full(
        service.http(),
        "POST",
        "/api/v1/events/batch",
        Some(&tenant.sdk_key),
        &json_batch(500),
    )
    .await;
    assert_eq!(status, 429);
    assert!(headers.get("retry-after").is_some_and(|v| v.parse::<u64>().unwrap() >= 1), "{headers:?}");
    cluster.stop_events().await;
}

fn json_batch(n: usize) -> String {
    let events: Vec<_> = (0..n)
        .map(|_| {
            serde_json::json!({"event_id": Uuid::new_v4(), "timestamp_ms": now_ms(),
                                     "metric": {"unit": "u", "name": "n"}})
        })
        .collect();
    serde_json::json!({ "events": events }).to_string()
}

#[tokio::test]
async fn a_full_spool_refuses_with_a_retry_hint_and_drops_nothing() {
    // The config service's database is cut off too: cached keys outlive their TTL.
    let mut cluster = Cluster::behind_postgres_proxy().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let pool = cluster.pool();
    let flags = [("--spool-max-bytes", "2MiB"), ("--spool-segment-bytes", "1MiB")];
    let service = cluster.start_events(&flags).await;
    let mut client = service.client().await;
    let mut acked = Vec::new();
    let mut sent = Vec::new();
    let first = exposures(10);
    send(&mut client, &tenant.sdk_key, first.clone()).await.unwrap();
    acked.extend(first.iter().map(|e| Uuid::parse_str(&e.event_id).unwrap()));

    cluster.postgres().sever();
    let status = loop {
        let batch = exposures(500);
        let ids: Vec<Uuid> = batch.iter().map(|e| Uuid::parse_str(&e.event_id).unwrap()).collect();
        sent.extend_from_slice(&ids);
        match send(&mut client, &tenant.sdk_key, batch).await {
            Ok(_) => acked.extend(ids),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.get_details_retry_info().and_then(|r| r.retry_delay).is_some());
    let (code, headers, _) = http_request_full(
        service.http(),
        "POST",
        "/api/v1/events/batch",
        Some(&tenant.sdk_key),
        &json_batch(1000),
    )
    .await;
    assert_eq!(code, 429);
    assert!(headers.contains_key("retry-after"));

    cluster.postgres().restore();
    wait_until(Duration::from_secs(60), "the backlog to drain", || async {
        count(&pool, "exposures", tenant.environment_id).await as usize >= acked.len()
    })
    .await;
    sent.extend(first.iter().map(|e| Uuid::parse_str(&e.event_id).unwrap()));
    crate::support::assert_exactly_once(&stored_ids(&pool, tenant.environment_id).await, &acked, &sent);
    // With room again, appends are accepted.
    wait_until(Duration::from_secs(30), "the spool to have room", || async {
        send(&mut service.client().await, &tenant.sdk_key, exposures(10)).await.is_ok()
    })
    .await;
    cluster.stop_events().await;
}

#[tokio::test]
async fn stream_batches_acknowledges_every_batch_in_one_summary() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let pool = cluster.pool();
    let service = cluster.start_events(&[]).await;
    let mut client = service.client().await;

    let mut batches: Vec<pb::StreamBatchesRequest> =
        (0..5).map(|_| pb::StreamBatchesRequest { events: exposures(100) }).collect();
    batches[2].events[7].event_id = "bad".to_owned();
    let mut request = tonic::Request::new(tokio_stream::iter(batches));
    request.metadata_mut().insert("authorization", format!("Bearer {}", tenant.sdk_key).parse().unwrap());
    let summary = client.stream_batches(request).await.unwrap().into_inner();
    assert_eq!((summary.batches, summary.accepted), (5, 499));
    assert_eq!(summary.rejected.len(), 1);
    assert_eq!((summary.rejected[0].batch, summary.rejected[0].index), (2, 7));
    wait_until(Duration::from_secs(30), "499 exposures", || async {
        count(&pool, "exposures", tenant.environment_id).await == 499
    })
    .await;
    cluster.stop_events().await;
}

#[tokio::test]
async fn health_turns_serving_and_shutdown_keeps_the_spool_for_the_next_start() {
    let mut cluster = Cluster::behind_postgres_proxy().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let pool = cluster.pool();
    let service = cluster.start_events(&[]).await;

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", service.grpc()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    wait_until(Duration::from_secs(10), "SERVING", || {
        let mut health = health.clone();
        async move {
            let request =
                tonic_health::pb::HealthCheckRequest { service: cohort_events::SERVICE_NAME.to_owned() };
            health.check(request).await.is_ok_and(|r| r.into_inner().status == 1)
        }
    })
    .await;
    let (status, _) = http_request(service.admin(), "GET", "/readyz", None, "").await;
    assert_eq!(status, 200);
    let _ = &mut health;

    // Accept while the database is away, then stop: the events stay in the spool.
    let mut client = service.client().await;
    send(&mut client, &tenant.sdk_key, exposures(1)).await.unwrap();
    cluster.postgres().sever();
    let batch = exposures(300);
    let ids: Vec<Uuid> = batch.iter().map(|e| Uuid::parse_str(&e.event_id).unwrap()).collect();
    send(&mut client, &tenant.sdk_key, batch).await.unwrap();
    let took = cluster.stop_events().await;
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");

    cluster.postgres().restore();
    cluster.restart_events().await;
    wait_until(Duration::from_secs(30), "the spooled events after restart", || async {
        let stored = stored_ids(&pool, tenant.environment_id).await;
        ids.iter().all(|id| stored.get(id) == Some(&1))
    })
    .await;
    cluster.stop_events().await;
}

#[tokio::test]
async fn metric_values_past_the_analysis_limit_are_rejected_over_grpc_and_http() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let service = cluster.start_events(&[]).await;
    let mut client = service.client().await;

    // The value of the security test: finite, and one of them broke every analysis cycle.
    let events = vec![
        metric(Uuid::new_v4(), "u0", Some(1.7976931348623157e308)),
        metric(Uuid::new_v4(), "u1", Some(cohort_proto::MAX_ABS_METRIC_VALUE)),
        metric(Uuid::new_v4(), "u2", Some(-2e15)),
    ];
    let r = send(&mut client, &tenant.sdk_key, events).await.unwrap();
    assert_eq!(r.accepted, 1);
    let rejected: Vec<(u32, &str, &str)> =
        r.rejected.iter().map(|x| (x.index, x.field.as_str(), x.reason.as_str())).collect();
    assert_eq!(
        rejected,
        [
            (0, "events[0].metric.value", "events[0].metric.value: must be at most 1e15 in magnitude"),
            (2, "events[2].metric.value", "events[2].metric.value: must be at most 1e15 in magnitude"),
        ]
    );

    let body = serde_json::json!({"events": [
        {"event_id": Uuid::new_v4(), "timestamp_ms": now_ms(),
         "metric": {"unit": "u", "name": "buy", "value": 1.7976931348623157e308}},
    ]});
    let (status, text) = http_request(
        service.http(),
        "POST",
        "/api/v1/events/batch",
        Some(&tenant.sdk_key),
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["rejected"][0]["field"], "events[0].metric.value");
    assert_eq!(answer["rejected"][0]["reason"], "events[0].metric.value: must be at most 1e15 in magnitude");
    cluster.stop_events().await;
}

#[tokio::test]
async fn the_rate_limit_hint_lets_the_refused_batch_refill() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    // A full batch refills in 500 ms: a client refused a moment after its previous batch used
    // to be told to come back in the few milliseconds of the deficit. (Slow enough that even
    // a loaded machine sends the second batch before the first has refilled.)
    let flags = [("--rate-limit-per-environment", "2000"), ("--rate-limit-burst", "1000")];
    let service = cluster.start_events(&flags).await;
    let mut client = service.client().await;
    let refill = Duration::from_millis(500);

    let mut refused = None;
    for _ in 0..50 {
        if let Err(status) = send(&mut client, &tenant.sdk_key, exposures(1000)).await {
            refused = Some(status);
            break;
        }
    }
    let status = refused.expect("back-to-back full batches reach the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let delay = status.get_details_retry_info().and_then(|r| r.retry_delay).expect("a retry delay");
    assert!(delay >= refill, "{delay:?} is shorter than the batch's refill time");
    assert!(delay >= Duration::from_millis(100), "{delay:?} is under the floor");
    assert!(delay <= Duration::from_secs(30), "{delay:?} is over the cap");

    let mut retry_after = None;
    for _ in 0..50 {
        let (status, headers, _) = http_request_full(
            service.http(),
            "POST",
            "/api/v1/events/batch",
            Some(&tenant.sdk_key),
            &json_batch(1000),
        )
        .await;
        if status == 429 {
            retry_after = headers.get("retry-after").cloned();
            break;
        }
    }
    // Up to 500 ms, rounded up to whole seconds.
    assert_eq!(retry_after.as_deref(), Some("1"));
    cluster.stop_events().await;
}

#[tokio::test]
async fn a_client_key_sends_its_environments_exposures_and_nothing_else() {
    let mut cluster = Cluster::start().await;
    let tenant = cluster.db().seed_tenant("acme").await;
    let web = cluster.db().client_key(&tenant).await;
    let pool = cluster.pool();
    let service = cluster.start_events(&[]).await;
    let mut client = service.client().await;

    let sent = exposures(10);
    let r = send(&mut client, &web, sent.clone()).await.expect("a client key sends exposures");
    assert_eq!(r.accepted, 10);

    // A metric event anywhere in the batch refuses the whole batch: nothing of it is stored.
    let mut mixed = exposures(3);
    let marker = Uuid::new_v4();
    mixed.insert(1, metric(marker, "user-1", Some(9.5)));
    let status = send(&mut client, &web, mixed.clone()).await.expect_err("metrics from a client key");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("events[1]"), "{status:?}");
    let body = serde_json::json!({"events": [
        {"event_id": Uuid::new_v4(), "timestamp_ms": now_ms(), "metric": {"unit": "user-1", "name": "buy"}}
    ]});
    let (code, text) =
        http_request(service.http(), "POST", "/api/v1/events/batch", Some(&web), &body.to_string()).await;
    assert_eq!(code, 403, "{text}");

    wait_until(Duration::from_secs(30), "the client key's exposures", || async {
        count(&pool, "exposures", tenant.environment_id).await == 10
    })
    .await;
    let stored = stored_ids(&pool, tenant.environment_id).await;
    assert!(!stored.contains_key(&marker), "the metric event was stored");
    for e in &mixed {
        assert!(
            !stored.contains_key(&Uuid::parse_str(&e.event_id).unwrap()),
            "part of a refused batch was stored"
        );
    }
    assert_eq!(count(&pool, "metric_events", tenant.environment_id).await, 0);
    cluster.stop_events().await;
}
