//! The evaluation service's error type; gRPC and HTTP answers come from
//! `cohort_runtime::ApiError`.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use cohort_proto::ProtoError;
use cohort_runtime::ApiError;
pub use cohort_runtime::error::Violation;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No key, a malformed key, or a key the config service rejected.
    #[error("{0}")]
    Unauthenticated(String),
    /// A working key of another kind (admin, service): this service takes SDK keys.
    #[error("{0}")]
    PermissionDenied(String),
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
}

impl From<ProtoError> for ServiceError {
    fn from(e: ProtoError) -> Self {
        ServiceError::InvalidArgument(vec![(e.field, e.message)])
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::Unauthenticated(m) => ApiError::Unauthenticated(m),
            ServiceError::PermissionDenied(m) => ApiError::PermissionDenied(m),
            ServiceError::InvalidArgument(violations) => ApiError::InvalidArgument(violations),
            ServiceError::Unavailable { message, retry_after } => {
                ApiError::Unavailable { message, retry_after: Some(retry_after) }
            }
            ServiceError::ResourceExhausted(message) => {
                ApiError::ResourceExhausted { message, retry_after: None }
            }
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
