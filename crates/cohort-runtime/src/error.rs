//! The one answer a service gives when a request fails, and its one mapping to a gRPC status
//! (field violations, retry hints and precondition failures as `google.rpc` details) and to
//! an HTTP response (status code, `Retry-After`, a JSON body). Each service keeps its own
//! domain error and converts it into [`ApiError`]; internal errors are logged where they arise
//! and reach the client as "internal error" only.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A field and what is wrong with it.
pub type Violation = (String, String);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// No credential, or one that is unknown or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid credential that may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Bad input, nothing done: the fields at fault.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<Violation>),
    /// Well-formed, but the current state forbids it.
    #[error("{}", precondition_message(.message, .violations))]
    FailedPrecondition { message: String, violations: Vec<Violation> },
    /// A limit was reached; retry after the hint.
    #[error("{message}")]
    ResourceExhausted { message: String, retry_after: Option<Duration> },
    /// Cannot answer now (a dependency is down, not ready yet); retry after the hint.
    #[error("{message}")]
    Unavailable { message: String, retry_after: Option<Duration> },
    /// Logged where it arose; the client learns nothing more.
    #[error("internal error")]
    Internal,
}

fn describe(violations: &[Violation]) -> String {
    violations.iter().map(|(f, d)| format!("{f}: {d}")).collect::<Vec<_>>().join("; ")
}

fn precondition_message(message: &str, violations: &[Violation]) -> String {
    if violations.is_empty() { message.to_owned() } else { format!("{message}: {}", describe(violations)) }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        ApiError::InvalidArgument(vec![(field.into(), description.into())])
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::Unavailable { message: message.into(), retry_after: None }
    }

    pub fn code(&self) -> Code {
        match self {
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::FailedPrecondition { .. } => Code::FailedPrecondition,
            ApiError::ResourceExhausted { .. } => Code::ResourceExhausted,
            ApiError::Unavailable { .. } => Code::Unavailable,
            ApiError::Internal => Code::Internal,
        }
    }

    /// The gRPC code's name, for metric labels.
    pub fn code_name(&self) -> &'static str {
        match self.code() {
            Code::Unauthenticated => "unauthenticated",
            Code::PermissionDenied => "permission_denied",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::InvalidArgument => "invalid_argument",
            Code::FailedPrecondition => "failed_precondition",
            Code::ResourceExhausted => "resource_exhausted",
            Code::Unavailable => "unavailable",
            _ => "internal",
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) | ApiError::FailedPrecondition { .. } => StatusCode::CONFLICT,
            ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ApiError::ResourceExhausted { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::ResourceExhausted { retry_after, .. } | ApiError::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let code = e.code();
        let message = e.to_string();
        match e {
            ApiError::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for (field, description) in violations {
                    details.add_bad_request_violation(field, description);
                }
                Status::with_error_details(code, message, details)
            }
            ApiError::FailedPrecondition { violations, .. } => {
                let mut details = ErrorDetails::new();
                for (field, description) in violations {
                    details.add_precondition_failure_violation("STATE", field, description);
                }
                Status::with_error_details(code, message, details)
            }
            ApiError::ResourceExhausted { retry_after: Some(after), .. }
            | ApiError::Unavailable { retry_after: Some(after), .. } => {
                Status::with_error_details(code, message, ErrorDetails::with_retry_info(Some(after)))
            }
            _ => Status::new(code, message),
        }
    }
}

/// `{"error": "...", "violations": [{"field": ..., "description": ...}]}` with the matching
/// status, and `Retry-After` (whole seconds, rounded up) when there is a hint.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.to_string() });
        if let ApiError::InvalidArgument(violations) | ApiError::FailedPrecondition { violations, .. } = &self
            && !violations.is_empty()
        {
            body["violations"] = violations
                .iter()
                .map(|(field, description)| serde_json::json!({"field": field, "description": description}))
                .collect();
        }
        let mut response = (self.http_status(), axum::Json(body)).into_response();
        if let Some(after) = self.retry_after() {
            let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::response::IntoResponse;
    use tonic::Code;
    use tonic_types::StatusExt;

    use super::ApiError;

    #[test]
    fn violations_travel_as_bad_request_details_and_json() {
        let e = ApiError::InvalidArgument(vec![("flags[0].key".into(), "must not be empty".into())]);
        let status = tonic::Status::from(e.clone());
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("field violations");
        assert_eq!(bad.field_violations[0].field, "flags[0].key");
        let response = e.into_response();
        assert_eq!(response.status(), 400);
    }

    #[test]
    fn retry_hints_reach_both_protocols() {
        let e = ApiError::ResourceExhausted {
            message: "slow down".into(),
            retry_after: Some(Duration::from_millis(1500)),
        };
        let status = tonic::Status::from(e.clone());
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.get_error_details().retry_info().and_then(|r| r.retry_delay),
            Some(Duration::from_millis(1500))
        );
        let response = e.into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "2");
    }

    #[test]
    fn internal_errors_say_nothing_more() {
        let status = tonic::Status::from(ApiError::Internal);
        assert_eq!((status.code(), status.message()), (Code::Internal, "internal error"));
    }
}
