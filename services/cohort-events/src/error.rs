//! The service's errors: what a request can fail with ([`IngestError`], answered as a
//! `cohort_runtime::ApiError`, which maps it to gRPC and HTTP) and what start-up can fail with
//! ([`EventsError`]).

use std::time::Duration;

use cohort_runtime::ApiError;
use tracing::error;

use crate::auth::AuthError;
use crate::spool::SpoolError;

/// How long a client should wait after the spool was full.
pub(crate) const SPOOL_FULL_RETRY: Duration = Duration::from_secs(5);
/// How long a client should wait when the service cannot take a request now (shutting down,
/// the spool failing, the API key not verifiable).
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// Why a whole request failed (single bad events are rejections, not errors).
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("a batch holds at most {max} events, got {got}")]
    TooManyEvents { got: usize, max: usize },
    #[error("a batch holds at least one event")]
    EmptyBatch,
    #[error("client-side keys send exposures only; events[{index}] is a metric event")]
    MetricFromClientKey { index: usize },
    #[error("rate limit of the environment reached; retry in {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("event spool is full; retry in {retry_after:?}")]
    SpoolFull { retry_after: Duration },
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("event spool: {0}")]
    Spool(SpoolError),
}

impl From<SpoolError> for IngestError {
    fn from(e: SpoolError) -> Self {
        match e {
            SpoolError::Full { .. } => IngestError::SpoolFull { retry_after: SPOOL_FULL_RETRY },
            SpoolError::Closed => IngestError::ShuttingDown,
            other => IngestError::Spool(other),
        }
    }
}

/// What the client is told; internal failures are logged with their cause here, not leaked.
impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> ApiError {
        let unavailable = |message: &str| ApiError::Unavailable {
            message: message.to_owned(),
            retry_after: Some(UNAVAILABLE_RETRY),
        };
        match e {
            IngestError::Auth(e @ (AuthError::Missing | AuthError::Unknown)) => {
                ApiError::Unauthenticated(e.to_string())
            }
            IngestError::Auth(e @ AuthError::NotSdk) => ApiError::PermissionDenied(e.to_string()),
            e @ IngestError::MetricFromClientKey { .. } => ApiError::PermissionDenied(e.to_string()),
            IngestError::Auth(AuthError::Unavailable(e)) => {
                error!(error = %e, "api key verification failed");
                unavailable("cannot verify the API key now; retry later")
            }
            e @ (IngestError::TooManyEvents { .. } | IngestError::EmptyBatch) => {
                ApiError::invalid("events", e.to_string())
            }
            e @ (IngestError::RateLimited { retry_after } | IngestError::SpoolFull { retry_after }) => {
                ApiError::ResourceExhausted { message: e.to_string(), retry_after: Some(retry_after) }
            }
            e @ IngestError::ShuttingDown => unavailable(&e.to_string()),
            IngestError::Spool(e) => {
                error!(error = %e, "event spool failure");
                unavailable("the event spool cannot take writes now; retry later")
            }
        }
    }
}

/// Why the service could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("database: {0}")]
    Database(#[from] cohort_db::DbError),
    /// The config service's client could not be set up (the message names the setting).
    #[error("{0}")]
    Config(String),
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("{0}")]
    Tls(#[from] cohort_runtime::TlsError),
    #[error("{0}")]
    Serve(#[from] cohort_runtime::ServeError),
    #[error("{server} server: {message}")]
    Server { server: &'static str, message: String },
    #[error("background task {task} panicked or was cancelled")]
    Task { task: &'static str },
}

#[cfg(test)]
mod tests;
