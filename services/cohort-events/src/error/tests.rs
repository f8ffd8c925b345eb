use std::time::Duration;

use axum::response::IntoResponse;
use cohort_runtime::ApiError;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{IngestError, SPOOL_FULL_RETRY};
use crate::auth::AuthError;
use crate::spool::SpoolError;

fn answers(e: IngestError) -> (Status, axum::response::Response) {
    let api = ApiError::from(e);
    (Status::from(api.clone()), api.into_response())
}

#[test]
fn a_bad_batch_names_the_events_field() {
    let (status, response) = answers(IngestError::TooManyEvents { got: 1001, max: 1000 });
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("at most 1000 events, got 1001"), "{}", status.message());
    let details = status.get_error_details();
    let violation = &details.bad_request().expect("field violations").field_violations[0];
    assert_eq!(violation.field, "events");
    assert_eq!(response.status(), 400);
}

#[test]
fn limits_are_resource_exhausted_with_a_retry_hint_on_both_protocols() {
    let rate = IngestError::RateLimited { retry_after: Duration::from_millis(100) };
    let (status, response) = answers(rate);
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.get_details_retry_info().and_then(|r| r.retry_delay), Some(Duration::from_millis(100)));
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");

    let full = IngestError::from(SpoolError::Full { used: 2, max: 1 });
    let (status, response) = answers(full);
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.get_details_retry_info().and_then(|r| r.retry_delay), Some(SPOOL_FULL_RETRY));
    assert_eq!(response.headers()["retry-after"], "5");
}

#[test]
fn keys_map_to_unauthenticated_permission_denied_and_unavailable() {
    let (status, response) = answers(IngestError::Auth(AuthError::Unknown));
    assert_eq!((status.code(), status.message()), (Code::Unauthenticated, "unknown or revoked API key"));
    assert_eq!(response.status(), 401);
    let (status, response) = answers(IngestError::Auth(AuthError::NotSdk));
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(response.status(), 403);
    let (status, response) = answers(IngestError::Auth(AuthError::Unavailable("secret detail".into())));
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.message().contains("secret detail"), "{}", status.message());
    assert!(status.get_details_retry_info().is_some());
    assert_eq!(response.status(), 503);
}

#[test]
fn spool_failures_are_unavailable_without_their_cause() {
    let (status, response) = answers(IngestError::from(SpoolError::Write("disk on fire".into())));
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "the event spool cannot take writes now; retry later");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let (status, _) = answers(IngestError::from(SpoolError::Closed));
    assert_eq!((status.code(), status.message()), (Code::Unavailable, "the service is shutting down"));
}
