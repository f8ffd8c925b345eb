//! cohortctl's error type: what stops a command, as one message for the operator.

use tonic::Status;

use crate::diagnostic::describe_full;

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("no API key: pass --api-key or set COHORT_API_KEY")]
    NoApiKey,
    /// A call the server refused; `doing` says which.
    #[error("{doing}: {}", describe_full(.status))]
    Rpc { doing: String, status: Box<Status> },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Usage(String),
    /// A lifecycle move the experiment cannot make from where it is.
    #[error("{0}")]
    Lifecycle(String),
    /// Flags that cannot be written as a flagd file (`get -o flagd`).
    #[error("cannot write a flagd file: {0}")]
    Flagd(String),
    #[error("the server sent {0}")]
    Protocol(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl CtlError {
    pub fn rpc(doing: impl Into<String>, status: Status) -> CtlError {
        CtlError::Rpc { doing: doing.into(), status: Box::new(status) }
    }
}
