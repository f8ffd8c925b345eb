//! HTTP JSON for browsers and edge workers: `POST /api/v1/evaluate` with an SDK or client key, a
//! context in cohort-core's JSON shape and optional keys; decisions keyed by flag or experiment
//! key.
//!
//! - CORS: preflights are answered for any origin (they carry no key, so no environment), and
//!   a request with an `Origin` header is answered only when its key's environment allows
//!   that origin ([`crate::origins`]); otherwise 403, before anything is evaluated.
//! - Responses are `no-store` unless the caller asks for caching with `?cache=N` (seconds,
//!   capped): then `private, max-age=N` with an ETag of the config version and a hash of the
//!   request, and `If-None-Match` answers 304 without evaluating.
//! - Values are written from the JSON serialized when the config was compiled.

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cohort_sdk::{Context, Decision};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ServiceError;
use crate::evaluate::{Evaluator, check_context, for_each_decision};

pub const PATH: &str = "/api/v1/evaluate";

/// tower-http's CORS layer: preflights answered for the origin that asks (which environment
/// it wants is known only from the key of the request that follows, checked by the handler),
/// `Vary: origin`, and the headers a browser client reads exposed. No credentials (cookies)
/// are ever allowed: keys travel in `Authorization`.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::IF_NONE_MATCH])
        .expose_headers([header::ETAG, header::CACHE_CONTROL, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

#[derive(Debug, Clone)]
pub struct HttpState {
    pub evaluator: Evaluator,
    /// Largest `max-age` a caller may ask for, in seconds.
    pub max_cache: u64,
}

pub fn router(state: HttpState, cors: CorsLayer) -> Router {
    Router::new().route(PATH, post(evaluate)).with_state(state).layer(cors)
}

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(default)]
    context: Context,
    #[serde(default)]
    keys: Vec<String>,
}

async fn evaluate(
    State(state): State<HttpState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match serve(&state, query.as_deref(), &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    state: &HttpState,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ServiceError> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    crate::environments::bearer(auth)?;
    let cache = cache_seconds(query)?.map(|n| n.min(state.max_cache)).filter(|n| *n > 0);
    // A repeated key (an attribute given twice) is refused rather than the last one winning.
    if let Some(d) = cohort_core::json::duplicate_key(body) {
        return Err(ServiceError::invalid(d.path.clone(), d.to_string()));
    }
    let request: Body = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
        .map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "body".to_owned() } else { path };
            ServiceError::invalid(field, e.inner().to_string())
        })?;
    check_context(&request.context).map_err(|e| e.at("context"))?;
    state.evaluator.check_keys(&request.keys)?;
    let client = state.evaluator.client(auth).await?;
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| ServiceError::invalid("Origin", "is not text"))?;
        let key = crate::environments::bearer(auth)?;
        state.evaluator.origins.check(key, origin).await?;
    }
    let cfg = client.config();
    let version = cfg.version();

    let mut h = HeaderMap::new();
    match cache {
        Some(max_age) => {
            let etag = etag(version, auth.unwrap_or_default(), body);
            let matched = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
            let etag =
                HeaderValue::from_str(&etag).map_err(|_| ServiceError::invalid("body", "unhashable"))?;
            h.insert(header::ETAG, etag);
            let control = HeaderValue::from_str(&format!("private, max-age={max_age}"))
                .unwrap_or(HeaderValue::from_static("no-store"));
            h.insert(header::CACHE_CONTROL, control);
            // The answer depends on the key; a shared cache must not mix callers.
            h.insert(header::VARY, HeaderValue::from_static("authorization"));
            if matched {
                return Ok((StatusCode::NOT_MODIFIED, h).into_response());
            }
        }
        None => {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    let mut out = Vec::with_capacity(64 + 128 * request.keys.len().max(8));
    write!(out, "{{\"config_version\":{version},\"decisions\":{{").expect("writing to a Vec cannot fail");
    let mut first = true;
    let mut count = 0u64;
    // A key asked for twice is one JSON member.
    let mut seen = foldhash::HashSet::default();
    let keys: Vec<&str> = request.keys.iter().map(String::as_str).filter(|k| seen.insert(*k)).collect();
    for_each_decision(&cfg, &request.context, &keys, |d| {
        if !first {
            out.push(b',');
        }
        first = false;
        count += 1;
        write_decision(&mut out, d);
    });
    out.extend_from_slice(b"}}");
    state.evaluator.metrics.decisions.inc_by(count);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok((StatusCode::OK, h, out).into_response())
}

/// `?cache=N`: the max-age the caller wants, in seconds.
pub fn cache_seconds(query: Option<&str>) -> Result<Option<u64>, ServiceError> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "cache" {
            return value
                .parse::<u64>()
                .map(Some)
                .map_err(|_| ServiceError::invalid("cache", "must be a number of seconds"));
        }
    }
    Ok(None)
}

/// A strong ETag of the config version and the request (key and body).
pub fn etag(version: u64, authorization: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(authorization.as_bytes());
    hash.update([0]);
    hash.update(body);
    let digest = hash.finalize();
    format!("\"{version}-{}\"", hex::encode(&digest[..8]))
}

/// `"key":{"variant":..,"value":..,"reason":..,"error_code":..,"enrolled":..}`.
pub fn write_decision(out: &mut Vec<u8>, d: &Decision<'_>) {
    let string = |out: &mut Vec<u8>, s: &str| {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    };
    string(out, d.key);
    out.extend_from_slice(b":{\"variant\":");
    match d.variant {
        Some(v) => string(out, v),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"value\":");
    match (d.value_json, d.value) {
        (Some(json), _) => out.extend_from_slice(json.as_bytes()),
        (None, Some(v)) => serde_json::to_writer(&mut *out, v).expect("writing to a Vec cannot fail"),
        (None, None) => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"reason\":\"");
    out.extend_from_slice(d.reason.as_str().as_bytes());
    out.extend_from_slice(b"\",\"error_code\":");
    match d.error {
        Some(code) => {
            out.push(b'"');
            out.extend_from_slice(code.as_str().as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(if d.enrolled { b",\"enrolled\":true}" } else { b",\"enrolled\":false}" });
}

#[cfg(test)]
mod tests;
