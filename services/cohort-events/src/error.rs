//! The service's errors: what a request can fail with ([`IngestError`], mapped to gRPC statuses
//! and HTTP responses in one place each) and what start-up can fail with ([`EventsError`]).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::error;

use crate::auth::AuthError;
use crate::spool::SpoolError;

/// How long a client should wait after the spool was full.
pub(crate) const SPOOL_FULL_RETRY: Duration = Duration::from_secs(5);

/// Why a whole request failed (single bad events are rejections, not errors).
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("a batch holds at most {max} events, got {got}")]
    TooManyEvents { got: usize, max: usize },
    #[error("a batch holds at least one event")]
    EmptyBatch,
    #[error("invalid request body: {0}")]
    BadBody(String),
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

impl IngestError {
    /// The gRPC code, which is also the metric label of refused requests.
    pub(crate) fn code(&self) -> Code {
        match self {
            IngestError::Auth(AuthError::Missing | AuthError::Unknown) => Code::Unauthenticated,
            IngestError::Auth(AuthError::NotSdk) => Code::PermissionDenied,
            IngestError::Auth(AuthError::Unavailable(_)) => Code::Unavailable,
            IngestError::TooManyEvents { .. } | IngestError::EmptyBatch | IngestError::BadBody(_) => {
                Code::InvalidArgument
            }
            IngestError::RateLimited { .. } | IngestError::SpoolFull { .. } => Code::ResourceExhausted,
            IngestError::ShuttingDown | IngestError::Spool(_) => Code::Unavailable,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            IngestError::RateLimited { retry_after } | IngestError::SpoolFull { retry_after } => {
                Some(*retry_after)
            }
            IngestError::Auth(AuthError::Unavailable(_))
            | IngestError::ShuttingDown
            | IngestError::Spool(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// What the client is told; internal failures are logged with their cause, not leaked.
    fn public_message(&self) -> String {
        match self {
            IngestError::Spool(e) => {
                error!(error = %e, "event spool failure");
                "the event spool cannot take writes now; retry later".to_owned()
            }
            IngestError::Auth(AuthError::Unavailable(e)) => {
                error!(error = %e, "api key verification failed");
                "cannot verify the API key now; retry later".to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl From<IngestError> for Status {
    fn from(e: IngestError) -> Status {
        let code = e.code();
        let message = e.public_message();
        let retry = e.retry_after();
        let bad_batch = matches!(e, IngestError::TooManyEvents { .. } | IngestError::EmptyBatch);
        if retry.is_none() && !bad_batch {
            return Status::new(code, message);
        }
        let mut details = ErrorDetails::new();
        if let Some(delay) = retry {
            details.set_retry_info(Some(delay));
        }
        if bad_batch {
            details.add_bad_request_violation("events", message.clone());
        }
        Status::with_error_details(code, message, details)
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match self.code() {
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let retry = self.retry_after();
        let body = serde_json::json!({ "error": self.public_message() });
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(delay) = retry {
            let secs = delay.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
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
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("{server} server: {message}")]
    Serve { server: &'static str, message: String },
    #[error("background task {task} panicked or was cancelled")]
    Task { task: &'static str },
}
