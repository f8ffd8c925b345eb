//! The services the console calls, with the caller's own key, and the one mapping of their
//! gRPC answers to the console's JSON errors (console/API.md).

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cohort_proto::analysis::v1::analysis_service_client::AnalysisServiceClient;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use cohort_transport::ClientTls;
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Channels to the config and analysis services (connected lazily, shared by every request).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub config: ConfigServiceClient<Channel>,
    pub analysis: AnalysisServiceClient<Channel>,
}

impl Upstream {
    pub fn new(config: &str, analysis: &str, tls: &ClientTls) -> Result<Upstream, String> {
        let tls = tls.load().map_err(|e| e.to_string())?;
        let channel = |flag: &str, url: &str| -> Result<Channel, String> {
            Ok(cohort_transport::endpoint(url, &tls)
                .map_err(|e| format!("{flag}: {e}"))?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .connect_lazy())
        };
        Ok(Upstream {
            config: ConfigServiceClient::new(channel("--config-endpoint", config)?),
            analysis: AnalysisServiceClient::new(channel("--analysis-endpoint", analysis)?),
        })
    }
}

/// A request to a service, carrying the caller's key.
pub fn authed<T>(key: &Key, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", key.0.clone());
    r
}

/// The caller's `Authorization: Bearer …`, checked only for shape: the services judge it.
#[derive(Debug, Clone)]
pub struct Key(MetadataValue<tonic::metadata::Ascii>);

impl Key {
    pub fn from_header(value: Option<&axum::http::HeaderValue>) -> Result<Key, ConsoleError> {
        let secret = value
            .and_then(|v| v.to_str().ok())
            .and_then(cohort_runtime::bearer)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConsoleError::new(Code::Unauthenticated, "sign in: send your admin key as a bearer token")
            })?;
        let value = format!("Bearer {secret}")
            .parse()
            .map_err(|_| ConsoleError::new(Code::Unauthenticated, "the key is not a valid header value"))?;
        Ok(Key(value))
    }
}

/// An answer the console gives instead of data: a code, a message and the fields at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleError {
    pub code: Code,
    pub message: String,
    pub violations: Vec<(String, String)>,
}

impl ConsoleError {
    pub fn new(code: Code, message: impl Into<String>) -> ConsoleError {
        ConsoleError { code, message: message.into(), violations: Vec::new() }
    }

    pub fn invalid(field: &str, description: impl Into<String>) -> ConsoleError {
        let description = description.into();
        ConsoleError {
            code: Code::InvalidArgument,
            message: format!("{field}: {description}"),
            violations: vec![(field.to_owned(), description)],
        }
    }

    fn status(&self) -> StatusCode {
        match self.code {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<Status> for ConsoleError {
    fn from(s: Status) -> ConsoleError {
        let details = s.get_error_details();
        let mut violations: Vec<(String, String)> = details
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| (v.field.clone(), v.description.clone())).collect())
            .unwrap_or_default();
        if let Some(p) = details.precondition_failure() {
            violations.extend(p.violations.iter().map(|v| (v.subject.clone(), v.description.clone())));
        }
        let message = match s.code() {
            // A service's transport trouble says nothing useful to a person.
            Code::Unavailable => "a Cohort service cannot be reached; try again shortly".to_owned(),
            Code::Internal | Code::Unknown => "the service failed; see its logs".to_owned(),
            _ => s.message().to_owned(),
        };
        ConsoleError { code: s.code(), message, violations }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let code = format!("{:?}", self.code);
        let name = screaming(&code);
        let violations: Vec<_> =
            self.violations.iter().map(|(f, d)| json!({"field": f, "description": d})).collect();
        let body = json!({"error": {"code": name, "message": self.message, "violations": violations}});
        (self.status(), Json(body)).into_response()
    }
}

/// `FailedPrecondition` → `FAILED_PRECONDITION`.
fn screaming(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_the_api_says() {
        assert_eq!(screaming("FailedPrecondition"), "FAILED_PRECONDITION");
        assert_eq!(screaming("Unauthenticated"), "UNAUTHENTICATED");
        assert_eq!(ConsoleError::new(Code::FailedPrecondition, "stale").status(), StatusCode::CONFLICT);
        assert_eq!(ConsoleError::new(Code::Unauthenticated, "no").status(), StatusCode::UNAUTHORIZED);
    }
}
