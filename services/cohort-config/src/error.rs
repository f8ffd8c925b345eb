//! The config service's error type and its one mapping to gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A field and what is wrong with it.
pub type Violation = (String, String);

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

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        match e {
            ServiceError::Unauthenticated(m) => Status::unauthenticated(m),
            ServiceError::PermissionDenied(m) => Status::permission_denied(m),
            ServiceError::NotFound(m) => Status::not_found(m),
            ServiceError::AlreadyExists(m) => Status::already_exists(m),
            ServiceError::InvalidArgument(violations) => {
                let message = describe(&violations);
                let mut details = ErrorDetails::new();
                for (field, description) in violations {
                    details.add_bad_request_violation(field, description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ServiceError::FailedPrecondition { message, violations } => {
                let mut details = ErrorDetails::new();
                for (field, description) in &violations {
                    details.add_precondition_failure_violation("STATE", field, description);
                }
                let message = if violations.is_empty() {
                    message
                } else {
                    format!("{message}: {}", describe(&violations))
                };
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            ServiceError::Unavailable(m) => Status::unavailable(m),
            // Details are logged where the error arose; the client gets no internals.
            ServiceError::Internal(_) => Status::internal("internal error"),
        }
    }
}
