//! The console's JSON API (console/API.md): each handler reads the caller's key, makes the
//! gRPC calls, and reshapes the answers for the page. Nothing here decides what a key may do;
//! the services do.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cohort_core::model::{EntityKind, ExperimentAction};
use cohort_proto::analysis::v1 as apb;
use cohort_proto::config::v1 as cpb;
use cohort_proto::convert::structured;
use serde::Deserialize;
use serde_json::{Value, json};
use tonic::Code;

use crate::assets::Assets;
use crate::upstream::{ConsoleError, Key, Upstream, authed};

/// Most entities, audit entries and looks one answer carries.
const MAX_ITEMS: usize = 5_000;

#[derive(Debug, Clone)]
pub struct Console {
    pub upstream: Upstream,
    pub assets: Assets,
}

type Answer = Result<Json<Value>, ConsoleError>;

pub fn router(console: Console) -> Router {
    Router::new()
        .route("/api/v1/session", get(session))
        .route("/api/v1/environments/{env}/entities", get(list_entities))
        .route("/api/v1/environments/{env}/entities/{kind}", post(create_entity))
        .route(
            "/api/v1/environments/{env}/entities/{kind}/{key}",
            get(get_entity).put(update_entity).delete(delete_entity),
        )
        .route("/api/v1/environments/{env}/experiments/{key}/transition", post(transition))
        .route("/api/v1/environments/{env}/audit", get(audit))
        .route("/api/v1/environments/{env}/propagation", get(propagation))
        .route("/api/v1/environments/{env}/results/{experiment}", get(results))
        .fallback(page)
        .with_state(console)
}

async fn page(State(c): State<Console>, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return ConsoleError::new(Code::NotFound, format!("no API at {}", uri.path())).into_response();
    }
    c.assets.serve(&uri)
}

fn key(headers: &HeaderMap) -> Result<Key, ConsoleError> {
    Key::from_header(headers.get(header::AUTHORIZATION))
}

fn kind(text: &str) -> Result<EntityKind, ConsoleError> {
    EntityKind::parse(text).ok_or_else(|| {
        let names: Vec<&str> = EntityKind::ALL.iter().map(|k| k.as_str()).collect();
        ConsoleError::invalid("kind", format!("{text:?} is not one of {}", names.join(", ")))
    })
}

fn kind_name(value: i32) -> &'static str {
    cohort_proto::convert::entity_kind(value).map_or("", EntityKind::as_str)
}

/// A Struct from a service as JSON; null when unset (or, never expected, not JSON-shaped).
fn parse(s: Option<&structured::Struct>) -> Value {
    s.and_then(|s| structured::struct_json(s, "value").ok()).unwrap_or(Value::Null)
}

fn entity(e: &cpb::Entity) -> Value {
    json!({
        "kind": kind_name(e.kind),
        "key": e.key,
        "revision": e.revision,
        "definition": parse(e.definition.as_ref()),
        "created_at_ms": e.created_at_ms,
        "updated_at_ms": e.updated_at_ms,
    })
}

fn write(entity_after: Option<&cpb::Entity>, version: u64) -> Json<Value> {
    Json(json!({"entity": entity_after.map(entity), "version": version}))
}

fn environment(e: &cpb::Environment) -> Value {
    json!({"id": e.id, "key": e.key, "name": e.name, "version": e.version})
}

async fn session(State(c): State<Console>, headers: HeaderMap) -> Answer {
    let key = key(&headers)?;
    let r =
        c.upstream.config.clone().list_environments(authed(&key, cpb::ListEnvironmentsRequest {})).await?;
    let environments: Vec<Value> = r.into_inner().environments.iter().map(environment).collect();
    Ok(Json(json!({"environments": environments})))
}

#[derive(Debug, Deserialize)]
struct KindQuery {
    kind: Option<String>,
}

async fn list_entities(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(env): Path<String>,
    Query(q): Query<KindQuery>,
) -> Answer {
    let key = key(&headers)?;
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => cpb::EntityKind::from(kind(k)?) as i32,
        None => cpb::EntityKind::Unspecified as i32,
    };
    let mut entities = Vec::new();
    let mut page_token = String::new();
    loop {
        let request =
            cpb::ListEntitiesRequest { environment: env.clone(), kind, page_size: 1000, page_token };
        let r = c.upstream.config.clone().list_entities(authed(&key, request)).await?.into_inner();
        entities.extend(r.entities.iter().map(entity));
        if r.next_page_token.is_empty() || entities.len() >= MAX_ITEMS {
            break;
        }
        page_token = r.next_page_token;
    }
    Ok(Json(json!({"entities": entities})))
}

async fn get_entity(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((env, kind_text, entity_key)): Path<(String, String, String)>,
) -> Answer {
    let key = key(&headers)?;
    let request = cpb::GetEntityRequest {
        environment: env,
        kind: cpb::EntityKind::from(kind(&kind_text)?) as i32,
        key: entity_key,
    };
    let r = c.upstream.config.clone().get_entity(authed(&key, request)).await?.into_inner();
    Ok(Json(r.entity.as_ref().map_or(Value::Null, entity)))
}

/// A body the page sends: `{"definition": {...}, "expected_revision": N}`.
#[derive(Debug, Deserialize)]
struct Written {
    definition: Value,
    #[serde(default)]
    expected_revision: Option<i64>,
    /// Recorded in the audit log.
    #[serde(default)]
    reason: String,
}

/// A body parsed strictly: a key written twice is refused, named, not silently last-wins.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ConsoleError> {
    cohort_core::json::from_slice(bytes).map_err(|e| ConsoleError::invalid("body", e.to_string()))
}

fn definition(w: &Written) -> Result<structured::Struct, ConsoleError> {
    structured::json_struct(&w.definition)
        .ok_or_else(|| ConsoleError::invalid("definition", "must be a JSON object"))
}

async fn create_entity(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((env, kind_text)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Answer {
    let key = key(&headers)?;
    let w: Written = body(&bytes)?;
    let request = cpb::CreateEntityRequest {
        environment: env,
        kind: cpb::EntityKind::from(kind(&kind_text)?) as i32,
        definition: Some(definition(&w)?),
        reason: w.reason,
    };
    let r = c.upstream.config.clone().create_entity(authed(&key, request)).await?.into_inner();
    Ok(write(r.entity.as_ref(), r.version))
}

async fn update_entity(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((env, kind_text, entity_key)): Path<(String, String, String)>,
    bytes: axum::body::Bytes,
) -> Answer {
    let key = key(&headers)?;
    let w: Written = body(&bytes)?;
    let expected_revision = w.expected_revision.ok_or_else(|| {
        ConsoleError::invalid("expected_revision", "the revision the definition was read at")
    })?;
    let request = cpb::UpdateEntityRequest {
        environment: env,
        kind: cpb::EntityKind::from(kind(&kind_text)?) as i32,
        key: entity_key,
        definition: Some(definition(&w)?),
        expected_revision,
        reason: w.reason,
    };
    let r = c.upstream.config.clone().update_entity(authed(&key, request)).await?.into_inner();
    Ok(write(r.entity.as_ref(), r.version))
}

#[derive(Debug, Deserialize)]
struct RevisionQuery {
    expected_revision: Option<i64>,
    #[serde(default)]
    reason: String,
}

async fn delete_entity(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((env, kind_text, entity_key)): Path<(String, String, String)>,
    Query(q): Query<RevisionQuery>,
) -> Answer {
    let key = key(&headers)?;
    let expected_revision = q
        .expected_revision
        .ok_or_else(|| ConsoleError::invalid("expected_revision", "the revision the entity was read at"))?;
    let request = cpb::DeleteEntityRequest {
        environment: env,
        kind: cpb::EntityKind::from(kind(&kind_text)?) as i32,
        key: entity_key,
        expected_revision,
        reason: q.reason,
    };
    let r = c.upstream.config.clone().delete_entity(authed(&key, request)).await?.into_inner();
    Ok(write(r.entity.as_ref(), r.version))
}

#[derive(Debug, Deserialize)]
struct Transition {
    action: String,
    #[serde(default)]
    reason: String,
    expected_revision: i64,
}

async fn transition(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((env, experiment)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Answer {
    let key = key(&headers)?;
    let t: Transition = body(&bytes)?;
    let action = ExperimentAction::ALL.into_iter().find(|a| a.as_str() == t.action).ok_or_else(|| {
        ConsoleError::invalid("action", format!("{:?} is not start, pause, resume or complete", t.action))
    })?;
    let request = cpb::TransitionExperimentRequest {
        environment: env,
        key: experiment,
        action: cpb::ExperimentAction::from(action) as i32,
        expected_revision: t.expected_revision,
        reason: t.reason,
    };
    let r = c.upstream.config.clone().transition_experiment(authed(&key, request)).await?.into_inner();
    Ok(write(r.entity.as_ref(), r.version))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    kind: Option<String>,
    key: Option<String>,
    limit: Option<usize>,
}

async fn audit(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(env): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Answer {
    let key = key(&headers)?;
    let limit = q.limit.unwrap_or(200).clamp(1, MAX_ITEMS);
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => cpb::EntityKind::from(kind(k)?) as i32,
        None => cpb::EntityKind::Unspecified as i32,
    };
    let mut entries = Vec::new();
    let mut page_token = String::new();
    while entries.len() < limit {
        let request = cpb::ListAuditRequest {
            environment: env.clone(),
            kind,
            key: q.key.clone().unwrap_or_default(),
            page_size: (limit - entries.len()).min(1000) as u32,
            page_token,
        };
        let r = c.upstream.config.clone().list_audit(authed(&key, request)).await?.into_inner();
        entries.extend(r.entries.iter().map(|a| {
            json!({
                "id": a.id, "version": a.version, "actor_key_id": a.actor_key_id, "actor_name": a.actor_name,
                "action": a.action, "kind": kind_name(a.kind), "key": a.key,
                "before": parse(a.before.as_ref()), "after": parse(a.after.as_ref()),
                "reason": a.reason, "at_ms": a.at_ms,
            })
        }));
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    entries.truncate(limit);
    Ok(Json(json!({"entries": entries})))
}

#[derive(Debug, Deserialize)]
struct LastQuery {
    last: Option<u64>,
}

async fn propagation(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(env): Path<String>,
    Query(q): Query<LastQuery>,
) -> Answer {
    let key = key(&headers)?;
    let environments =
        c.upstream.config.clone().list_environments(authed(&key, cpb::ListEnvironmentsRequest {})).await?;
    let current = environments
        .into_inner()
        .environments
        .iter()
        .find(|e| e.key == env || e.id == env)
        .map(|e| e.version)
        .ok_or_else(|| ConsoleError::new(Code::NotFound, format!("no environment {env:?}")))?;
    let last = q.last.unwrap_or(10).clamp(1, 100);
    let mut versions = Vec::new();
    for version in (current.saturating_sub(last - 1).max(1)..=current).rev() {
        let request = cpb::GetPropagationRequest { environment: env.clone(), version };
        let p = c.upstream.config.clone().get_propagation(authed(&key, request)).await?.into_inner();
        versions.push(json!({
            "version": p.version, "connected": p.connected, "acknowledged": p.acknowledged,
            "p50_ms": p.p50_ms, "p99_ms": p.p99_ms, "max_ms": p.max_ms,
        }));
    }
    Ok(Json(json!({"versions": versions})))
}

async fn results(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((env, experiment)): Path<(String, String)>,
) -> Answer {
    let key = key(&headers)?;
    let request = apb::GetResultsRequest { environment: env.clone(), experiment: experiment.clone() };
    let latest = match c.upstream.analysis.clone().get_results(authed(&key, request)).await {
        Ok(r) => parse(r.into_inner().result.and_then(|r| r.result).as_ref()),
        // Nothing analyzed yet (a draft, or no exposure so far): the page says so.
        Err(s) if s.code() == Code::NotFound => return Ok(Json(json!({"latest": null, "looks": []}))),
        Err(s) => return Err(s.into()),
    };
    // One result per formal look, newest first from the service.
    let mut looks: BTreeMap<u64, Value> = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let request = apb::ListResultsRequest {
            environment: env.clone(),
            experiment: experiment.clone(),
            page_size: 100,
            page_token,
        };
        let r = c.upstream.analysis.clone().list_results(authed(&key, request)).await?.into_inner();
        for result in &r.results {
            let mut look = parse(result.result.as_ref());
            // The plots need each look's metrics and units; segments are shown for the latest
            // result only, and are most of a look's size.
            if let Some(fields) = look.as_object_mut() {
                fields.remove("segments");
                fields.remove("warnings");
            }
            looks.insert(u64::from(result.look), look);
        }
        if r.next_page_token.is_empty() || looks.len() >= MAX_ITEMS {
            break;
        }
        page_token = r.next_page_token;
    }
    let looks: Vec<Value> = looks.into_values().collect();
    Ok(Json(json!({"latest": latest, "looks": looks})))
}
