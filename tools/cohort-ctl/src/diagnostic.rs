//! Problems reported to the operator as `FILE:LINE: kind key: field: description`, and the
//! reading of a gRPC status (field and precondition violations) into them.

use std::fmt;

use serde::Serialize;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::definition::Kind;

/// One problem, with as much of where and what as is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    /// The field is a path from the file's root that names the entity itself (a flagd file's
    /// `flags["k"].state`), so the entity is not named again when shown.
    #[serde(skip)]
    pub named_by_field: bool,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: None,
            line: None,
            kind: None,
            key: None,
            field: None,
            message: message.into(),
            named_by_field: false,
        }
    }

    pub fn at(mut self, file: impl Into<String>, line: Option<usize>) -> Diagnostic {
        self.file = Some(file.into());
        self.line = line;
        self
    }

    pub fn about(mut self, kind: Kind, key: impl Into<String>) -> Diagnostic {
        self.kind = Some(kind);
        self.key = Some(key.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Diagnostic {
        let field = field.into();
        self.field = (!field.is_empty() && field != ".").then_some(field);
        self
    }

    /// See [`Diagnostic::named_by_field`].
    pub fn named_by_field(mut self) -> Diagnostic {
        self.named_by_field = true;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            _ => {}
        }
        if let (Some(kind), Some(key)) = (self.kind, &self.key)
            && !(self.named_by_field && self.field.is_some())
        {
            write!(f, "{kind} {key}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What a status says went wrong, as (field, description) pairs; an empty field stands for
/// the request as a whole.
pub fn violations(status: &Status) -> Vec<(String, String)> {
    let details = status.get_error_details();
    let mut out = Vec::new();
    if let Some(bad) = details.bad_request() {
        out.extend(bad.field_violations.iter().map(|v| (v.field.clone(), v.description.clone())));
    }
    if let Some(pre) = details.precondition_failure() {
        out.extend(pre.violations.iter().map(|v| (v.subject.clone(), v.description.clone())));
    }
    if out.is_empty() {
        out.push((String::new(), describe(status)));
    } else if status.code() == Code::FailedPrecondition {
        // The message says what was refused and then repeats the violations; keep each once.
        let listed: Vec<String> = out.iter().map(|(f, d)| format!("{f}: {d}")).collect();
        let message = status.message();
        let head = message.strip_suffix(&format!(": {}", listed.join("; "))).unwrap_or(message);
        if !out.iter().any(|(_, d)| d == head) {
            out.insert(0, (String::new(), head.to_owned()));
        }
    }
    out
}

/// A status as one line for people: `not found: flag "x" does not exist`.
pub fn describe(status: &Status) -> String {
    let message = status.message();
    let code = code_name(status.code());
    if message.is_empty() { code.to_owned() } else { format!("{code}: {message}") }
}

/// A status with its violations, each on a line of its own.
pub fn describe_full(status: &Status) -> String {
    let details = violations(status);
    if details.len() == 1 && details[0].0.is_empty() {
        return details[0].1.clone();
    }
    let mut out = code_name(status.code()).to_owned();
    for (field, description) in details {
        out.push_str("\n  ");
        if !field.is_empty() {
            out.push_str(&field);
            out.push_str(": ");
        }
        out.push_str(&description);
    }
    out
}

pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded (see --timeout)",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal server error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated (check --api-key)",
    }
}
