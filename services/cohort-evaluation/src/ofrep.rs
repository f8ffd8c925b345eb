//! The OpenFeature Remote Evaluation Protocol (OFREP) over HTTP, so any OpenFeature SDK's
//! OFREP provider evaluates here without a Cohort SDK: `POST /ofrep/v1/evaluate/flags/{key}`
//! (one flag, for server providers) and `POST /ofrep/v1/evaluate/flags` (everything, for
//! client providers, with an ETag). Paths, fields, codes and statuses are those of OFREP's
//! OpenAPI document, `service/openapi.yaml` in github.com/open-feature/protocol (version
//! 0.2.0), and its ADRs under `service/adrs/` (0006: a success without `value` defers to the
//! caller's code default).
//!
//! # Requests
//! - The key: `Authorization: Bearer <key>`, else `X-API-Key: <key>`; SDK or client keys, as
//!   `POST /api/v1/evaluate` takes them (401 without one or for an unknown key, 403 for admin
//!   and service keys). The skeleton's per-key rate limit reads `authorization` only, so a key
//!   sent in `X-API-Key` is held to the same rate here (429 with `Retry-After`), counted
//!   apart from that key's `authorization` requests.
//! - CORS as `/api/v1/evaluate`: preflights answered for any origin; a request with `Origin`
//!   is answered only if its key's environment lists that origin, else 403 before anything is
//!   evaluated or recorded. `X-API-Key` and `If-None-Match` may be sent, `ETag` is exposed.
//! - The body is `{"context": {...}}` (other members are ignored, as the schema allows; a
//!   missing or null context is the anonymous one). Not JSON, not an object, or a context that
//!   is not an object: 400 `PARSE_ERROR`.
//!
//! # The context
//! `targetingKey` (a string of at most 256 bytes) is the targeting key, the unit experiments
//! and splits bucket. Every other member is an attribute: strings, numbers, booleans and lists
//! of strings as they are; objects flatten to dotted names (`{"user": {"plan": "pro"}}` is
//! `user.plan`), at most [`MAX_CONTEXT_DEPTH`] names deep. Anything else (null, a list holding
//! anything but strings, deeper nesting, a name given twice, e.g. both as `"user.plan"` and
//! nested) is 400 `INVALID_CONTEXT` whose `errorDetails` starts with the field's path
//! (`context.user.plan`, `context.tags[1]`). The wire conversion's limits apply (attribute
//! count, name and value sizes, list length).
//!
//! # Answers
//! - A flag: `value` is its variation's value (the JSON serialized at compile time, written
//!   as is), `variant` the variation key, `reason` cohort-core's (`STATIC`, `TARGETING_MATCH`,
//!   `SPLIT`, `DISABLED`, `DEFAULT`: already OpenFeature's names), `metadata.ruleId` the
//!   matched rule's id.
//! - An experiment: `value` is the variant's payload, or its key (a string) when it has none;
//!   `variant` the variant key; `metadata` `{experimentId, variant, enrolled}`. A unit not
//!   enrolled (targeting, traffic, a holdout), or an experiment not running, is answered
//!   without `value` and with a null `variant`, reason `DEFAULT` or `DISABLED`: OFREP's code-default answer
//!   (ADR 0006), so the provider serves the caller's default as a success, not an error
//!   (before that ADR `value` was required; a provider that predates it takes the answer for
//!   an error, which also serves the caller's default). Evaluating records the
//!   exposure through the key's SDK client, exactly as `/api/v1/evaluate` does.
//! - Client-side keys are told no rule or experiment ids (`ruleId`, `experimentId`), as the
//!   gRPC API's `DecisionEncoder::public_with_capacity` leaves them out.
//! - One flag's errors: 404 `FLAG_NOT_FOUND`; 400 `TARGETING_KEY_MISSING` when it needs a
//!   unit (a split, an experiment) and none was given; `{key, errorCode, errorDetails}`.
//! - Bulk: `{"flags": [...]}`, every flag then every running experiment, each a success or
//!   `{key, errorCode, errorDetails}` (a split without a unit). The ETag is the config version
//!   and a hash of the key and the canonical context (targeting key and attributes sorted by
//!   name, typed), so it changes exactly when one of them may change the answer, and not with
//!   the JSON's spelling (member order, white space, nested or dotted names, which header
//!   carried the key). A matching `If-None-Match` is 304 without evaluating.
//! - 503 with `Retry-After` while the environment's config is not loaded yet; 500
//!   `{"errorDetails": "internal error"}`, never more.

use std::borrow::Cow;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cohort_core::hash::MAX_UNIT_BYTES;
use cohort_core::model::ExperimentStatus;
use cohort_proto::convert::{
    MAX_ATTRIBUTE_NAME_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES, MAX_LIST_ELEMENTS,
};
use cohort_runtime::ApiError;
use cohort_sdk::{AttrValue, Context, Decision, DecisionKind, ErrorCode};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::environments::{self, is_client_key};
use crate::error::ServiceError;
use crate::evaluate::{Evaluator, for_each_decision};

/// One flag.
pub const FLAG_PATH: &str = "/ofrep/v1/evaluate/flags/{key}";
/// Every flag and running experiment.
pub const BULK_PATH: &str = "/ofrep/v1/evaluate/flags";
/// OFREP's other way to send the key.
pub const API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// The most names a context attribute may be nested under (`a.b.c` is 3).
pub const MAX_CONTEXT_DEPTH: usize = 8;
/// The context member that is the targeting key.
pub const TARGETING_KEY: &str = "targetingKey";

/// What the OFREP routes share.
#[derive(Debug, Clone)]
pub struct OfrepState {
    pub evaluator: Evaluator,
}

/// The OFREP routes, with their own CORS layer (the one of `/api/v1/evaluate`, plus
/// `X-API-Key`).
pub fn router(state: OfrepState) -> Router {
    Router::new()
        .route(FLAG_PATH, post(evaluate_flag))
        .route(BULK_PATH, post(evaluate_bulk))
        .with_state(state)
        .layer(cors())
}

/// As [`crate::http::cors`], with `X-API-Key` allowed.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([Method::POST])
        .allow_headers([header::AUTHORIZATION, API_KEY, header::CONTENT_TYPE, header::IF_NONE_MATCH])
        .expose_headers([header::ETAG, header::CACHE_CONTROL, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

/// A failed OFREP answer.
#[derive(Debug, thiserror::Error)]
pub enum OfrepError {
    /// 400 with an OFREP error code: `PARSE_ERROR`, `INVALID_CONTEXT`,
    /// `TARGETING_KEY_MISSING` or `GENERAL`.
    #[error("{}: {details}", code.as_str())]
    BadRequest { code: ErrorCode, details: String },
    /// 404 `FLAG_NOT_FOUND`.
    #[error("no flag or experiment has this key")]
    NotFound,
    /// Keys, rates, readiness: the service's own answers (401, 403, 429, 503).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// 500, saying nothing more.
    #[error("internal error")]
    Internal,
}

impl From<ServiceError> for OfrepError {
    fn from(e: ServiceError) -> Self {
        OfrepError::Api(e.into())
    }
}

impl From<ContextError> for OfrepError {
    fn from(e: ContextError) -> Self {
        OfrepError::BadRequest { code: ErrorCode::InvalidContext, details: e.to_string() }
    }
}

impl OfrepError {
    fn parse(details: impl Into<String>) -> Self {
        OfrepError::BadRequest { code: ErrorCode::ParseError, details: details.into() }
    }

    /// The answer; `key` is the flag asked for (single-flag errors name it, bulk ones do not).
    pub fn respond(self, key: Option<&str>) -> Response {
        let body = |code: &str, details: &str| {
            let mut body = serde_json::json!({ "errorCode": code, "errorDetails": details });
            if let Some(key) = key {
                body["key"] = key.into();
            }
            axum::Json(body)
        };
        match self {
            OfrepError::BadRequest { code, details } => {
                (StatusCode::BAD_REQUEST, body(code.as_str(), &details)).into_response()
            }
            OfrepError::NotFound => {
                let details = "no flag or experiment has this key";
                (StatusCode::NOT_FOUND, body(ErrorCode::FlagNotFound.as_str(), details)).into_response()
            }
            OfrepError::Api(e) => {
                let mut response = e.into_response();
                // OFREP's 429 carries Retry-After; the service's own shutdown answer has none.
                if response.status() == StatusCode::TOO_MANY_REQUESTS {
                    response
                        .headers_mut()
                        .entry(header::RETRY_AFTER)
                        .or_insert(HeaderValue::from_static("1"));
                }
                response
            }
            OfrepError::Internal => {
                let body = axum::Json(serde_json::json!({ "errorDetails": "internal error" }));
                (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
            }
        }
    }
}

/// A context member Cohort cannot take: its path (`context.user.plan`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ContextError {
    pub path: String,
    pub message: String,
}

impl ContextError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ContextError { path: path.into(), message: message.into() }
    }
}

/// An OFREP context as a Cohort context (see the module doc for the rule).
pub fn context_from_json(members: &Map<String, Value>) -> Result<Context, ContextError> {
    let mut ctx = Context::anonymous();
    for (name, value) in members {
        if name == TARGETING_KEY {
            let path = || format!("context.{TARGETING_KEY}");
            let Value::String(key) = value else {
                return Err(ContextError::new(path(), format!("must be a string, not {}", kind(value))));
            };
            if key.len() > MAX_UNIT_BYTES {
                return Err(ContextError::new(
                    path(),
                    format!("is {} bytes, at most {MAX_UNIT_BYTES} allowed", key.len()),
                ));
            }
            ctx.targeting_key = Some(key.clone());
        } else {
            flatten(&mut ctx, Cow::Borrowed(name), value, 1)?;
        }
    }
    Ok(ctx)
}

/// Adds `value` under `name`, objects as dotted names `depth` names deep and more.
fn flatten(ctx: &mut Context, name: Cow<'_, str>, value: &Value, depth: usize) -> Result<(), ContextError> {
    let path = || format!("context.{name}");
    let attribute = match value {
        Value::Object(members) => {
            if depth >= MAX_CONTEXT_DEPTH && !members.is_empty() {
                return Err(ContextError::new(
                    path(),
                    format!("objects may be nested at most {MAX_CONTEXT_DEPTH} names deep"),
                ));
            }
            for (member, value) in members {
                flatten(ctx, Cow::Owned(format!("{name}.{member}")), value, depth + 1)?;
            }
            return Ok(());
        }
        Value::String(s) => AttrValue::String(text(s, path)?.to_owned()),
        Value::Number(n) => match n.as_f64() {
            Some(n) if n.is_finite() => AttrValue::Number(n),
            _ => return Err(ContextError::new(path(), format!("{n} is not a finite number"))),
        },
        Value::Bool(b) => AttrValue::Bool(*b),
        Value::Array(items) => {
            if items.len() > MAX_LIST_ELEMENTS {
                return Err(ContextError::new(
                    path(),
                    format!("{} elements, at most {MAX_LIST_ELEMENTS} allowed", items.len()),
                ));
            }
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let at = || format!("context.{name}[{i}]");
                let Value::String(s) = item else {
                    return Err(ContextError::new(
                        at(),
                        format!("a list may hold only strings, not {}", kind(item)),
                    ));
                };
                list.push(text(s, at)?.to_owned());
            }
            AttrValue::StringList(list)
        }
        Value::Null => {
            return Err(ContextError::new(path(), "null is no attribute value; leave the member out"));
        }
    };
    if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME_BYTES {
        return Err(ContextError::new(
            path(),
            format!("a name must be 1 to {MAX_ATTRIBUTE_NAME_BYTES} bytes"),
        ));
    }
    if ctx.attributes.len() >= MAX_ATTRIBUTES && !ctx.attributes.contains_key(&*name) {
        return Err(ContextError::new("context", format!("more than {MAX_ATTRIBUTES} attributes")));
    }
    match ctx.attributes.entry(name.into_owned()) {
        std::collections::hash_map::Entry::Occupied(e) => Err(ContextError::new(
            format!("context.{}", e.key()),
            "given twice (as a dotted name and nested, or nested twice)",
        )),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(attribute);
            Ok(())
        }
    }
}

/// `s` if it is not too long for an attribute value.
fn text(s: &str, path: impl FnOnce() -> String) -> Result<&str, ContextError> {
    if s.len() > MAX_ATTRIBUTE_VALUE_BYTES {
        return Err(ContextError::new(
            path(),
            format!("a string of {} bytes, at most {MAX_ATTRIBUTE_VALUE_BYTES} allowed", s.len()),
        ));
    }
    Ok(s)
}

/// A JSON value's kind, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The context of a request body (see the module doc).
pub fn parse_body(body: &[u8]) -> Result<Context, OfrepError> {
    // A repeated member is refused rather than the last one winning, as on every JSON door.
    if let Some(d) = cohort_core::json::duplicate_key(body) {
        let in_context = d.path.starts_with("context.") || d.path.starts_with("context[");
        let details = format!("{}: {d}", d.path);
        return Err(if in_context {
            OfrepError::BadRequest { code: ErrorCode::InvalidContext, details }
        } else {
            OfrepError::parse(details)
        });
    }
    let body: Value =
        serde_json::from_slice(body).map_err(|e| OfrepError::parse(format!("the body is not JSON: {e}")))?;
    let Value::Object(mut body) = body else {
        return Err(OfrepError::parse(format!("the body must be an object, not {}", kind(&body))));
    };
    match body.remove("context") {
        None | Some(Value::Null) => Ok(Context::anonymous()),
        Some(Value::Object(members)) => Ok(context_from_json(&members)?),
        Some(other) => Err(OfrepError::parse(format!("context must be an object, not {}", kind(&other)))),
    }
}

/// The key of a request: `Bearer` in `authorization`, else `X-API-Key`, as the
/// `authorization` value the evaluator takes.
fn authorization(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if auth.is_some_and(|a| cohort_runtime::bearer(a).is_some()) {
        return auth.map(Cow::Borrowed);
    }
    match headers.get(API_KEY).and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty()) {
        Some(key) => Some(Cow::Owned(format!("Bearer {key}"))),
        // Whatever `authorization` holds, the evaluator says what is wrong with it.
        None => auth.map(Cow::Borrowed),
    }
}

/// What a checked request evaluates with.
struct Prepared {
    ctx: Context,
    client: cohort_sdk::Client,
    /// The key itself (for the ETag).
    key: String,
    /// A client-side key: no ids in answers.
    public: bool,
}

impl OfrepState {
    /// Key, rate, body, environment and origin, in that order, as `/api/v1/evaluate` checks.
    async fn prepare(&self, headers: &HeaderMap, body: &[u8]) -> Result<Prepared, OfrepError> {
        // The skeleton's per-key rate limit has seen the key already, in either header.
        let auth = authorization(headers);
        let key = environments::bearer(auth.as_deref())?;
        let ctx = parse_body(body)?;
        let client = self.evaluator.client(auth.as_deref()).await?;
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().map_err(|_| OfrepError::BadRequest {
                code: ErrorCode::General,
                details: "the Origin header is not text".into(),
            })?;
            self.evaluator.origins.check(key, origin).await?;
        }
        Ok(Prepared { ctx, client, key: key.to_owned(), public: is_client_key(key) })
    }
}

async fn evaluate_flag(
    State(state): State<OfrepState>,
    key: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = match key {
        Ok(Path(key)) => key,
        Err(e) => return OfrepError::parse(e.body_text()).respond(None),
    };
    match serve_flag(&state, &key, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.respond(Some(&key)),
    }
}

async fn serve_flag(
    state: &OfrepState,
    key: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OfrepError> {
    let p = state.prepare(headers, body).await?;
    let cfg = p.client.config();
    let mut out = Vec::with_capacity(256);
    // Through the guard: an enrolled unit's exposure is recorded.
    let mut failed = None;
    for_each_decision(&cfg, &p.ctx, &[key], |d| match d.error {
        None => write_success(&mut out, d, p.public),
        Some(code) => failed = Some(code),
    });
    state.evaluator.metrics.decisions.inc();
    if let Some(code) = failed {
        return Err(decision_error(code));
    }
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::OK, h, out).into_response())
}

/// A decision's error as the single-flag answer.
fn decision_error(code: ErrorCode) -> OfrepError {
    let bad = |code, details: &str| OfrepError::BadRequest { code, details: details.into() };
    match code {
        ErrorCode::FlagNotFound => OfrepError::NotFound,
        ErrorCode::ProviderNotReady => ServiceError::Unavailable {
            message: "the environment's config is not loaded yet; retry shortly".into(),
            retry_after: environments::RETRY_AFTER,
        }
        .into(),
        other => bad(error_code(other), error_details(other)),
    }
}

/// The OFREP code of a decision's error (evaluation failures carry only these four).
fn error_code(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::ParseError | ErrorCode::TargetingKeyMissing | ErrorCode::InvalidContext => code,
        _ => ErrorCode::General,
    }
}

fn error_details(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::TargetingKeyMissing => {
            "this flag or experiment assigns by unit: send context.targetingKey"
        }
        ErrorCode::InvalidContext => "context.targetingKey is too long",
        ErrorCode::ProviderNotReady => "the environment's config is not loaded yet",
        _ => "this flag cannot be evaluated",
    }
}

async fn evaluate_bulk(State(state): State<OfrepState>, headers: HeaderMap, body: Bytes) -> Response {
    match serve_bulk(&state, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.respond(None),
    }
}

async fn serve_bulk(state: &OfrepState, headers: &HeaderMap, body: &[u8]) -> Result<Response, OfrepError> {
    let p = state.prepare(headers, body).await?;
    let cfg = p.client.config();
    let etag = etag(cfg.version(), &p.key, &p.ctx);
    let mut h = HeaderMap::new();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).map_err(|_| OfrepError::Internal)?);
    // Stored, but asked again every time; the answer depends on the key.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("authorization, x-api-key"));
    let matched = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| etag_matches(v, &etag));
    if matched {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }

    let mut out = Vec::with_capacity(64 + 160 * cfg.compiled().len());
    out.extend_from_slice(b"{\"flags\":[");
    let mut count = 0u64;
    for_each_decision(&cfg, &p.ctx, &[] as &[&str], |d| {
        count += 1;
        let stopped = d.experiment.is_some_and(|e| e.status() != ExperimentStatus::Running);
        if d.kind == Some(DecisionKind::Experiment) && stopped {
            return;
        }
        if out.last() != Some(&b'[') {
            out.push(b',');
        }
        match d.error {
            None => write_success(&mut out, d, p.public),
            Some(code) => write_failure(&mut out, d.key, code),
        }
    });
    out.extend_from_slice(b"]}");
    state.evaluator.metrics.decisions.inc_by(count);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok((StatusCode::OK, h, out).into_response())
}

/// Whether an `If-None-Match` value (a list) names `etag` (weakly, as RFC 9110 compares) or
/// is `*`.
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// A strong ETag of the config version, the key and the canonical context: the same for
/// every spelling of one request, different when the answer may differ.
pub fn etag(version: u64, key: &str, ctx: &Context) -> String {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(key.as_bytes());
    // An empty targeting key is none (`Context::key`).
    match ctx.key() {
        Some(unit) => {
            field(b"k");
            field(unit.as_bytes());
        }
        None => field(b""),
    }
    let mut names: Vec<&String> = ctx.attributes.keys().collect();
    names.sort_unstable();
    for name in names {
        field(name.as_bytes());
        match &ctx.attributes[name] {
            AttrValue::String(s) => {
                field(b"s");
                field(s.as_bytes());
            }
            AttrValue::Number(n) => {
                field(b"n");
                // 0.0 and -0.0 compare equal, so they answer alike.
                let n = if *n == 0.0 { 0.0f64 } else { *n };
                field(&n.to_bits().to_le_bytes());
            }
            AttrValue::Bool(b) => field(if *b { b"t" } else { b"f" }),
            AttrValue::StringList(list) => {
                field(b"l");
                field(&(list.len() as u64).to_le_bytes());
                for s in list {
                    field(s.as_bytes());
                }
            }
        }
    }
    let digest = hash.finalize();
    format!("\"{version}-{}\"", hex::encode(&digest[..12]))
}

fn string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// `{"key":..,"reason":..,"variant":..,"value":..,"metadata":{..}}`; `variant` null and `value`
/// left out when there are none (the caller's code default applies). `public` leaves out ids.
pub fn write_success(out: &mut Vec<u8>, d: &Decision<'_>, public: bool) {
    out.extend_from_slice(b"{\"key\":");
    string(out, d.key);
    out.extend_from_slice(b",\"reason\":\"");
    out.extend_from_slice(d.reason.as_str().as_bytes());
    out.push(b'"');
    out.extend_from_slice(b",\"variant\":");
    match d.variant {
        Some(variant) => string(out, variant),
        // Present though empty: OpenFeature's Python OFREP provider (0.3.0) reads the member
        // unconditionally and would report the code-default answer as an error.
        None => out.extend_from_slice(b"null"),
    }
    let value = match (d.value_json, d.value) {
        (Some("null"), _) => None,
        (Some(json), _) => Some(Cow::Borrowed(json)),
        (None, Some(Value::Null)) | (None, None) => None,
        (None, Some(v)) => Some(Cow::Owned(v.to_string())),
    };
    match (value, d.variant) {
        (Some(json), _) => {
            out.extend_from_slice(b",\"value\":");
            out.extend_from_slice(json.as_bytes());
        }
        // A variant without a payload is its key.
        (None, Some(variant)) if d.kind == Some(DecisionKind::Experiment) => {
            out.extend_from_slice(b",\"value\":");
            string(out, variant);
        }
        _ => {}
    }
    out.extend_from_slice(b",\"metadata\":{");
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, name: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        string(out, name);
        out.push(b':');
    };
    match d.experiment {
        Some(exp) if d.kind == Some(DecisionKind::Experiment) => {
            if !public {
                member(out, "experimentId");
                string(out, exp.id_text());
            }
            if let Some(variant) = d.variant {
                member(out, "variant");
                string(out, variant);
            }
            member(out, "enrolled");
            out.extend_from_slice(if d.enrolled { b"true" } else { b"false" });
        }
        _ => {
            // The flag's own metadata (flagd's flag and flag-set metadata) first, so a key it
            // shares with ours is ours.
            for (name, value) in d.metadata.into_iter().flatten().filter(|(k, _)| k.as_str() != "ruleId") {
                member(out, name);
                serde_json::to_writer(&mut *out, value).expect("writing to a Vec cannot fail");
            }
            if let Some(rule) = d.rule_id.filter(|_| !public) {
                member(out, "ruleId");
                string(out, rule);
            }
        }
    }
    out.extend_from_slice(b"}}");
}

/// A bulk element for a decision that failed: `{"key":..,"errorCode":..,"errorDetails":..}`.
pub fn write_failure(out: &mut Vec<u8>, key: &str, code: ErrorCode) {
    out.extend_from_slice(b"{\"key\":");
    string(out, key);
    out.extend_from_slice(b",\"errorCode\":\"");
    out.extend_from_slice(error_code(code).as_str().as_bytes());
    out.extend_from_slice(b"\",\"errorDetails\":");
    string(out, error_details(code));
    out.push(b'}');
}

#[cfg(test)]
mod tests;
