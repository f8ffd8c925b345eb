//! Every command but `apply` and `results`: one function each, taking a connected client and
//! a console, printing a table (or JSON; the read commands YAML too) and returning what it did.

use cohort_core::model::{Definitions, FlagDef, Serve};
use cohort_proto::config::v1 as pb;
use cohort_proto::convert::structured;
use serde_json::{Value, json};

use crate::cli::KeyKind;
use crate::client::Client;
use crate::console::{Console, table, timestamp, yaml};
use crate::definition::{Def, Kind};
use crate::error::CtlError;
use crate::lifecycle::Action;

const SECRET_WARNING: &str =
    "Store this key now (e.g. in your secret manager): it is shown once and cannot be retrieved again.";

fn rpc(doing: &str) -> impl FnOnce(tonic::Status) -> CtlError + '_ {
    move |status| CtlError::rpc(doing, status)
}

/// `bootstrap`: the first organization, environment and admin key.
pub async fn bootstrap(
    client: &mut Client,
    organization: &str,
    environment: &str,
    token: Option<&str>,
    con: &mut Console<'_>,
) -> Result<pb::BootstrapResponse, CtlError> {
    let r = client
        .rpc
        .bootstrap(pb::BootstrapRequest {
            organization: organization.into(),
            environment: environment.into(),
            token: token.unwrap_or_default().into(),
        })
        .await
        .map_err(rpc("bootstrap"))?
        .into_inner();
    let env = r.environment.clone().unwrap_or_default();
    let created = r.admin_key.clone().unwrap_or_default();
    let key = created.key.clone().unwrap_or_default();
    if con.is_json() {
        con.json(&json!({
            "organization_id": r.organization_id,
            "environment": environment_json(&env),
            "admin_key": { "id": key.id, "name": key.name, "prefix": key.prefix, "secret": created.secret },
        }))?;
    } else {
        con.line(format!("organization {organization} created (id {})", r.organization_id))?;
        con.line(format!("environment {} created (id {})", env.key, env.id))?;
        con.line(format!("admin key {} created (id {})", key.name, key.id))?;
        con.line(&created.secret)?;
    }
    con.note(SECRET_WARNING)?;
    Ok(r)
}

fn environment_json(e: &pb::Environment) -> Value {
    json!({
        "id": e.id, "key": e.key, "name": e.name, "version": e.version, "created_at_ms": e.created_at_ms,
        "cors_origins": e.cors_origins,
    })
}

/// An environment's allowed browser origins, for people.
fn origins_text(e: &pb::Environment) -> String {
    if e.cors_origins.is_empty() { "none".to_owned() } else { e.cors_origins.join(", ") }
}

/// `env create`.
pub async fn env_create(
    client: &mut Client,
    key: &str,
    name: Option<&str>,
    cors_origins: &[String],
    con: &mut Console<'_>,
) -> Result<pb::Environment, CtlError> {
    client.require_key()?;
    let env = client
        .rpc
        .create_environment(pb::CreateEnvironmentRequest {
            key: key.into(),
            name: name.unwrap_or_default().into(),
            cors_origins: cors_origins.to_vec(),
        })
        .await
        .map_err(rpc("create environment"))?
        .into_inner()
        .environment
        .unwrap_or_default();
    if con.is_json() {
        con.json(&environment_json(&env))?;
    } else {
        con.line(format!(
            "environment {} created (name {:?}, id {}, browser origins: {})",
            env.key,
            env.name,
            env.id,
            origins_text(&env)
        ))?;
    }
    Ok(env)
}

/// `env update`: `cors_origins` replaces the list when given (`Some(vec![])` allows none).
pub async fn env_update(
    client: &mut Client,
    environment: &str,
    name: Option<&str>,
    cors_origins: Option<Vec<String>>,
    con: &mut Console<'_>,
) -> Result<pb::Environment, CtlError> {
    client.require_key()?;
    if name.is_none() && cors_origins.is_none() {
        return Err(CtlError::Usage("env update: give --name, --cors-origin or --no-cors-origins".into()));
    }
    let env = client
        .rpc
        .update_environment(pb::UpdateEnvironmentRequest {
            environment: environment.into(),
            name: name.map(str::to_owned),
            cors_origins: cors_origins.map(|origins| pb::CorsOrigins { origins }),
        })
        .await
        .map_err(rpc("update environment"))?
        .into_inner()
        .environment
        .unwrap_or_default();
    if con.is_json() {
        con.json(&environment_json(&env))?;
    } else {
        con.line(format!(
            "environment {} updated (name {:?}, browser origins: {})",
            env.key,
            env.name,
            origins_text(&env)
        ))?;
    }
    Ok(env)
}

/// `env list`.
pub async fn env_list(client: &mut Client, con: &mut Console<'_>) -> Result<Vec<pb::Environment>, CtlError> {
    client.require_key()?;
    let envs = client
        .rpc
        .list_environments(pb::ListEnvironmentsRequest {})
        .await
        .map_err(rpc("list environments"))?
        .into_inner()
        .environments;
    if con.is_data() {
        con.data(&envs.iter().map(environment_json).collect::<Vec<_>>())?;
    } else {
        let rows: Vec<Vec<String>> = envs
            .iter()
            .map(|e| {
                vec![
                    e.key.clone(),
                    e.name.clone(),
                    e.version.to_string(),
                    timestamp(e.created_at_ms),
                    origins_text(e),
                    e.id.clone(),
                ]
            })
            .collect();
        write_table(con, &["KEY", "NAME", "VERSION", "CREATED", "BROWSER ORIGINS", "ID"], &rows)?;
    }
    Ok(envs)
}

fn key_kind(k: i32) -> &'static str {
    match pb::KeyKind::try_from(k) {
        Ok(pb::KeyKind::Admin) => "admin",
        Ok(pb::KeyKind::Sdk) => "sdk",
        Ok(pb::KeyKind::Client) => "client",
        Ok(pb::KeyKind::Service) => "service",
        _ => "?",
    }
}

fn key_json(k: &pb::ApiKey) -> Value {
    let when = |ms: i64| (ms != 0).then_some(ms);
    json!({
        "id": k.id, "kind": key_kind(k.kind), "name": k.name, "prefix": k.prefix,
        "environment": (!k.environment.is_empty()).then_some(&k.environment),
        "read_only": k.read_only,
        "environments": (!k.environments.is_empty()).then_some(&k.environments),
        "created_at_ms": k.created_at_ms,
        "revoked_at_ms": when(k.revoked_at_ms),
        "expires_at_ms": when(k.expires_at_ms),
        "last_used_at_ms": when(k.last_used_at_ms),
    })
}

/// What an admin key may do beyond its kind: `keys create --read-only --only-env … --expires-in …`.
#[derive(Debug, Clone, Default)]
pub struct KeyScope {
    pub read_only: bool,
    pub environments: Vec<String>,
    pub expires_in: Option<std::time::Duration>,
}

/// What a key reaches, for people: `the organization`, `environment production`, and
/// `read-only`, `only staging, dev`.
fn key_scope(k: &pb::ApiKey) -> String {
    let mut scope = if !k.environment.is_empty() {
        format!("environment {}", k.environment)
    } else if !k.environments.is_empty() {
        format!("only {}", k.environments.join(", "))
    } else {
        "the organization".to_owned()
    };
    if k.read_only {
        scope.push_str(", read-only");
    }
    scope
}

/// A new service key: the secret for the service, the hash entry for the config service.
pub fn service_key_create(name: &str, con: &mut Console<'_>) -> Result<(), CtlError> {
    let name_ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b' ');
    if !name_ok {
        return Err(CtlError::Usage(
            "service-key name: 1 to 64 letters, digits, '-', '_' or spaces (e.g. cohort-analysis)".into(),
        ));
    }
    let key = cohort_db::keys::generate(cohort_db::keys::KeyKind::Service);
    let entry = format!("{name}={}", hex::encode(&key.hash));
    if con.is_json() {
        con.json(&serde_json::json!({"name": name, "secret": key.secret, "service_keys_entry": entry}))?;
    } else {
        con.line(format!("service key for {name:?}; its secret is shown only now:"))?;
        con.line(format!("  secret (the service's COHORT_SERVICE_KEY)       {}", key.secret))?;
        con.line(format!("  config service --service-keys entry (the hash)  {entry}"))?;
    }
    Ok(())
}

pub async fn keys_create(
    client: &mut Client,
    kind: KeyKind,
    name: &str,
    environment: &str,
    scope: &KeyScope,
    con: &mut Console<'_>,
) -> Result<pb::CreateApiKeyResponse, CtlError> {
    client.require_key()?;
    let (kind, environment) = match kind {
        KeyKind::Admin => (pb::KeyKind::Admin, String::new()),
        KeyKind::Sdk => (pb::KeyKind::Sdk, environment.to_owned()),
        KeyKind::Client => (pb::KeyKind::Client, environment.to_owned()),
    };
    let expires_at_ms = match scope.expires_in {
        Some(d) => cohort_core::time::unix_ms(std::time::SystemTime::now() + d),
        None => 0,
    };
    let request = pb::CreateApiKeyRequest {
        kind: kind as i32,
        name: name.into(),
        environment,
        read_only: scope.read_only,
        environments: scope.environments.clone(),
        expires_at_ms,
    };
    let r = client.rpc.create_api_key(request).await.map_err(rpc("create API key"))?.into_inner();
    let key = r.key.clone().unwrap_or_default();
    let expiry = if key.expires_at_ms == 0 {
        String::new()
    } else {
        format!(", expires {}", timestamp(key.expires_at_ms))
    };
    let line = format!(
        "{} key {:?} created for {}{expiry} (id {})",
        key_kind(key.kind),
        key.name,
        key_scope(&key),
        key.id
    );
    show_new_key(&r, line, con)?;
    Ok(r)
}

/// A new key: JSON with its secret, or a line about it and the secret alone on the last line;
/// then the warning that it is shown once.
fn show_new_key(r: &pb::CreateApiKeyResponse, line: String, con: &mut Console<'_>) -> Result<(), CtlError> {
    if con.is_json() {
        let mut v = key_json(r.key.as_ref().unwrap_or(&pb::ApiKey::default()));
        v["secret"] = Value::String(r.secret.clone());
        con.json(&v)?;
    } else {
        con.line(line)?;
        con.line(&r.secret)?;
    }
    con.note(SECRET_WARNING)?;
    Ok(())
}

/// `keys list`.
pub async fn keys_list(
    client: &mut Client,
    all: bool,
    con: &mut Console<'_>,
) -> Result<Vec<pb::ApiKey>, CtlError> {
    client.require_key()?;
    let keys = client
        .rpc
        .list_api_keys(pb::ListApiKeysRequest { include_revoked: all })
        .await
        .map_err(rpc("list API keys"))?
        .into_inner()
        .keys;
    if con.is_data() {
        con.data(&keys.iter().map(key_json).collect::<Vec<_>>())?;
    } else {
        let rows: Vec<Vec<String>> = keys
            .iter()
            .map(|k| {
                vec![
                    k.id.clone(),
                    key_kind(k.kind).into(),
                    k.name.clone(),
                    format!("{}…", k.prefix),
                    key_scope(k),
                    timestamp(k.created_at_ms),
                    timestamp(k.expires_at_ms),
                    timestamp(k.last_used_at_ms),
                    timestamp(k.revoked_at_ms),
                ]
            })
            .collect();
        let header =
            ["ID", "KIND", "NAME", "PREFIX", "REACHES", "CREATED", "EXPIRES", "LAST USED", "REVOKED"];
        write_table(con, &header, &rows)?;
    }
    Ok(keys)
}

/// `keys rotate`: the new secret, printed once.
pub async fn keys_rotate(
    client: &mut Client,
    id: &str,
    overlap: std::time::Duration,
    expires_in: Option<std::time::Duration>,
    con: &mut Console<'_>,
) -> Result<pb::CreateApiKeyResponse, CtlError> {
    client.require_key()?;
    let expires_at_ms =
        expires_in.map_or(0, |d| cohort_core::time::unix_ms(std::time::SystemTime::now() + d));
    let overlap_ms = i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX);
    let pb::RotateApiKeyResponse { key, secret } = client
        .rpc
        .rotate_api_key(pb::RotateApiKeyRequest { id: id.into(), overlap_ms, expires_at_ms })
        .await
        .map_err(rpc("rotate API key"))?
        .into_inner();
    // The same shape as a new key's: shown the same way.
    let r = pb::CreateApiKeyResponse { key, secret };
    let key = r.key.clone().unwrap_or_default();
    let old = if overlap.is_zero() {
        "the old secret is revoked".to_owned()
    } else {
        let until = cohort_core::time::unix_ms(std::time::SystemTime::now() + overlap);
        format!("the old secret works until {}", timestamp(until))
    };
    let line = format!("{} key {:?} rotated: new id {}; {old}", key_kind(key.kind), key.name, key.id);
    show_new_key(&r, line, con)?;
    Ok(r)
}

/// `keys revoke`.
pub async fn keys_revoke(
    client: &mut Client,
    id: &str,
    con: &mut Console<'_>,
) -> Result<pb::ApiKey, CtlError> {
    client.require_key()?;
    let key = client
        .rpc
        .revoke_api_key(pb::RevokeApiKeyRequest { id: id.into() })
        .await
        .map_err(rpc("revoke API key"))?
        .into_inner()
        .key
        .unwrap_or_default();
    if con.is_json() {
        con.json(&key_json(&key))?;
    } else {
        con.line(format!(
            "{} key {:?} revoked at {} (id {})",
            key_kind(key.kind),
            key.name,
            timestamp(key.revoked_at_ms),
            key.id
        ))?;
    }
    Ok(key)
}

/// Parses a stored entity into the model.
pub(crate) fn stored(e: &pb::Entity) -> Result<Def, CtlError> {
    let kind = cohort_proto::convert::entity_kind(e.kind)
        .ok_or_else(|| CtlError::Protocol(format!("an entity of unknown kind {}", e.kind)))?;
    let value = crate::wire::definition_value(e)?;
    Def::parse(kind, &value).map_err(|err| {
        CtlError::Protocol(format!(
            "{kind} {:?} that this cohortctl cannot read ({}: {}); is it older than the server?",
            e.key, err.path, err.message
        ))
    })
}

/// `get KIND KEY`: YAML (or JSON) with `kind:` first, so the output can be edited and applied.
pub async fn get(
    client: &mut Client,
    env: &str,
    kind: Kind,
    key: &str,
    con: &mut Console<'_>,
) -> Result<pb::Entity, CtlError> {
    client.require_key()?;
    let entity = client.entity(env, kind, key).await?;
    let def = stored(&entity)?;
    if con.is_data() {
        con.data(&def.tagged())?;
    } else {
        let yaml = yaml(&def.tagged())
            .map_err(|e| CtlError::Protocol(format!("a definition YAML cannot hold: {e}")))?;
        con.line(format!(
            "# {kind} {key} in {env}: revision {}, updated {}",
            entity.revision,
            timestamp(entity.updated_at_ms)
        ))?;
        write!(con.out, "{yaml}")?;
    }
    Ok(entity)
}

/// `get flags -o flagd` (or `get flag KEY -o flagd`): the flags as a flagd flag-definition
/// file. Flags flagd cannot express are left out, each named on stderr (or refused, when
/// asked for by key).
pub async fn get_flagd(
    client: &mut Client,
    env: &str,
    key: Option<&str>,
    con: &mut Console<'_>,
) -> Result<Value, CtlError> {
    client.require_key()?;
    let entities = match key {
        Some(key) => vec![client.entity(env, Kind::Flag, key).await?],
        None => client.list_entities(env, Some(Kind::Flag)).await?,
    };
    let mut flags = Vec::with_capacity(entities.len());
    for e in &entities {
        let Def::Flag(f) = stored(e)? else {
            return Err(CtlError::Protocol(format!(
                "{:?}, which is not a flag, among the flags of {env:?}",
                e.key
            )));
        };
        match not_flagd(&f) {
            None => flags.push(f),
            Some(why) if key.is_some() => return Err(CtlError::Flagd(format!("flag {:?}: {why}", f.key))),
            Some(why) => con.note(format!("skipped flag {}: {why}", f.key))?,
        }
    }
    let doc = cohort_core::flagd::export(&flags).map_err(|errors| CtlError::Flagd(errors.join("; ")))?;
    con.json(&doc)?;
    Ok(doc)
}

/// Why a flag has no flagd form (see `cohort_core::flagd::exportable`), or `None`.
fn not_flagd(f: &FlagDef) -> Option<String> {
    if cohort_core::flagd::exportable(f) {
        return None;
    }
    let mut what = Vec::new();
    if !f.rules.is_empty() {
        what.push("rules");
    }
    if f.off_variation.is_some() {
        what.push("off variation");
    }
    if matches!(f.default, Some(Serve::Split(_))) {
        what.push("split default");
    }
    Some(match what.split_last() {
        None => "flagd has no form for it".to_owned(),
        Some((last, [])) => format!("flagd has no form for its {last}"),
        Some((last, rest)) => format!("flagd has no form for its {} and {last}", rest.join(", ")),
    })
}

/// A one-line description of a definition for `list`.
fn summary(def: &Def) -> String {
    match def {
        Def::Flag(f) => format!(
            "{}, {}, {} rule{}",
            f.flag_type.as_str(),
            if f.enabled { "enabled" } else { "disabled" },
            f.rules.len(),
            if f.rules.len() == 1 { "" } else { "s" }
        ),
        Def::Experiment(e) => format!("{}, {} variants", e.status.as_str(), e.variants.len()),
        Def::Layer(l) => {
            format!("{} experiment{}", l.experiments.len(), if l.experiments.len() == 1 { "" } else { "s" })
        }
        Def::Segment(s) => {
            let mut parts = Vec::new();
            if s.condition.is_some() {
                parts.push("condition".to_owned());
            }
            if !s.include.is_empty() {
                parts.push(format!("{} included", s.include.len()));
            }
            if !s.exclude.is_empty() {
                parts.push(format!("{} excluded", s.exclude.len()));
            }
            parts.join(", ")
        }
        Def::Metric(m) => {
            format!("{} of {} events", m.aggregation.as_str(), m.event)
        }
        Def::Holdout(h) => {
            let scope = if h.layers.is_empty() {
                "every experiment".to_owned()
            } else {
                format!("layers {}", h.layers.join(", "))
            };
            let state = if h.enabled { "enabled" } else { "disabled" };
            format!("{state}, {} bp of {scope}", h.share_bp)
        }
    }
}

/// `list [KIND]`: every page.
pub async fn list(
    client: &mut Client,
    env: &str,
    kind: Option<Kind>,
    con: &mut Console<'_>,
) -> Result<Vec<pb::Entity>, CtlError> {
    client.require_key()?;
    let entities = client.list_entities(env, kind).await?;
    if con.is_data() {
        let mut out = Vec::with_capacity(entities.len());
        for e in &entities {
            let def = stored(e)?;
            out.push(json!({
                "kind": def.kind().as_str(), "key": e.key, "revision": e.revision,
                "created_at_ms": e.created_at_ms, "updated_at_ms": e.updated_at_ms,
                "definition": def.canonical(),
            }));
        }
        con.data(&out)?;
    } else {
        let mut rows = Vec::with_capacity(entities.len());
        for e in &entities {
            let def = stored(e)?;
            rows.push(vec![
                def.kind().as_str().into(),
                e.key.clone(),
                e.revision.to_string(),
                timestamp(e.updated_at_ms),
                summary(&def),
            ]);
        }
        write_table(con, &["KIND", "KEY", "REVISION", "UPDATED", "SUMMARY"], &rows)?;
    }
    Ok(entities)
}

/// `delete KIND KEY`, at the revision just read.
pub async fn delete(
    client: &mut Client,
    env: &str,
    kind: Kind,
    key: &str,
    con: &mut Console<'_>,
) -> Result<u64, CtlError> {
    client.require_key()?;
    let entity = client.entity(env, kind, key).await?;
    let doing = format!("delete {kind} {key}");
    let w = client
        .rpc
        .delete_entity(pb::DeleteEntityRequest {
            environment: env.into(),
            kind: pb::EntityKind::from(kind) as i32,
            key: key.into(),
            expected_revision: entity.revision,
            reason: String::new(),
        })
        .await
        .map_err(rpc(&doing))?
        .into_inner();
    written(con, kind, key, "deleted", w.version)?;
    Ok(w.version)
}

fn written(con: &mut Console<'_>, kind: Kind, key: &str, result: &str, version: u64) -> Result<(), CtlError> {
    if con.is_json() {
        con.json(&json!({ "kind": kind.as_str(), "key": key, "result": result, "version": version }))?;
    } else {
        con.line(format!("{kind}/{key} {result} [version {version}]"))?;
    }
    Ok(())
}

/// `start`, `pause`, `resume`, `complete`.
pub async fn transition(
    client: &mut Client,
    env: &str,
    key: &str,
    action: Action,
    reason: Option<&str>,
    con: &mut Console<'_>,
) -> Result<pb::TransitionExperimentResponse, CtlError> {
    client.require_key()?;
    let entity = client.entity(env, Kind::Experiment, key).await?;
    let doing = format!("{} experiment {key}", action.as_str());
    let w = client
        .rpc
        .transition_experiment(pb::TransitionExperimentRequest {
            environment: env.into(),
            key: key.into(),
            action: pb::ExperimentAction::from(action) as i32,
            expected_revision: entity.revision,
            reason: reason.unwrap_or_default().into(),
        })
        .await
        .map_err(rpc(&doing))?
        .into_inner();
    written(con, Kind::Experiment, key, crate::lifecycle::past(action), w.version)?;
    Ok(w)
}

/// `audit`: newest first, following pages up to `limit` entries.
pub async fn audit(
    client: &mut Client,
    env: Option<&str>,
    kind: Option<Kind>,
    key: Option<&str>,
    limit: u32,
    con: &mut Console<'_>,
) -> Result<Vec<pb::AuditEntry>, CtlError> {
    client.require_key()?;
    let mut entries = Vec::new();
    let mut page_token = String::new();
    while (entries.len() as u32) < limit {
        let r = client
            .rpc
            .list_audit(pb::ListAuditRequest {
                environment: env.unwrap_or_default().into(),
                kind: kind.map_or(pb::EntityKind::Unspecified, pb::EntityKind::from) as i32,
                key: key.unwrap_or_default().into(),
                page_size: (limit - entries.len() as u32).min(1000),
                page_token,
            })
            .await
            .map_err(rpc("list audit"))?
            .into_inner();
        entries.extend(r.entries);
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    entries.truncate(limit as usize);
    if con.is_data() {
        let parse = |s: Option<&structured::Struct>| structured::to_json(s).unwrap_or(Value::Null);
        let out: Vec<Value> = entries
            .iter()
            .map(|a| {
                json!({
                    "id": a.id, "at_ms": a.at_ms, "environment": a.environment, "version": a.version,
                    "actor_key_id": a.actor_key_id, "actor_name": a.actor_name, "action": a.action,
                    "kind": cohort_proto::convert::entity_kind(a.kind).map(Kind::as_str), "key": a.key,
                    "reason": a.reason, "before": parse(a.before.as_ref()), "after": parse(a.after.as_ref()),
                })
            })
            .collect();
        con.data(&out)?;
    } else {
        let dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|a| {
                let subject = match cohort_proto::convert::entity_kind(a.kind) {
                    Some(k) => format!("{k}/{}", a.key),
                    None => dash(&a.key),
                };
                vec![
                    timestamp(a.at_ms),
                    dash(&a.environment),
                    if a.version == 0 { "-".into() } else { a.version.to_string() },
                    dash(&a.actor_name),
                    a.action.clone(),
                    subject,
                    dash(&a.reason),
                ]
            })
            .collect();
        write_table(con, &["TIME", "ENVIRONMENT", "VERSION", "ACTOR", "ACTION", "SUBJECT", "REASON"], &rows)?;
    }
    Ok(entries)
}

/// `snapshot`: the environment's `Definitions` as JSON, or YAML with `-o yaml` (in the
/// model's field order).
pub async fn snapshot(
    client: &mut Client,
    env: &str,
    con: &mut Console<'_>,
) -> Result<pb::GetSnapshotResponse, CtlError> {
    client.require_key()?;
    let s = client
        .rpc
        .get_snapshot(pb::GetSnapshotRequest { environment: env.into() })
        .await
        .map_err(rpc("get snapshot"))?
        .into_inner();
    let raw = structured::to_json(s.definitions.as_ref())
        .map_err(|e| CtlError::Protocol(format!("a snapshot with {e}")))?;
    match serde_json::from_value::<Definitions>(raw.clone()) {
        Ok(defs) => con.data(&defs)?,
        Err(_) => con.data(&raw)?,
    }
    Ok(s)
}

/// `propagation [VERSION]`.
pub async fn propagation(
    client: &mut Client,
    env: &str,
    version: Option<u64>,
    con: &mut Console<'_>,
) -> Result<pb::GetPropagationResponse, CtlError> {
    client.require_key()?;
    let p = client
        .rpc
        .get_propagation(pb::GetPropagationRequest { environment: env.into(), version: version.unwrap_or(0) })
        .await
        .map_err(rpc("get propagation"))?
        .into_inner();
    if con.is_data() {
        con.data(&json!({
            "environment": env, "version": p.version, "connected": p.connected, "acknowledged": p.acknowledged,
            "p50_ms": p.p50_ms, "p99_ms": p.p99_ms, "max_ms": p.max_ms,
        }))?;
    } else {
        let latency = |ms: f64| if p.acknowledged == 0 { "-".to_owned() } else { format!("{ms:.1} ms") };
        let rows = vec![
            vec!["environment".into(), env.to_owned()],
            vec!["version".into(), p.version.to_string()],
            vec!["connected".into(), format!("{} SDK streams", p.connected)],
            vec!["acknowledged".into(), p.acknowledged.to_string()],
            vec!["p50".into(), latency(p.p50_ms)],
            vec!["p99".into(), latency(p.p99_ms)],
            vec!["max".into(), latency(p.max_ms)],
        ];
        let text = table(&["", ""], &rows);
        // The header row of two empty cells is blank: drop it.
        write!(con.out, "{}", text.trim_start_matches('\n'))?;
    }
    Ok(p)
}

fn write_table(con: &mut Console<'_>, headers: &[&str], rows: &[Vec<String>]) -> Result<(), CtlError> {
    write!(con.out, "{}", table(headers, rows))?;
    Ok(())
}

/// `flag enable|disable KEY`: writes the flag with `enabled` flipped, at the revision just
/// read (a concurrent change makes the server refuse rather than be overwritten), with the
/// reason in the audit log. A flag already in that state is left alone.
pub async fn flag_enable(
    client: &mut Client,
    env: &str,
    key: &str,
    enabled: bool,
    reason: Option<&str>,
    con: &mut Console<'_>,
) -> Result<Option<pb::UpdateEntityResponse>, CtlError> {
    client.require_key()?;
    let entity = client.entity(env, Kind::Flag, key).await?;
    let Def::Flag(mut flag) = stored(&entity)? else {
        return Err(CtlError::Protocol(format!("{key:?}, which is not a flag, as a flag")));
    };
    let state = if enabled { "enabled" } else { "disabled" };
    if flag.enabled == enabled {
        if con.is_json() {
            con.json(&json!({ "kind": "flag", "key": key, "result": "unchanged", "enabled": enabled }))?;
        } else {
            con.line(format!("flag/{key} already {state}"))?;
        }
        return Ok(None);
    }
    flag.enabled = enabled;
    let doing = format!("{} flag {key}", if enabled { "enable" } else { "disable" });
    let w = client
        .rpc
        .update_entity(pb::UpdateEntityRequest {
            environment: env.into(),
            kind: pb::EntityKind::from(Kind::Flag) as i32,
            key: key.into(),
            definition: structured::json_struct(&Def::Flag(flag).canonical()),
            expected_revision: entity.revision,
            reason: reason.unwrap_or_default().into(),
        })
        .await
        .map_err(rpc(&doing))?
        .into_inner();
    written(con, Kind::Flag, key, state, w.version)?;
    Ok(Some(w))
}
