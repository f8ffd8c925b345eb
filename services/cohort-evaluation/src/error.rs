//! The evaluation service's error type and its one mapping to gRPC statuses (and, for the
//! HTTP API, to status codes and JSON bodies).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cohort_proto::ProtoError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A field and what is wrong with it.
pub type Violation = (String, String);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No key, a malformed key, or a key the config service rejected.
    #[error("{0}")]
    Unauthenticated(String),
    /// Bad input: the fields at fault.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<Violation>),
    /// The environment's config is not loaded yet; retry after the hint.
    #[error("{message}")]
    Unavailable { message: String, retry_after: Duration },
    /// Too many environments are starting at once, or the service is shutting down.
    #[error("{0}")]
    ResourceExhausted(String),
}

fn describe(violations: &[Violation]) -> String {
    violations.iter().map(|(f, d)| format!("{f}: {d}")).collect::<Vec<_>>().join("; ")
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        ServiceError::InvalidArgument(vec![(field.into(), description.into())])
    }

    /// The gRPC code name, for metrics labels.
    pub fn code_name(&self) -> &'static str {
        match self {
            ServiceError::Unauthenticated(_) => "unauthenticated",
            ServiceError::InvalidArgument(_) => "invalid_argument",
            ServiceError::Unavailable { .. } => "unavailable",
            ServiceError::ResourceExhausted(_) => "resource_exhausted",
        }
    }

    fn http_status(&self) -> StatusCode {
        match self {
            ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ServiceError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ServiceError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl From<ProtoError> for ServiceError {
    fn from(e: ProtoError) -> Self {
        ServiceError::InvalidArgument(vec![(e.field, e.message)])
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        match e {
            ServiceError::Unauthenticated(m) => Status::unauthenticated(m),
            ServiceError::InvalidArgument(violations) => {
                let message = describe(&violations);
                let mut details = ErrorDetails::new();
                for (field, description) in violations {
                    details.add_bad_request_violation(field, description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ServiceError::Unavailable { message, retry_after } => Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            ServiceError::ResourceExhausted(m) => Status::resource_exhausted(m),
        }
    }
}

/// `{"error": "...", "violations": [{"field": ..., "description": ...}]}` with the matching
/// status, and `Retry-After` on UNAVAILABLE.
impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = self.http_status();
        let mut body = serde_json::json!({ "error": self.to_string() });
        if let ServiceError::InvalidArgument(violations) = &self {
            body["violations"] = violations
                .iter()
                .map(|(field, description)| serde_json::json!({"field": field, "description": description}))
                .collect();
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let ServiceError::Unavailable { retry_after, .. } = &self {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
