use std::collections::BTreeMap;

use futures::FutureExt;
use prometheus_client::registry::Registry;
use prost::Message as _;

use super::*;

fn state(version: u64, delta_from: Option<u64>) -> EnvState {
    let delta = delta_from.map(|from| pb::Delta {
        from_version: from,
        to_version: version,
        changes: vec![pb::Change {
            version,
            kind: 1,
            key: format!("flag-{version}"),
            definition_json: "{}".into(),
        }],
        committed_at_ms: 1_000 + version as i64,
    });
    EnvState::new(Uuid::nil(), version, 1_000 + version as i64, BTreeMap::new(), delta).unwrap()
}

/// A stream whose client holds `known`, with a queue of `capacity`.
fn stream(capacity: usize, known: u64) -> (Stream, mpsc::Receiver<Result<pb::SyncResponse, Status>>) {
    let (tx, rx) = mpsc::channel(capacity);
    (Stream::new(tx, known, Uuid::nil()), rx)
}

fn metrics() -> Metrics {
    Metrics::new(&mut Registry::default())
}

/// The next queued message, as the client decodes it.
fn received(rx: &mut mpsc::Receiver<Result<pb::SyncResponse, Status>>) -> Option<Out> {
    let response = rx.try_recv().ok()?.expect("not an error");
    let bytes = response.encode_to_vec();
    pb::SyncResponse::decode(bytes.as_slice()).unwrap().message
}

fn release(stream: &Stream, newest: &EnvState) {
    let permit = stream.out.try_reserve().expect("room in the queue");
    stream.release(permit, newest, &metrics());
}

#[test]
fn offers_wait_until_the_session_releases_the_stream_then_deliver_in_order() {
    let (s, mut rx) = stream(4, 0);
    s.offer(&state(1, None), &metrics());
    assert!(received(&mut rx).is_none(), "the session is still catching the client up");
    release(&s, &state(1, None));
    assert!(matches!(received(&mut rx), Some(Out::Snapshot(snap)) if snap.version == 1));

    s.offer(&state(2, Some(1)), &metrics());
    let Some(Out::Delta(d)) = received(&mut rx) else { panic!("expected the shared delta") };
    assert_eq!((d.from_version, d.to_version, d.changes[0].key.as_str()), (1, 2, "flag-2"));
    s.offer(&state(2, Some(1)), &metrics());
    s.offer(&state(1, None), &metrics());
    assert!(received(&mut rx).is_none(), "nothing the client has already");
    // A state whose delta starts elsewhere comes as a snapshot.
    s.offer(&state(5, Some(4)), &metrics());
    assert!(matches!(received(&mut rx), Some(Out::Snapshot(snap)) if snap.version == 5));
    let sent = s.sent();
    assert_eq!((sent.version, sent.committed_at_ms), (5, 1_005));
}

#[test]
fn a_full_queue_hands_the_stream_to_its_session_which_skips_to_the_newest() {
    let (s, mut rx) = stream(1, 1);
    release(&s, &state(1, None));
    assert!(received(&mut rx).is_none(), "the client had version 1 already");
    s.offer(&state(2, Some(1)), &metrics());
    assert!(s.stalled.notified().now_or_never().is_none(), "no stall yet");
    s.offer(&state(3, Some(2)), &metrics());
    assert!(s.sent().by_session, "the queue was full");
    assert!(s.stalled.notified().now_or_never().is_some(), "the session was woken");
    s.offer(&state(4, Some(3)), &metrics());

    // The client reads again: it gets version 2, then the session sends the newest.
    assert!(matches!(received(&mut rx), Some(Out::Delta(d)) if d.to_version == 2));
    release(&s, &state(4, Some(3)));
    assert!(matches!(received(&mut rx), Some(Out::Snapshot(snap)) if snap.version == 4));
    assert!(!s.sent().by_session);
    s.offer(&state(5, Some(4)), &metrics());
    assert!(matches!(received(&mut rx), Some(Out::Delta(d)) if d.from_version == 4 && d.to_version == 5));
}

#[test]
fn heartbeats_and_pongs_are_dropped_rather_than_waited_for() {
    let (s, mut rx) = stream(1, 0);
    s.try_send(Out::Pong(pb::Pong { nonce: 1 }), Push::Pong, &metrics()).ok().unwrap();
    s.try_send(Out::Pong(pb::Pong { nonce: 2 }), Push::Pong, &metrics()).ok().unwrap();
    assert!(matches!(received(&mut rx), Some(Out::Pong(pb::Pong { nonce: 1 }))));
    assert!(received(&mut rx).is_none());
    drop(rx);
    assert!(
        s.try_send(Out::Pong(pb::Pong { nonce: 3 }), Push::Pong, &metrics()).is_err(),
        "the client is gone"
    );
}

#[test]
fn a_revoked_stream_is_sent_no_more_config() {
    let (s, mut rx) = stream(4, 0);
    release(&s, &state(1, None));
    assert!(matches!(received(&mut rx), Some(Out::Snapshot(_))));
    s.revoke();
    s.offer(&state(2, Some(1)), &metrics());
    release(&s, &state(3, None));
    assert!(received(&mut rx).is_none(), "nothing published after the revocation reaches the client");
}
