//! HTTP JSON for clients that poll: `GET /api/v1/config` with an SDK key returns the
//! environment's config, with an ETag and Cache-Control so a CDN can cache it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cohort_db::keys::KeyKind;

use crate::auth::Authenticator;
use crate::error::ServiceError;
use crate::hub::Hub;

#[derive(Debug, Clone)]
pub(crate) struct HttpState {
    pub auth: Arc<Authenticator>,
    pub hub: Arc<Hub>,
    /// `max-age` for caches, in seconds.
    pub max_age: u64,
}

pub(crate) fn router(state: HttpState) -> Router {
    Router::new().route("/api/v1/config", get(config)).with_state(state)
}

async fn config(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    match serve(&state, &headers).await {
        Ok(r) => r,
        Err(e) => cohort_runtime::ApiError::from(e).into_response(),
    }
}

async fn serve(state: &HttpState, headers: &HeaderMap) -> Result<Response, ServiceError> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let p = state.auth.principal_from_header(auth).await?;
    let env = match (p.kind, p.environment_id) {
        (KeyKind::Sdk, Some(env)) => env,
        (KeyKind::Client, _) => return Err(crate::auth::client_refused()),
        _ => return Err(ServiceError::PermissionDenied("this endpoint takes an SDK key".into())),
    };
    let snapshot = state.hub.current(env).await?;
    let etag = format!("\"{}-{}\"", snapshot.environment_id, snapshot.version);
    let cache_control = format!("public, max-age={}, stale-while-revalidate=60", state.max_age);
    let mut common = HeaderMap::new();
    common.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(|e| ServiceError::Internal(e.to_string()))?,
    );
    common.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&cache_control).map_err(|e| ServiceError::Internal(e.to_string()))?,
    );
    // Responses differ per key, so shared caches must key on it.
    common.insert(header::VARY, HeaderValue::from_static("Authorization"));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    let mut body = Vec::with_capacity(snapshot.snapshot.len() + 128);
    body.extend_from_slice(
        format!(
            "{{\"environment_id\":\"{}\",\"version\":{},\"committed_at_ms\":{},\"definitions\":",
            snapshot.environment_id, snapshot.version, snapshot.committed_at_ms
        )
        .as_bytes(),
    );
    body.extend_from_slice(&snapshot.snapshot);
    body.push(b'}');
    common.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok((StatusCode::OK, common, body).into_response())
}
