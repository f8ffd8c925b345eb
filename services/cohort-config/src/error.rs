//! The config service's error type; gRPC and HTTP answers come from `cohort_runtime::ApiError`.

use cohort_runtime::ApiError;
use tonic::Status;

pub(crate) use cohort_runtime::error::Violation;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Bad input: nothing was stored.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<Violation>),
    /// The request is well-formed but the current state forbids it.
    #[error("{message}")]
    FailedPrecondition { message: String, violations: Vec<Violation> },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[Violation]) -> String {
    violations.iter().map(|(f, d)| format!("{f}: {d}")).collect::<Vec<_>>().join("; ")
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        ServiceError::InvalidArgument(vec![(field.into(), description.into())])
    }

    pub fn precondition(message: impl Into<String>) -> Self {
        ServiceError::FailedPrecondition { message: message.into(), violations: Vec::new() }
    }
}

impl From<cohort_db::DbError> for ServiceError {
    fn from(e: cohort_db::DbError) -> Self {
        db_error(&e)
    }
}

impl From<tokio_postgres::Error> for ServiceError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() || e.as_db_error().is_none() {
            tracing::warn!(error = %e, "database unreachable");
            ServiceError::Unavailable("the database is unavailable; retry later".into())
        } else {
            tracing::error!(error = %e, "database error");
            ServiceError::Internal("database error".into())
        }
    }
}

impl From<deadpool_postgres::PoolError> for ServiceError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::warn!(error = %e, "no database connection");
        ServiceError::Unavailable("the database is unavailable; retry later".into())
    }
}

fn db_error(e: &cohort_db::DbError) -> ServiceError {
    match e {
        cohort_db::DbError::Pool(_) => {
            tracing::warn!(error = %e, "no database connection");
            ServiceError::Unavailable("the database is unavailable; retry later".into())
        }
        cohort_db::DbError::Query { source, .. } if source.is_closed() || source.as_db_error().is_none() => {
            tracing::warn!(error = %e, "database unreachable");
            ServiceError::Unavailable("the database is unavailable; retry later".into())
        }
        other => {
            tracing::error!(error = %other, "database error");
            ServiceError::Internal("database error".into())
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::Unauthenticated(m) => ApiError::Unauthenticated(m),
            ServiceError::PermissionDenied(m) => ApiError::PermissionDenied(m),
            ServiceError::NotFound(m) => ApiError::NotFound(m),
            ServiceError::AlreadyExists(m) => ApiError::AlreadyExists(m),
            ServiceError::InvalidArgument(violations) => ApiError::InvalidArgument(violations),
            ServiceError::FailedPrecondition { message, violations } => {
                ApiError::FailedPrecondition { message, violations }
            }
            ServiceError::Unavailable(message) => ApiError::Unavailable { message, retry_after: None },
            // Details are logged where the error arose; the client gets no internals.
            ServiceError::Internal(_) => ApiError::Internal,
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        ApiError::from(e).into()
    }
}
