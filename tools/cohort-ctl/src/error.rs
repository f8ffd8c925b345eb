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
    /// A bad command line that clap could not see (a format the command cannot print, a
    /// missing key): exit status 2, as for clap's own errors.
    #[error("{0}")]
    Usage(String),
    /// Not done because it was not confirmed (`apply --prune` without `--yes` or a "y").
    #[error("{0}")]
    Refused(String),
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

/// Exit statuses, as `--help` and docs/cli.md list them.
pub mod exit {
    /// Everything asked for was done.
    pub const OK: u8 = 0;
    /// The command ran and something failed, or was refused or not confirmed.
    pub const FAILURE: u8 = 1;
    /// A bad command line: unknown option, missing argument, a format the command cannot print.
    pub const USAGE: u8 = 2;
}

impl CtlError {
    /// The exit status this error ends the command with.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) | CtlError::NoApiKey => exit::USAGE,
            _ => exit::FAILURE,
        }
    }

    pub fn rpc(doing: impl Into<String>, status: Status) -> CtlError {
        CtlError::Rpc { doing: doing.into(), status: Box::new(status) }
    }
}
