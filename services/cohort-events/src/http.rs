//! The HTTP JSON front end: `POST /api/v1/events/batch`, the same semantics as gRPC
//! `SendBatch` for clients that cannot speak gRPC.
//!
//! Body: `{"events": [{"event_id", "timestamp_ms", "exposure": {...}} | {..., "metric": {...}}]}`
//! with the field names of `events.proto`. Answer: `{"accepted": n, "rejected": [...]}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cohort_proto::events::v1 as pb;
use cohort_runtime::ApiError;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::ingest::Ingest;

/// The routes, with the ingestion domain as state.
pub(crate) fn router(ingest: Arc<Ingest>) -> Router {
    Router::new().route("/api/v1/events/batch", post(send_batch)).with_state(ingest)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBatch {
    events: Vec<JsonEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent {
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    timestamp_ms: i64,
    exposure: Option<JsonExposure>,
    metric: Option<JsonMetric>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonExposure {
    #[serde(default)]
    unit: String,
    #[serde(default)]
    experiment_id: String,
    #[serde(default)]
    variant: String,
    #[serde(default)]
    config_version: i64,
    #[serde(default)]
    attributes: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonMetric {
    #[serde(default)]
    unit: String,
    #[serde(default)]
    name: String,
    value: Option<f64>,
    #[serde(default)]
    properties: HashMap<String, String>,
}

impl From<JsonEvent> for pb::Event {
    fn from(e: JsonEvent) -> pb::Event {
        let kind = match (e.exposure, e.metric) {
            (Some(x), None) => Some(pb::event::Kind::Exposure(pb::Exposure {
                unit: x.unit,
                experiment_id: x.experiment_id,
                variant: x.variant,
                config_version: x.config_version,
                attributes: x.attributes,
            })),
            (None, Some(m)) => Some(pb::event::Kind::Metric(pb::Metric {
                unit: m.unit,
                name: m.name,
                value: m.value,
                properties: m.properties,
            })),
            // Neither or both: rejected by validation as having no single kind.
            _ => None,
        };
        pb::Event { event_id: e.event_id, timestamp_ms: e.timestamp_ms, kind }
    }
}

#[derive(Debug, Serialize)]
struct JsonRejected {
    index: u32,
    event_id: String,
    field: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct JsonOutcome {
    accepted: u32,
    rejected: Vec<JsonRejected>,
}

#[instrument(skip_all, fields(bytes = body.len()))]
async fn send_batch(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Bytes) -> Response {
    match accept(&ingest, &headers, &body).await {
        Ok(outcome) => axum::Json(outcome).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn accept(ingest: &Ingest, headers: &HeaderMap, body: &[u8]) -> Result<JsonOutcome, ApiError> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = ingest.authenticate(authorization).await?;
    // Attribute and property maps would otherwise keep the last of a repeated key silently.
    if let Some(d) = cohort_core::json::duplicate_key(body) {
        return Err(ApiError::invalid(d.path.clone(), d.to_string()));
    }
    let batch: JsonBatch = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
        .map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "body".to_owned() } else { path };
            ApiError::invalid(field, e.inner().to_string())
        })?;
    let events = batch.events.into_iter().map(pb::Event::from).collect();
    let outcome = ingest.send_batch(caller, events).await?;
    Ok(JsonOutcome {
        accepted: outcome.accepted,
        rejected: outcome
            .rejected
            .iter()
            .map(|r| JsonRejected {
                index: r.index,
                event_id: r.event_id.clone(),
                field: r.field.clone(),
                reason: r.reason(),
            })
            .collect(),
    })
}
