//! The SDK's error type: what `build()` and the offline constructors can report.
//!
//! Evaluation never returns these: it serves the caller's default and says why in the
//! decision's reason and error code.

use std::time::Duration;

use cohort_core::ConfigErrors;

/// Why a client could not be built or an operation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// Neither a config service endpoint nor bootstrap definitions were given.
    #[error("no config service endpoint and no bootstrap definitions given")]
    NoConfigSource,
    /// An endpoint URI does not parse.
    #[error("endpoint {endpoint}: {message}")]
    InvalidEndpoint { endpoint: String, message: String },
    /// The SDK key cannot travel in an `authorization` header (it must be visible ASCII).
    #[error("sdk key is empty or not a valid header value")]
    InvalidKey,
    /// A builder option is out of range.
    #[error("option {option}: {message}")]
    InvalidOption { option: &'static str, message: String },
    /// The config service definitively rejected the SDK key (UNAUTHENTICATED or
    /// PERMISSION_DENIED). Returned by `build()` only with `fail_on_rejected_key(true)`.
    #[error("the config service rejected the sdk key: {0}")]
    KeyRejected(String),
    /// Bootstrap or offline definitions do not compile.
    #[error("definitions do not compile: {0}")]
    Config(#[from] ConfigErrors),
    /// `flush()` or `close()` did not deliver everything before its timeout.
    #[error("timed out after {0:?} with {1} events undelivered")]
    Timeout(Duration, usize),
    /// The client was closed, or was built without an event service.
    #[error("event delivery is not running")]
    EventsDisabled,
}

/// Why `track()` did not queue an event. Evaluation-side exposures never report errors: they
/// are counted in [`crate::Stats`] instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackError {
    /// The event breaks a limit of the event service; it would be rejected.
    #[error("event {field}: {message}")]
    Invalid { field: String, message: String },
    /// The queue holds `max_queued_events` already; the event was dropped and counted.
    #[error("event queue is full ({0} events): event dropped")]
    QueueFull(usize),
    /// The client has no event service endpoint, or was closed.
    #[error("event delivery is not running")]
    Disabled,
}
