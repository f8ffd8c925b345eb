use bytes::Bytes;
use prost::Message as _;

use super::sync_response::{Encoded, Message};
use super::*;
use crate::config::v1::Change;

/// What prost-build generates for config.proto's `SyncResponse`: the wire format to match.
#[derive(Clone, PartialEq, prost::Message)]
struct Generated {
    #[prost(oneof = "generated::Message", tags = "1, 2, 3, 4, 5")]
    message: Option<generated::Message>,
}

mod generated {
    use crate::config::v1::{Delta, GoAway, Heartbeat, Pong, Snapshot};

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Message {
        #[prost(message, tag = "1")]
        Snapshot(Snapshot),
        #[prost(message, tag = "2")]
        Delta(Delta),
        #[prost(message, tag = "3")]
        Heartbeat(Heartbeat),
        #[prost(message, tag = "4")]
        Pong(Pong),
        #[prost(message, tag = "5")]
        GoAway(GoAway),
    }
}

fn delta() -> Delta {
    Delta {
        from_version: 6,
        to_version: 8,
        changes: vec![
            Change {
                version: 7,
                kind: 1,
                key: "checkout".into(),
                definition_json: r#"{"key":"checkout"}"#.into(),
            },
            Change { version: 8, kind: 2, key: "gone".into(), definition_json: String::new() },
        ],
        committed_at_ms: 1_700_000_000_123,
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        environment_id: "2c1e0d5a-7f43-4a43-9d0e-3f6f5b1f7a10".into(),
        version: 8,
        definitions_json: Bytes::from_static(br#"{"version":8,"flags":[]}"#),
        committed_at_ms: 1_700_000_000_123,
    }
}

/// Each variant, as this crate's message and as the generated one.
fn pairs() -> Vec<(Message, generated::Message)> {
    vec![
        (Message::Snapshot(snapshot()), generated::Message::Snapshot(snapshot())),
        (Message::Delta(delta()), generated::Message::Delta(delta())),
        (
            Message::Heartbeat(Heartbeat { version: 8, interval_ms: 5000 }),
            generated::Message::Heartbeat(Heartbeat { version: 8, interval_ms: 5000 }),
        ),
        (Message::Pong(Pong { nonce: 42 }), generated::Message::Pong(Pong { nonce: 42 })),
        (
            Message::GoAway(GoAway { reason: "draining".into() }),
            generated::Message::GoAway(GoAway { reason: "draining".into() }),
        ),
    ]
}

#[test]
fn same_wire_format_as_the_generated_message() {
    for (ours, theirs) in pairs() {
        let ours = SyncResponse { message: Some(ours) };
        let bytes = ours.encode_to_vec();
        assert_eq!(bytes, Generated { message: Some(theirs) }.encode_to_vec(), "{ours:?}");
        assert_eq!(ours.encoded_len(), bytes.len());
        assert_eq!(SyncResponse::decode(bytes.as_slice()).unwrap(), ours);
    }
    assert!(SyncResponse::default().encode_to_vec().is_empty());
}

#[test]
fn encoded_response_is_written_unchanged_and_decodes_to_what_it_holds() {
    for (message, _) in pairs() {
        let plain = SyncResponse { message: Some(message.clone()) }.encode_to_vec();
        let encoded = Encoded::new(message.clone());
        assert_eq!(encoded.bytes().as_ref(), plain.as_slice());
        let wrapped = SyncResponse { message: Some(Message::Encoded(encoded.clone())) };
        assert_eq!(wrapped.encoded_len(), plain.len());
        assert_eq!(wrapped.encode_to_vec(), plain);
        let decoded = SyncResponse::decode(wrapped.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.message, Some(message));
        // Wrapping an encoded response again changes nothing.
        assert_eq!(Encoded::new(Message::Encoded(encoded.clone())), encoded);
    }
}

#[test]
fn unknown_fields_are_skipped_and_the_last_oneof_field_wins() {
    let heartbeat =
        Generated { message: Some(generated::Message::Heartbeat(Heartbeat { version: 3, interval_ms: 0 })) };
    let pong = Generated { message: Some(generated::Message::Pong(Pong { nonce: 9 })) };
    // Field 9, a varint, from some newer server.
    let mut bytes = vec![0x48, 0x01];
    bytes.extend(heartbeat.encode_to_vec());
    assert_eq!(
        SyncResponse::decode(bytes.as_slice()).unwrap().message,
        Some(Message::Heartbeat(Heartbeat { version: 3, interval_ms: 0 }))
    );
    bytes.extend(pong.encode_to_vec());
    assert_eq!(
        SyncResponse::decode(bytes.as_slice()).unwrap().message,
        Some(Message::Pong(Pong { nonce: 9 }))
    );
    // The same field twice merges, as protobuf says.
    let second = Generated {
        message: Some(generated::Message::Heartbeat(Heartbeat { version: 0, interval_ms: 250 })),
    };
    let mut twice = heartbeat.encode_to_vec();
    twice.extend(second.encode_to_vec());
    assert_eq!(
        SyncResponse::decode(twice.as_slice()).unwrap().message,
        Some(Message::Heartbeat(Heartbeat { version: 3, interval_ms: 250 }))
    );
    assert!(SyncResponse::decode(&[0x48, 0x01][..]).unwrap().message.is_none());
    assert!(SyncResponse::decode(&[0x12, 0x05, 0x08][..]).is_err(), "a truncated delta");
}
