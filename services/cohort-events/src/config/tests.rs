//! What the config service's answers mean to the events service.

use cohort_proto::config::v1 as pb;
use uuid::Uuid;

use super::{ConfigError, VerifiedKey, verified};

fn key(kind: pb::KeyKind, environment_id: &str) -> pb::VerifyKeyResponse {
    pb::VerifyKeyResponse {
        key_id: "00000000-0000-0000-0000-000000000001".to_owned(),
        name: "k".to_owned(),
        kind: kind as i32,
        organization_id: "00000000-0000-0000-0000-000000000002".to_owned(),
        environment_id: environment_id.to_owned(),
        cors_origins: Vec::new(),
    }
}

#[test]
fn only_sdk_and_client_keys_have_an_environment_and_a_malformed_answer_is_an_error() {
    let env = "00000000-0000-0000-0000-000000000003";
    assert_eq!(
        verified(&key(pb::KeyKind::Sdk, env)).unwrap(),
        VerifiedKey {
            key_id: Uuid::from_u128(1),
            organization_id: Uuid::from_u128(2),
            environment: Some(Uuid::from_u128(3)),
            client: false,
        }
    );
    let client = verified(&key(pb::KeyKind::Client, &Uuid::from_u128(3).to_string())).unwrap();
    assert_eq!((client.environment, client.client), (Some(Uuid::from_u128(3)), true));
    assert_eq!(verified(&key(pb::KeyKind::Admin, "")).unwrap().environment, None);
    assert_eq!(verified(&key(pb::KeyKind::Service, "")).unwrap().environment, None);
    assert_eq!(verified(&key(pb::KeyKind::Unspecified, "")).unwrap().environment, None);
    let e = verified(&key(pb::KeyKind::Sdk, "")).unwrap_err();
    assert!(matches!(e, ConfigError::Malformed(_)) && !e.is_unavailable(), "{e}");
}

#[test]
fn only_an_unreachable_or_silent_config_service_is_an_outage() {
    let status = |code| ConfigError::Status(tonic::Status::new(code, "x"));
    for code in [
        tonic::Code::Unavailable,
        tonic::Code::DeadlineExceeded,
        tonic::Code::Cancelled,
        tonic::Code::Unknown,
    ] {
        assert!(status(code).is_unavailable(), "{code:?}");
    }
    assert!(ConfigError::Timeout(std::time::Duration::from_secs(3)).is_unavailable());
    for code in [tonic::Code::PermissionDenied, tonic::Code::Unauthenticated, tonic::Code::Internal] {
        assert!(!status(code).is_unavailable(), "{code:?}");
    }
}
