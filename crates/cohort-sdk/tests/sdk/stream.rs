//! The config stream against the fake config service: snapshot and deltas change answers and
//! are acknowledged; gaps force a snapshot; heartbeat loss and GoAway reconnect with the known
//! version; the cache serves when the service is down; defaults with nothing; a rejected key,
//! at connection or on an open stream, is a prompt ERROR marked `key_rejected`.

use std::time::{Duration, Instant};

use cohort_proto::config::v1::sync_request::Message as Req;
use cohort_proto::config::v1::sync_response::Message as Resp;
use cohort_proto::config::v1::{Change, EntityKind, GoAway};
use cohort_sdk::{Client, ClientBuilder, Context, ErrorCode, Reason, SdkError, State};

use crate::support::{FakeConfig, KEY, TempDir, dead_addr, defs, eventually, flag_json, listener, within};

fn builder(uris: &[String]) -> ClientBuilder {
    Client::builder(KEY)
        .config_endpoints(uris.iter().cloned())
        .init_timeout(Duration::from_secs(10))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

/// Waits until the client serves `version`.
async fn version(client: &Client, version: u64) {
    let mut rx = client.subscribe();
    within(&format!("version {version}"), rx.wait_for(|s| s.version == version)).await.unwrap();
}

async fn state(client: &Client, state: State) {
    let mut rx = client.subscribe();
    within(&format!("state {state}"), rx.wait_for(|s| s.state == state)).await.unwrap();
}

fn flag_change(version: u64, key: &str, on: Option<bool>) -> Change {
    Change {
        version,
        kind: EntityKind::Flag as i32,
        key: key.into(),
        definition_json: on.map(|on| flag_json(key, on).to_string()).unwrap_or_default(),
    }
}

#[tokio::test]
async fn snapshot_then_deltas_change_answers_and_are_acknowledged() {
    let mut server = FakeConfig::start().await;
    let build = tokio::spawn(builder(&[server.uri()]).build());
    let mut conn = server.conn().await;
    let hello = conn.hello().await;
    assert_eq!(hello.known_version, 0);
    assert!(hello.client.starts_with("cohort-sdk-rust/"));
    conn.snapshot(1, &defs(1, true)).await;
    let client = build.await.unwrap().unwrap();
    assert_eq!(client.status().state, State::Ready);
    assert_eq!(client.version(), 1);
    assert!(client.last_sync().is_some());
    let ctx = Context::new("user-1");
    assert!(client.bool_value("f", &ctx, false));
    assert_eq!(conn.ack().await, 1);

    // Flip `f` off and add `g`.
    conn.delta(1, 3, vec![flag_change(2, "f", Some(false)), flag_change(3, "g", Some(true))]).await;
    assert_eq!(conn.ack().await, 3);
    version(&client, 3).await;
    assert!(!client.bool_value("f", &ctx, true));
    assert!(client.bool_value("g", &ctx, false));

    // Delete `g`: the caller's default, FLAG_NOT_FOUND.
    conn.delta(3, 4, vec![flag_change(4, "g", None)]).await;
    assert_eq!(conn.ack().await, 4);
    let details = client.bool_details("g", &ctx, true);
    assert_eq!(
        (details.value, details.error, details.config_version),
        (true, Some(ErrorCode::FlagNotFound), 4)
    );
    assert_eq!(client.state(), State::Ready);
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_delta_that_does_not_follow_asks_for_a_snapshot() {
    let mut server = FakeConfig::start().await;
    let build = tokio::spawn(builder(&[server.uri()]).build());
    let mut conn = server.conn().await;
    conn.hello().await;
    conn.snapshot(2, &defs(2, true)).await;
    let client = build.await.unwrap().unwrap();
    assert_eq!(conn.ack().await, 2);

    conn.delta(5, 6, vec![flag_change(6, "f", Some(false))]).await;
    let mut again = server.conn().await;
    assert_eq!(again.hello().await.known_version, 0, "a gap must ask for a snapshot");
    // The gap delta was not applied.
    assert!(client.bool_value("f", &Context::new("u"), false));
    again.snapshot(6, &defs(6, false)).await;
    assert_eq!(again.ack().await, 6);
    version(&client, 6).await;
    assert!(!client.bool_value("f", &Context::new("u"), true));

    // A malformed change also asks for a snapshot, keeping the served config.
    let mut bad = flag_change(7, "f", Some(true));
    bad.definition_json = "{oops".into();
    again.delta(6, 7, vec![bad]).await;
    let mut third = server.conn().await;
    assert_eq!(third.hello().await.known_version, 0);
    assert_eq!(client.version(), 6);
    third.snapshot(7, &defs(7, true)).await;
    version(&client, 7).await;
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn heartbeat_loss_pings_then_reconnects_with_the_known_version() {
    let mut server = FakeConfig::start().await;
    let build = tokio::spawn(builder(&[server.uri()]).build());
    let mut conn = server.conn().await;
    conn.hello().await;
    conn.snapshot(3, &defs(3, true)).await;
    let client = build.await.unwrap().unwrap();
    assert_eq!(conn.ack().await, 3);

    // Announce 50 ms heartbeats, then fall silent while keeping the stream open.
    conn.heartbeat(3, 50).await;
    let silent_from = Instant::now();
    match conn.request().await {
        Req::Ping(_) => {}
        other => panic!("expected a Ping, got {other:?}"),
    }
    let mut next = server.conn().await;
    let waited = silent_from.elapsed();
    assert_eq!(next.hello().await.known_version, 3);
    assert!(waited >= Duration::from_millis(140), "gave up after only {waited:?}");
    assert!(waited < Duration::from_secs(3), "took {waited:?} to notice");
    // Disconnected while serving a config: STALE until the new stream confirms it.
    next.heartbeat(3, 50).await;
    state(&client, State::Ready).await;
    drop(conn);
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn heartbeats_ahead_of_the_held_version_force_a_snapshot() {
    let mut server = FakeConfig::start().await;
    let build = tokio::spawn(builder(&[server.uri()]).build());
    let mut conn = server.conn().await;
    conn.hello().await;
    conn.snapshot(3, &defs(3, true)).await;
    let client = build.await.unwrap().unwrap();
    assert_eq!(conn.ack().await, 3);
    // One heartbeat ahead may be a delta in flight; the second one is not.
    conn.heartbeat(5, 1000).await;
    conn.heartbeat(5, 1000).await;
    let mut next = server.conn().await;
    assert_eq!(next.hello().await.known_version, 0);
    next.snapshot(5, &defs(5, false)).await;
    version(&client, 5).await;
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn go_away_reconnects_at_once_to_the_next_endpoint() {
    let mut a = FakeConfig::start().await;
    let mut b = FakeConfig::start().await;
    // A large backoff proves that GoAway does not wait for it.
    let build = tokio::spawn(
        builder(&[a.uri(), b.uri()])
            .reconnect_backoff(Duration::from_secs(20), Duration::from_secs(30))
            .build(),
    );
    let mut conn = a.conn().await;
    conn.hello().await;
    conn.snapshot(4, &defs(4, true)).await;
    let client = build.await.unwrap().unwrap();
    assert_eq!(conn.ack().await, 4);

    let start = Instant::now();
    conn.send(Resp::GoAway(GoAway { reason: "draining".into() })).await;
    let mut next = b.conn().await;
    assert_eq!(next.hello().await.known_version, 4);
    assert!(start.elapsed() < Duration::from_secs(2), "reconnect took {:?}", start.elapsed());
    next.delta(4, 5, vec![flag_change(5, "f", Some(false))]).await;
    assert_eq!(next.ack().await, 5);
    version(&client, 5).await;
    client.close().await.unwrap();
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_lost_stream_is_stale_then_resumes_from_its_version() {
    let mut server = FakeConfig::start().await;
    let build = tokio::spawn(builder(&[server.uri()]).build());
    let mut conn = server.conn().await;
    conn.hello().await;
    conn.snapshot(8, &defs(8, true)).await;
    let client = build.await.unwrap().unwrap();
    conn.ack().await;

    conn.fail(tonic::Status::unavailable("replica restarting")).await;
    drop(conn);
    let mut next = server.conn().await;
    assert_eq!(next.hello().await.known_version, 8);
    assert_eq!(client.state(), State::Stale);
    assert!(client.bool_value("f", &Context::new("u"), false), "a stale client keeps serving");
    next.delta(8, 9, vec![]).await;
    assert_eq!(next.ack().await, 9);
    state(&client, State::Ready).await;
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn each_applied_config_is_written_to_the_cache_file() {
    let dir = TempDir::new("write");
    let path = dir.0.join("cohort.json");
    let mut server = FakeConfig::start().await;
    let build = tokio::spawn(builder(&[server.uri()]).cache_file(&path).build());
    let mut conn = server.conn().await;
    conn.hello().await;
    conn.snapshot(10, &defs(10, true)).await;
    let client = build.await.unwrap().unwrap();
    let cached_version = || {
        std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["version"].as_u64())
    };
    eventually("cache file at version 10", || cached_version() == Some(10)).await;
    conn.delta(10, 11, vec![flag_change(11, "f", Some(false))]).await;
    eventually("cache file at version 11", || cached_version() == Some(11)).await;
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn server_down_at_start_serves_the_cache_then_resumes() {
    let dir = TempDir::new("down");
    let path = dir.0.join("cohort.json");
    // A first client fills the cache.
    {
        let mut server = FakeConfig::start().await;
        let build = tokio::spawn(builder(&[server.uri()]).cache_file(&path).build());
        let mut conn = server.conn().await;
        conn.hello().await;
        conn.snapshot(12, &defs(12, false)).await;
        let client = build.await.unwrap().unwrap();
        eventually("cache file", || path.exists()).await;
        client.close().await.unwrap();
        server.stop().await;
    }

    let addr = dead_addr().await;
    let start = Instant::now();
    let client = builder(&[format!("http://{addr}")])
        .cache_file(&path)
        .init_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(client.state(), State::Stale);
    assert_eq!(client.version(), 12);
    assert!(!client.bool_value("f", &Context::new("u"), true), "serves the cached config");
    assert!(client.last_error().is_some(), "says why it is stale");

    // The service comes up where the client keeps trying: it resumes from the cached version.
    let mut server = FakeConfig::serve(listener(Some(addr)).await);
    let mut conn = server.conn().await;
    assert_eq!(conn.hello().await.known_version, 12);
    conn.heartbeat(12, 1000).await;
    state(&client, State::Ready).await;
    assert_eq!(client.last_error(), None);
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn no_config_anywhere_serves_the_callers_defaults() {
    let addr = dead_addr().await;
    let client =
        builder(&[format!("http://{addr}")]).init_timeout(Duration::from_millis(200)).build().await.unwrap();
    assert_eq!(client.state(), State::Error);
    assert_eq!(client.version(), 0);
    let ctx = Context::new("u");
    assert!(client.bool_value("f", &ctx, true));
    assert_eq!(client.string_value("f", &ctx, "dflt"), "dflt");
    let details = client.number_details("f", &ctx, 2.5);
    assert_eq!(
        (details.value, details.reason, details.error),
        (2.5, Reason::Error, Some(ErrorCode::ProviderNotReady))
    );
    let a = client.experiment("exp", &ctx);
    assert!(!a.enrolled);
    assert_eq!(a.error, Some(ErrorCode::ProviderNotReady));
    client.close().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_cache_file_is_ignored() {
    let dir = TempDir::new("corrupt");
    let path = dir.0.join("cohort.json");
    std::fs::write(&path, b"{\"version\": 3, \"definitions\": {\"flags\": [{\"key\"").unwrap();
    let addr = dead_addr().await;
    let client = builder(&[format!("http://{addr}")])
        .cache_file(&path)
        .init_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    assert_eq!(client.state(), State::Error);
    assert!(client.bool_value("f", &Context::new("u"), true));
    client.close().await.unwrap();
}

#[tokio::test]
async fn a_rejected_key_is_a_prompt_error() {
    let server = FakeConfig::start().await;
    let start = Instant::now();
    let client = Client::builder("wrong-key")
        .config_endpoint(server.uri())
        .init_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert_eq!(client.state(), State::Error);
    assert!(client.status().key_rejected);
    let err = client.last_error().unwrap();
    assert!(err.contains("rejected") && err.contains("unknown sdk key"), "{err}");
    assert!(client.bool_value("f", &Context::new("u"), true));

    let strict = Client::builder("wrong-key")
        .config_endpoint(server.uri())
        .init_timeout(Duration::from_secs(30))
        .fail_on_rejected_key(true)
        .build()
        .await;
    match strict {
        Err(SdkError::KeyRejected(m)) => assert!(m.contains("unknown sdk key"), "{m}"),
        other => panic!("expected KeyRejected, got {other:?}"),
    }
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_key_revoked_while_streaming_is_rejected_and_watchers_are_told() {
    let mut server = FakeConfig::start().await;
    let build = tokio::spawn(builder(&[server.uri()]).build());
    let mut conn = server.conn().await;
    conn.hello().await;
    conn.snapshot(1, &defs(1, true)).await;
    let client = build.await.unwrap().unwrap();
    assert!(!client.status().key_rejected);
    let mut status = client.subscribe();

    // The config service ends the open stream when the key is revoked.
    conn.fail(tonic::Status::unauthenticated("the api key was revoked")).await;
    let rejected = *within("the rejection", status.wait_for(|s| s.key_rejected)).await.unwrap();
    assert_eq!((rejected.state, rejected.version), (State::Error, 1));
    let err = client.last_error().unwrap();
    assert!(err.contains("rejected") && err.contains("revoked"), "{err}");
    assert!(client.bool_value("f", &Context::new("u"), false), "the last config is still served");

    // A connection that fails otherwise does not hide the rejection.
    let conn = server.conn().await;
    conn.fail(tonic::Status::unavailable("restarting")).await;
    let mut conn = server.conn().await;
    assert!(client.status().key_rejected && client.state() == State::Error);
    // Accepted again (the key was reissued): READY, no longer rejected.
    conn.hello().await;
    conn.snapshot(2, &defs(2, true)).await;
    state(&client, State::Ready).await;
    assert!(!client.status().key_rejected);
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn invalid_options_fail_the_build() {
    assert!(matches!(Client::builder(KEY).build().await, Err(SdkError::NoConfigSource)));
    assert!(matches!(
        Client::builder(KEY).config_endpoint("not a uri").build().await,
        Err(SdkError::InvalidEndpoint { .. })
    ));
    assert!(matches!(
        Client::builder("bad\nkey").config_endpoint("http://127.0.0.1:1").build().await,
        Err(SdkError::InvalidKey)
    ));
    assert!(matches!(
        Client::builder(KEY).config_endpoint("http://127.0.0.1:1").event_batch_size(5000).build().await,
        Err(SdkError::InvalidOption { option: "event_batch_size", .. })
    ));
}

#[tokio::test]
async fn an_https_config_service_is_verified_against_the_ca_given() {
    let dir = TempDir::new("tls");
    let pki = cohort_transport::testing::Pki::new("Cohort test CA");
    let leaf = pki.localhost();
    let mut server = FakeConfig::start_tls(&leaf.cert, &leaf.key).await;
    let trusting = |ca| cohort_sdk::ClientTls { ca_file: Some(ca), ..Default::default() };

    // Another CA: the stream never starts, and the error names the server and why.
    let other = cohort_transport::testing::Pki::new("Another CA").write_ca(&dir.0, "other");
    let refused = builder(&[server.https_uri()])
        .tls(trusting(other))
        .init_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("the client starts, in ERROR");
    let error = refused.last_error().unwrap_or_default();
    assert!(error.contains(&server.https_uri()), "the server is named: {error}");
    assert!(error.contains("UnknownIssuer") || error.contains("certificate"), "the reason is named: {error}");
    refused.close().await.unwrap();

    // The right CA: the stream runs as over plaintext.
    let ca = pki.write_ca(&dir.0, "ca");
    let build = tokio::spawn(builder(&[server.https_uri()]).tls(trusting(ca)).build());
    let mut conn = server.conn().await;
    conn.hello().await;
    conn.snapshot(1, &defs(1, true)).await;
    let client = build.await.unwrap().unwrap();
    assert_eq!(client.status().state, State::Ready);
    client.close().await.unwrap();
}
