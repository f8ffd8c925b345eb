//! The gRPC `ConfigService`: authenticate, scope to the caller's organization and
//! environment, call the store, encode. No business rules live here.

use std::pin::Pin;
use std::sync::Arc;

use cohort_core::time::unix_ms;
use cohort_db::keys::{KeyKind, Principal};
use cohort_proto::config::v1 as pb;
use cohort_proto::convert::structured;
use pb::config_service_server::ConfigService;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::auth::{Authenticator, require_admin, require_organization_write, require_reader, require_write};
use crate::domain::{self, Action, Kind, Op};
use crate::error::ServiceError;
use crate::metrics::WriteLabels;
use crate::store::KeyScope;
use crate::store::{ApiKeyRow, AuditRow, EntityRow, EnvRow, Written};
use crate::sync::{SyncContext, session};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// Bootstrap is allowed with this token, or without one while no organization exists.
#[derive(Debug, Clone, Default)]
pub(crate) struct BootstrapPolicy {
    pub token: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub auth: Arc<Authenticator>,
    pub sync: SyncContext,
    pub bootstrap: BootstrapPolicy,
    pub stream_queue: usize,
}

type Result<T> = std::result::Result<T, ServiceError>;

/// The longest a rotated key's old secret keeps working.
const MAX_OVERLAP_MS: i64 = 30 * 24 * 3600 * 1000;

impl Api {
    async fn principal<T>(&self, request: &Request<T>) -> Result<Principal> {
        self.auth.principal_from_metadata(request.metadata()).await
    }

    /// The environment a request names, if the caller may reach it. Another organization's
    /// environment is indistinguishable from one that does not exist.
    async fn environment(&self, p: &Principal, reference: &str) -> Result<EnvRow> {
        let not_found = || ServiceError::NotFound(format!("environment {reference:?} does not exist"));
        match (p.kind, p.environment_id) {
            // Services act across organizations, on environments named by id.
            (KeyKind::Service, _) => {
                let id = Uuid::parse_str(reference).map_err(|_| {
                    ServiceError::invalid("environment", "a service names an environment by id")
                })?;
                self.sync.store.environment_by_id(id).await?.ok_or_else(not_found)
            }
            (KeyKind::Sdk | KeyKind::Client, Some(own)) => {
                let env = self.sync.store.environment_by_id(own).await?.ok_or_else(not_found)?;
                if reference.is_empty() || reference == env.key || reference == env.id.to_string() {
                    Ok(env)
                } else {
                    Err(not_found())
                }
            }
            _ => {
                if reference.is_empty() {
                    return Err(ServiceError::invalid("environment", "name an environment by key or id"));
                }
                // A key limited to some environments cannot tell the others from absent ones.
                let env =
                    self.sync.store.environment(p.organization_id, reference).await?.ok_or_else(not_found)?;
                if p.reaches(env.id) { Ok(env) } else { Err(not_found()) }
            }
        }
    }

    /// One definition write: authorized and its environment resolved before `op` reads the
    /// request, so a caller that may not write learns nothing of what it sent (nor whether an
    /// environment out of its reach exists). `service_may` lets a service key through
    /// (analysis's guardrails pause and complete; the audit entry names the service).
    async fn write(
        &self,
        request_action: &'static str,
        p: &Principal,
        env: &str,
        service_may: bool,
        reason: Option<&str>,
        op: impl FnOnce() -> Result<Op>,
    ) -> Result<(Option<pb::Entity>, u64)> {
        let outcome = async {
            if !(p.kind == KeyKind::Service && service_may) {
                require_write(p)?;
            }
            let env = self.environment(p, env).await?;
            self.sync.store.write(p, &env, op()?, reason).await
        }
        .await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err(e) => code_name(e),
        };
        self.sync.metrics.writes.get_or_create(&WriteLabels { action: request_action, outcome: label }).inc();
        let Written { entity, version } = outcome?;
        Ok((entity.map(entity_message), version))
    }
}

fn code_name(e: &ServiceError) -> &'static str {
    match e {
        ServiceError::Unauthenticated(_) => "unauthenticated",
        ServiceError::PermissionDenied(_) => "permission_denied",
        ServiceError::NotFound(_) => "not_found",
        ServiceError::AlreadyExists(_) => "already_exists",
        ServiceError::InvalidArgument(_) => "invalid_argument",
        ServiceError::FailedPrecondition { .. } => "failed_precondition",
        ServiceError::Unavailable(_) => "unavailable",
        ServiceError::Internal(_) => "internal",
    }
}

fn kind(value: i32, field: &str) -> Result<Kind> {
    cohort_proto::convert::entity_kind(value)
        .ok_or_else(|| ServiceError::invalid(field, "must be flag, experiment, layer, segment or metric"))
}

fn optional_kind(value: i32) -> Result<Option<Kind>> {
    if value == pb::EntityKind::Unspecified as i32 { Ok(None) } else { kind(value, "kind").map(Some) }
}

/// A request's definition as JSON (cohort-core's model reads it); the error names the field.
fn definition(definition: Option<&structured::Struct>) -> Result<Value> {
    let Some(definition) = definition else {
        return Err(ServiceError::invalid("definition", "is required"));
    };
    structured::struct_json(definition, "definition").map_err(|e| ServiceError::invalid(e.field, e.message))
}

/// An audit reason: none when empty.
fn reason(text: &str) -> Option<&str> {
    (!text.trim().is_empty()).then_some(text)
}

/// One operation of a batch and the reason it carries.
fn batch_operation(o: pb::BatchOperation) -> Result<(Op, Option<String>)> {
    use pb::batch_operation::Operation;
    let owned = |text: &str| reason(text).map(str::to_owned);
    Ok(match o.operation {
        Some(Operation::Create(c)) => (
            Op::Create { kind: kind(c.kind, "kind")?, definition: definition(c.definition.as_ref())? },
            owned(&c.reason),
        ),
        Some(Operation::Update(u)) => (
            Op::Update {
                kind: kind(u.kind, "kind")?,
                key: required(&u.key, "key")?.to_owned(),
                definition: definition(u.definition.as_ref())?,
                expected_revision: u.expected_revision,
            },
            owned(&u.reason),
        ),
        Some(Operation::Delete(d)) => (
            Op::Delete {
                kind: kind(d.kind, "kind")?,
                key: required(&d.key, "key")?.to_owned(),
                expected_revision: d.expected_revision,
            },
            owned(&d.reason),
        ),
        Some(Operation::Transition(t)) => {
            let Some(action) = cohort_proto::convert::experiment_action(t.action) else {
                return Err(ServiceError::invalid("action", "must be start, pause, resume or complete"));
            };
            let op = Op::Transition {
                key: required(&t.key, "key")?.to_owned(),
                action,
                expected_revision: t.expected_revision,
            };
            (op, owned(&t.reason))
        }
        None => {
            return Err(ServiceError::invalid("operation", "must be create, update, delete or transition"));
        }
    })
}

fn required<'a>(value: &'a str, field: &str) -> Result<&'a str> {
    if value.is_empty() { Err(ServiceError::invalid(field, "is required")) } else { Ok(value) }
}

fn page_size(requested: u32) -> i64 {
    i64::from(if requested == 0 { DEFAULT_PAGE } else { requested.min(MAX_PAGE) })
}

fn entity_message(e: EntityRow) -> pb::Entity {
    pb::Entity {
        kind: pb::EntityKind::from(e.kind) as i32,
        key: e.key,
        definition: structured::json_struct(&e.definition),
        revision: e.revision,
        created_at_ms: unix_ms(e.created_at),
        updated_at_ms: unix_ms(e.updated_at),
    }
}

fn environment_message(e: &EnvRow) -> pb::Environment {
    pb::Environment {
        id: e.id.to_string(),
        key: e.key.clone(),
        name: e.name.clone(),
        version: e.version,
        created_at_ms: unix_ms(e.created_at),
        cors_origins: e.cors_origins.clone(),
    }
}

/// A list of browser origins, checked and without duplicates; the error names the entry.
fn cors_origins(field: &str, origins: &[String]) -> Result<Vec<String>> {
    cohort_runtime::origin::check_list(field, origins)
        .map_err(|(field, why)| ServiceError::invalid(field, why))
}

/// A key's `expires_at_ms`: 0 for never, else a time in the future.
fn expiry(at_ms: i64) -> Result<Option<i64>> {
    let now = cohort_core::time::unix_ms(std::time::SystemTime::now());
    match at_ms {
        0 => Ok(None),
        at if at <= now => Err(ServiceError::invalid("expires_at_ms", "must be in the future")),
        at => Ok(Some(at)),
    }
}

fn key_message(k: ApiKeyRow) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.to_string(),
        kind: match k.kind {
            KeyKind::Admin => pb::KeyKind::Admin,
            KeyKind::Sdk => pb::KeyKind::Sdk,
            KeyKind::Client => pb::KeyKind::Client,
            KeyKind::Service => pb::KeyKind::Service,
        } as i32,
        name: k.name,
        prefix: k.prefix,
        environment: k.environment_key.unwrap_or_default(),
        created_at_ms: unix_ms(k.created_at),
        revoked_at_ms: k.revoked_at.map_or(0, unix_ms),
        read_only: k.read_only,
        environments: k.environments.unwrap_or_default(),
        expires_at_ms: k.expires_at.map_or(0, unix_ms),
        last_used_at_ms: k.last_used_at.map_or(0, unix_ms),
    }
}

fn audit_message(a: AuditRow) -> pb::AuditEntry {
    pb::AuditEntry {
        id: a.id,
        environment: a.environment_key.unwrap_or_default(),
        version: a.version.unwrap_or(0) as u64,
        actor_key_id: a.actor_key_id.map(|id| id.to_string()).unwrap_or_default(),
        actor_name: a.actor_name,
        action: a.action,
        kind: a
            .kind
            .as_deref()
            .and_then(Kind::parse)
            .map_or(pb::EntityKind::Unspecified, pb::EntityKind::from) as i32,
        key: a.key.unwrap_or_default(),
        before: a.before.as_ref().and_then(structured::json_struct),
        after: a.after.as_ref().and_then(structured::json_struct),
        reason: a.reason.unwrap_or_default(),
        at_ms: unix_ms(a.at),
    }
}

/// Validates an environment key: 1 to 64 of a-z 0-9 - _.
fn environment_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(ServiceError::invalid("key", "must be 1 to 64 characters of a-z 0-9 - _")) }
}

fn entity_token(kind: Kind, key: &str) -> String {
    hex::encode(format!("{}\n{key}", kind.as_str()))
}

fn parse_entity_token(token: &str) -> Result<Option<(Kind, String)>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || ServiceError::invalid("page_token", "is not a token from a previous page");
    let text = String::from_utf8(hex::decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    let (kind, key) = text.split_once('\n').ok_or_else(bad)?;
    Ok(Some((Kind::parse(kind).ok_or_else(bad)?, key.to_owned())))
}

type SyncStream = Pin<Box<dyn futures::Stream<Item = std::result::Result<pb::SyncResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigService for Api {
    async fn bootstrap(
        &self,
        request: Request<pb::BootstrapRequest>,
    ) -> std::result::Result<Response<pb::BootstrapResponse>, Status> {
        let r = request.into_inner();
        let org = required(r.organization.trim(), "organization")?;
        environment_key(&r.environment)
            .map_err(|_| ServiceError::invalid("environment", "must be 1 to 64 characters of a-z 0-9 - _"))?;
        match &self.bootstrap.token {
            Some(token) => {
                if !secrets_match(token, &r.token) {
                    return Err(ServiceError::PermissionDenied("wrong bootstrap token".into()).into());
                }
            }
            None => {
                if self.sync.store.organization_count().await? > 0 {
                    return Err(ServiceError::PermissionDenied(
                        "already bootstrapped; configure a bootstrap token to add organizations".into(),
                    )
                    .into());
                }
            }
        }
        let (org_id, env, key, secret) = self.sync.store.bootstrap(org, &r.environment).await?;
        Ok(Response::new(pb::BootstrapResponse {
            organization_id: org_id.to_string(),
            environment: Some(environment_message(&env)),
            admin_key: Some(pb::CreateApiKeyResponse { key: Some(key_message(key)), secret }),
        }))
    }

    async fn create_environment(
        &self,
        request: Request<pb::CreateEnvironmentRequest>,
    ) -> std::result::Result<Response<pb::CreateEnvironmentResponse>, Status> {
        let p = self.principal(&request).await?;
        require_organization_write(&p)?;
        let r = request.into_inner();
        environment_key(&r.key)?;
        let name = if r.name.trim().is_empty() { r.key.clone() } else { r.name.trim().to_owned() };
        let origins = cors_origins("cors_origins", &r.cors_origins)?;
        let env = self.sync.store.create_environment(&p, &r.key, &name, &origins).await?;
        Ok(Response::new(pb::CreateEnvironmentResponse { environment: Some(environment_message(&env)) }))
    }

    async fn update_environment(
        &self,
        request: Request<pb::UpdateEnvironmentRequest>,
    ) -> std::result::Result<Response<pb::UpdateEnvironmentResponse>, Status> {
        let p = self.principal(&request).await?;
        require_write(&p)?;
        let r = request.into_inner();
        let env = self.environment(&p, &r.environment).await?;
        let name = match r.name.as_deref().map(str::trim) {
            Some("") => return Err(ServiceError::invalid("name", "must not be empty").into()),
            Some(n) if n.chars().count() > 128 => {
                return Err(ServiceError::invalid("name", "must be at most 128 characters").into());
            }
            other => other,
        };
        let origins = match &r.cors_origins {
            Some(list) => Some(cors_origins("cors_origins.origins", &list.origins)?),
            None => None,
        };
        if name.is_none() && origins.is_none() {
            return Err(
                ServiceError::invalid("name", "nothing to change: give a name or cors_origins").into()
            );
        }
        let env = self.sync.store.update_environment(&p, env.id, name, origins.as_deref()).await?;
        Ok(Response::new(pb::UpdateEnvironmentResponse { environment: Some(environment_message(&env)) }))
    }

    async fn list_environments(
        &self,
        request: Request<pb::ListEnvironmentsRequest>,
    ) -> std::result::Result<Response<pb::ListEnvironmentsResponse>, Status> {
        let p = self.principal(&request).await?;
        require_reader(&p)?;
        let envs = match p.environment_id {
            Some(_) => vec![self.environment(&p, "").await?],
            None => {
                let mut envs = self.sync.store.list_environments(p.organization_id).await?;
                envs.retain(|e| p.reaches(e.id));
                envs
            }
        };
        Ok(Response::new(pb::ListEnvironmentsResponse {
            environments: envs.iter().map(environment_message).collect(),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> std::result::Result<Response<pb::CreateApiKeyResponse>, Status> {
        let p = self.principal(&request).await?;
        require_write(&p)?;
        let r = request.into_inner();
        let name = r.name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(ServiceError::invalid("name", "must be 1 to 128 characters").into());
        }
        let (kind, env) = match pb::KeyKind::try_from(r.kind) {
            Ok(pb::KeyKind::Admin) => {
                if !r.environment.is_empty() {
                    return Err(ServiceError::invalid(
                        "environment",
                        "admin keys belong to the organization; limit them with `environments`",
                    )
                    .into());
                }
                require_organization_write(&p)?;
                (KeyKind::Admin, None)
            }
            Ok(k @ (pb::KeyKind::Sdk | pb::KeyKind::Client)) => {
                required(&r.environment, "environment")?;
                if r.read_only || !r.environments.is_empty() {
                    return Err(ServiceError::invalid(
                        "read_only",
                        "SDK and client keys reach their one environment already; scopes are for admin keys",
                    )
                    .into());
                }
                let kind = if k == pb::KeyKind::Sdk { KeyKind::Sdk } else { KeyKind::Client };
                (kind, Some(self.environment(&p, &r.environment).await?))
            }
            _ => return Err(ServiceError::invalid("kind", "must be admin, sdk or client").into()),
        };
        let mut environments = None;
        if !r.environments.is_empty() {
            let mut ids = Vec::with_capacity(r.environments.len());
            for (i, reference) in r.environments.iter().enumerate() {
                let env = self.environment(&p, reference).await.map_err(|e| match e {
                    ServiceError::NotFound(m) => ServiceError::invalid(format!("environments[{i}]"), m),
                    other => other,
                })?;
                ids.push(env.id);
            }
            ids.sort();
            ids.dedup();
            environments = Some(ids);
        }
        let expires_at_ms = expiry(r.expires_at_ms)?;
        let scope = KeyScope { read_only: r.read_only, environments, expires_at_ms };
        let (key, secret) = self.sync.store.create_api_key(&p, kind, name, env.as_ref(), &scope).await?;
        Ok(Response::new(pb::CreateApiKeyResponse { key: Some(key_message(key)), secret }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> std::result::Result<Response<pb::ListApiKeysResponse>, Status> {
        let p = self.principal(&request).await?;
        require_admin(&p)?;
        let mut keys =
            self.sync.store.list_api_keys(p.organization_id, request.get_ref().include_revoked).await?;
        // A key limited to some environments sees their SDK and client keys only.
        if p.environments.is_some() {
            keys.retain(|k| k.kind != KeyKind::Admin && k.environment_id.is_some_and(|e| p.reaches(e)));
        }
        Ok(Response::new(pb::ListApiKeysResponse { keys: keys.into_iter().map(key_message).collect() }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> std::result::Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let p = self.principal(&request).await?;
        require_organization_write(&p)?;
        let id = Uuid::parse_str(&request.get_ref().id)
            .map_err(|_| ServiceError::invalid("id", "is not a key id (UUID)"))?;
        let key = self.sync.store.revoke_api_key(&p, id).await?;
        // At once on this replica; the other replicas hear of it through the store's notice.
        self.auth.forget(id);
        self.sync.hub.revoke(id);
        Ok(Response::new(pb::RevokeApiKeyResponse { key: Some(key_message(key)) }))
    }

    async fn rotate_api_key(
        &self,
        request: Request<pb::RotateApiKeyRequest>,
    ) -> std::result::Result<Response<pb::RotateApiKeyResponse>, Status> {
        let p = self.principal(&request).await?;
        require_write(&p)?;
        let r = request.into_inner();
        let id = Uuid::parse_str(&r.id).map_err(|_| ServiceError::invalid("id", "is not a key id (UUID)"))?;
        let not_found = || ServiceError::NotFound(format!("api key {id} does not exist"));
        let key = self.sync.store.api_key(p.organization_id, id).await?.ok_or_else(not_found)?;
        // As for creating the key: admin keys need an unrestricted key; an SDK key, its
        // environment within reach (out of reach is the same as absent).
        match key.environment_id {
            Some(env) if key.kind != KeyKind::Admin => {
                if !p.reaches(env) {
                    return Err(not_found().into());
                }
            }
            _ => require_organization_write(&p)?,
        }
        if !(0..=MAX_OVERLAP_MS).contains(&r.overlap_ms) {
            return Err(ServiceError::invalid("overlap_ms", "must be 0 (revoke at once) to 30 days").into());
        }
        let expires_at_ms = expiry(r.expires_at_ms)?;
        let (new, secret, old) = self.sync.store.rotate_api_key(&p, id, r.overlap_ms, expires_at_ms).await?;
        // This replica stops trusting its cached copy of the old key (it now expires); others
        // within their cache's time to live.
        self.auth.forget(id);
        if old.revoked_at.is_some() {
            self.sync.hub.revoke(id);
        }
        Ok(Response::new(pb::RotateApiKeyResponse { key: Some(key_message(new)), secret }))
    }

    async fn create_entity(
        &self,
        request: Request<pb::CreateEntityRequest>,
    ) -> std::result::Result<Response<pb::CreateEntityResponse>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let op =
            || Ok(Op::Create { kind: kind(r.kind, "kind")?, definition: definition(r.definition.as_ref())? });
        let (entity, version) =
            self.write("create", &p, &r.environment, false, reason(&r.reason), op).await?;
        Ok(Response::new(pb::CreateEntityResponse { entity, version }))
    }

    async fn get_entity(
        &self,
        request: Request<pb::GetEntityRequest>,
    ) -> std::result::Result<Response<pb::GetEntityResponse>, Status> {
        let p = self.principal(&request).await?;
        require_reader(&p)?;
        let r = request.into_inner();
        let env = self.environment(&p, &r.environment).await?;
        let kind = kind(r.kind, "kind")?;
        let entity =
            self.sync.store.get_entity(env.id, kind, &r.key).await?.ok_or_else(|| {
                ServiceError::NotFound(format!("{} {:?} does not exist", kind.as_str(), r.key))
            })?;
        Ok(Response::new(pb::GetEntityResponse { entity: Some(entity_message(entity)) }))
    }

    async fn list_entities(
        &self,
        request: Request<pb::ListEntitiesRequest>,
    ) -> std::result::Result<Response<pb::ListEntitiesResponse>, Status> {
        let p = self.principal(&request).await?;
        require_reader(&p)?;
        let r = request.into_inner();
        let env = self.environment(&p, &r.environment).await?;
        let limit = page_size(r.page_size);
        let after = parse_entity_token(&r.page_token)?;
        let mut rows =
            self.sync.store.list_entities(env.id, optional_kind(r.kind)?, limit + 1, after).await?;
        let next_page_token = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|e| entity_token(e.kind, &e.key)).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListEntitiesResponse {
            entities: rows.into_iter().map(entity_message).collect(),
            next_page_token,
        }))
    }

    async fn update_entity(
        &self,
        request: Request<pb::UpdateEntityRequest>,
    ) -> std::result::Result<Response<pb::UpdateEntityResponse>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let op = || {
            Ok(Op::Update {
                kind: kind(r.kind, "kind")?,
                key: required(&r.key, "key")?.to_owned(),
                definition: definition(r.definition.as_ref())?,
                expected_revision: r.expected_revision,
            })
        };
        let (entity, version) =
            self.write("update", &p, &r.environment, false, reason(&r.reason), op).await?;
        Ok(Response::new(pb::UpdateEntityResponse { entity, version }))
    }

    async fn delete_entity(
        &self,
        request: Request<pb::DeleteEntityRequest>,
    ) -> std::result::Result<Response<pb::DeleteEntityResponse>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let op = || {
            Ok(Op::Delete {
                kind: kind(r.kind, "kind")?,
                key: required(&r.key, "key")?.to_owned(),
                expected_revision: r.expected_revision,
            })
        };
        let (entity, version) =
            self.write("delete", &p, &r.environment, false, reason(&r.reason), op).await?;
        Ok(Response::new(pb::DeleteEntityResponse { entity, version }))
    }

    async fn transition_experiment(
        &self,
        request: Request<pb::TransitionExperimentRequest>,
    ) -> std::result::Result<Response<pb::TransitionExperimentResponse>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let Some(action) = cohort_proto::convert::experiment_action(r.action) else {
            return Err(ServiceError::invalid("action", "must be start, pause, resume or complete").into());
        };
        let service_may = matches!(action, Action::Pause | Action::Complete);
        let op = || {
            Ok(Op::Transition {
                key: required(&r.key, "key")?.to_owned(),
                action,
                expected_revision: r.expected_revision,
            })
        };
        let (entity, version) =
            self.write(action.as_str(), &p, &r.environment, service_may, reason(&r.reason), op).await?;
        Ok(Response::new(pb::TransitionExperimentResponse { entity, version }))
    }

    async fn apply_batch(
        &self,
        request: Request<pb::ApplyBatchRequest>,
    ) -> std::result::Result<Response<pb::ApplyBatchResponse>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let outcome = async {
            require_write(&p)?;
            let env = self.environment(&p, &r.environment).await?;
            let mut ops = Vec::with_capacity(r.operations.len());
            let mut reasons = Vec::with_capacity(r.operations.len());
            for (i, o) in r.operations.into_iter().enumerate() {
                let (op, reason) = batch_operation(o).map_err(|e| domain::at_operation(i, e))?;
                ops.push(op);
                reasons.push(reason);
            }
            let reasons: Vec<Option<&str>> = reasons.iter().map(Option::as_deref).collect();
            self.sync.store.write_batch(&p, &env, ops, &reasons).await
        }
        .await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err(e) => code_name(e),
        };
        self.sync.metrics.writes.get_or_create(&WriteLabels { action: "batch", outcome: label }).inc();
        let (entities, version) = outcome?;
        let results = entities
            .into_iter()
            .map(|e| pb::OperationResult { entity: e.map(entity_message), version })
            .collect();
        Ok(Response::new(pb::ApplyBatchResponse { version, results }))
    }

    async fn get_snapshot(
        &self,
        request: Request<pb::GetSnapshotRequest>,
    ) -> std::result::Result<Response<pb::GetSnapshotResponse>, Status> {
        let p = self.principal(&request).await?;
        require_reader(&p)?;
        let env = self.environment(&p, &request.get_ref().environment).await?;
        let state = self.sync.hub.current(env.id).await?;
        let snapshot = state.snapshot_message();
        let definitions: Value = serde_json::from_slice(&snapshot.definitions_json)
            .map_err(|e| ServiceError::Internal(format!("a stored snapshot is not JSON: {e}")))?;
        Ok(Response::new(pb::GetSnapshotResponse {
            environment_id: snapshot.environment_id,
            version: snapshot.version,
            committed_at_ms: snapshot.committed_at_ms,
            definitions: structured::json_struct(&definitions),
        }))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> std::result::Result<Response<pb::ListAuditResponse>, Status> {
        let p = self.principal(&request).await?;
        require_admin(&p)?;
        let r = request.into_inner();
        let env = if r.environment.is_empty() {
            if p.environments.is_some() {
                return Err(ServiceError::PermissionDenied(
                    "this key is limited to some environments: name one".into(),
                )
                .into());
            }
            None
        } else {
            Some(self.environment(&p, &r.environment).await?.id)
        };
        let before =
            if r.page_token.is_empty() {
                None
            } else {
                Some(r.page_token.parse::<i64>().map_err(|_| {
                    ServiceError::invalid("page_token", "is not a token from a previous page")
                })?)
            };
        let limit = page_size(r.page_size);
        let key = (!r.key.is_empty()).then_some(r.key.as_str());
        let mut rows = self
            .sync
            .store
            .list_audit(p.organization_id, env, optional_kind(r.kind)?, key, limit + 1, before)
            .await?;
        let next_page_token = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|a| a.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAuditResponse {
            entries: rows.into_iter().map(audit_message).collect(),
            next_page_token,
        }))
    }

    async fn get_propagation(
        &self,
        request: Request<pb::GetPropagationRequest>,
    ) -> std::result::Result<Response<pb::GetPropagationResponse>, Status> {
        let p = self.principal(&request).await?;
        require_admin(&p)?;
        let r = request.into_inner();
        let env = self.environment(&p, &r.environment).await?;
        let version = if r.version == 0 { env.version } else { r.version };
        Ok(Response::new(self.sync.propagation.get(&self.sync.hub, env.id, version).await?))
    }

    type SyncStream = SyncStream;

    async fn sync(
        &self,
        request: Request<Streaming<pb::SyncRequest>>,
    ) -> std::result::Result<Response<Self::SyncStream>, Status> {
        let p = self.principal(&request).await?;
        let env = match (p.kind, p.environment_id) {
            (KeyKind::Sdk, Some(env)) => env,
            // Only a Cohort service (the evaluation service) streams for a client-side key;
            // revoking the client key still ends the stream (it is opened under its id).
            (KeyKind::Client, Some(env)) => {
                let service = request
                    .metadata()
                    .get(pb::SERVICE_AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(cohort_runtime::bearer)
                    .ok_or_else(crate::auth::client_refused)?;
                if self.auth.service_principal(&cohort_db::keys::hash(service)).is_none() {
                    return Err(ServiceError::Unauthenticated("unknown service key".into()).into());
                }
                env
            }
            _ => {
                return Err(ServiceError::PermissionDenied(
                    "Sync takes an SDK key, which names its environment".into(),
                )
                .into());
            }
        };
        let (tx, rx) = mpsc::channel(self.stream_queue);
        tokio::spawn(session(self.sync.clone(), p.key_id, env, request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Compares secrets without leaking through timing where they differ or how long the expected
/// one is: equal-length SHA-256 digests, compared in constant time.
fn secrets_match(expected: &str, given: &str) -> bool {
    cohort_db::keys::hash(expected).ct_eq(&cohort_db::keys::hash(given)).into()
}
