//! Every SQL statement of the config service. A definition write loads the environment under a
//! row lock, plans it with [`crate::domain`], then stores the entity, the new version and the
//! audit row, and notifies the other replicas, in one transaction.

use std::time::SystemTime;

use cohort_core::time::unix_ms;
use cohort_db::Pool;
use cohort_db::keys::{self, KeyKind, Principal};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::domain::{self, Entity, Kind, Op};
use crate::error::ServiceError;

mod directory;

/// The channel every replica LISTENs on; the payload is `<environment id>:<version>` for a
/// committed change, or [`REVOKED_PREFIX`]`<key id>` for a revoked API key.
pub(crate) const NOTIFY_CHANNEL: &str = "cohort_config";
/// Starts the payload of a revocation notice (not a UUID, so older replicas ignore it).
pub(crate) const REVOKED_PREFIX: &str = "revoked:";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EnvRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub key: String,
    pub name: String,
    pub version: u64,
    pub created_at: SystemTime,
    /// Browser origins allowed to evaluate with the environment's keys.
    pub cors_origins: Vec<String>,
}

impl EnvRow {
    fn from_row(r: &Row) -> EnvRow {
        EnvRow {
            id: r.get("id"),
            organization_id: r.get("organization_id"),
            key: r.get("key"),
            name: r.get("name"),
            version: r.get::<_, i64>("version") as u64,
            created_at: r.get("created_at"),
            cors_origins: r.get("cors_origins"),
        }
    }
}

const ENV_COLUMNS: &str = "id, organization_id, key, name, version, created_at, cors_origins";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiKeyRow {
    pub id: Uuid,
    pub kind: KeyKind,
    pub name: String,
    pub prefix: String,
    pub environment_id: Option<Uuid>,
    pub environment_key: Option<String>,
    pub created_at: SystemTime,
    pub revoked_at: Option<SystemTime>,
    pub read_only: bool,
    /// An admin key's environments (keys), when it is limited to some.
    pub environments: Option<Vec<String>>,
    pub expires_at: Option<SystemTime>,
    pub last_used_at: Option<SystemTime>,
}

/// What an admin key may do beyond its kind's rights; the default is everything, forever.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyScope {
    pub read_only: bool,
    /// `None` for every environment.
    pub environments: Option<Vec<Uuid>>,
    pub expires_at_ms: Option<i64>,
}

const KEY_COLUMNS: &str =
    "k.id, k.kind, k.name, k.prefix, k.environment_id, e.key AS environment_key, k.created_at,
     k.revoked_at, k.read_only, k.expires_at, k.last_used_at,
     CASE WHEN k.environment_ids IS NULL THEN NULL
          ELSE ARRAY(SELECT s.key FROM environments s WHERE s.id = ANY(k.environment_ids) ORDER BY s.key) END
       AS environment_keys";

impl ApiKeyRow {
    fn from_row(r: &Row) -> ApiKeyRow {
        ApiKeyRow {
            id: r.get("id"),
            kind: KeyKind::parse(r.get("kind")).unwrap_or(KeyKind::Sdk),
            name: r.get("name"),
            prefix: r.get("prefix"),
            environment_id: r.get("environment_id"),
            environment_key: r.get("environment_key"),
            created_at: r.get("created_at"),
            revoked_at: r.get("revoked_at"),
            read_only: r.get("read_only"),
            environments: r.get("environment_keys"),
            expires_at: r.get("expires_at"),
            last_used_at: r.get("last_used_at"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EntityRow {
    pub kind: Kind,
    pub key: String,
    pub definition: Value,
    pub revision: i64,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

const ENTITY_COLUMNS: &str = "kind, key, definition, revision, created_at, updated_at";

impl EntityRow {
    fn from_row(r: &Row) -> Result<EntityRow, ServiceError> {
        let kind: &str = r.get("kind");
        Ok(EntityRow {
            kind: Kind::parse(kind)
                .ok_or_else(|| ServiceError::Internal(format!("unknown entity kind {kind}")))?,
            key: r.get("key"),
            definition: r.get("definition"),
            revision: r.get("revision"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        })
    }
}

/// The environment's whole config at one version.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotData {
    pub version: u64,
    pub entities: Vec<EntityRow>,
    pub committed_at_ms: i64,
}

/// One committed change, from the audit log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChangeRow {
    pub version: u64,
    pub kind: Kind,
    pub key: String,
    /// `None` when the entity was deleted.
    pub after: Option<Value>,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub id: i64,
    pub environment_key: Option<String>,
    pub version: Option<i64>,
    pub actor_key_id: Option<Uuid>,
    pub actor_name: String,
    pub action: String,
    pub kind: Option<String>,
    pub key: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub reason: Option<String>,
    pub at: SystemTime,
}

/// The result of a definition write.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub entity: Option<EntityRow>,
    pub version: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Store {
    pool: Pool,
}

impl Store {
    pub(crate) fn new(pool: Pool) -> Self {
        Store { pool }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) async fn verify_key(&self, secret: &str) -> Result<Option<Principal>, ServiceError> {
        let client = self.pool.get().await?;
        Ok(keys::verify(&client, secret).await?)
    }

    /// An environment of `organization` by key or id.
    pub(crate) async fn environment(
        &self,
        organization: Uuid,
        reference: &str,
    ) -> Result<Option<EnvRow>, ServiceError> {
        let client = self.pool.get().await?;
        let row =
            match Uuid::parse_str(reference) {
                Ok(id) => client
                    .query_opt(
                        &format!(
                            "SELECT {ENV_COLUMNS} FROM environments WHERE organization_id = $1 AND id = $2"
                        ),
                        &[&organization, &id],
                    )
                    .await?,
                Err(_) => client
                    .query_opt(
                        &format!(
                            "SELECT {ENV_COLUMNS} FROM environments WHERE organization_id = $1 AND key = $2"
                        ),
                        &[&organization, &reference],
                    )
                    .await?,
            };
        Ok(row.as_ref().map(EnvRow::from_row))
    }

    pub(crate) async fn environment_by_id(&self, id: Uuid) -> Result<Option<EnvRow>, ServiceError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(&format!("SELECT {ENV_COLUMNS} FROM environments WHERE id = $1"), &[&id])
            .await?;
        Ok(row.as_ref().map(EnvRow::from_row))
    }

    pub(crate) async fn list_environments(&self, organization: Uuid) -> Result<Vec<EnvRow>, ServiceError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT {ENV_COLUMNS} FROM environments WHERE organization_id = $1 ORDER BY key"),
                &[&organization],
            )
            .await?;
        Ok(rows.iter().map(EnvRow::from_row).collect())
    }

    pub(crate) async fn organization_count(&self) -> Result<i64, ServiceError> {
        let client = self.pool.get().await?;
        Ok(client.query_one("SELECT count(*) FROM organizations", &[]).await?.get(0))
    }

    /// Creates an organization, its first environment and an admin key.
    pub(crate) async fn bootstrap(
        &self,
        organization: &str,
        environment: &str,
    ) -> Result<(Uuid, EnvRow, ApiKeyRow, String), ServiceError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let org = Uuid::new_v4();
        let inserted = tx
            .execute(
                "INSERT INTO organizations (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&org, &organization],
            )
            .await?;
        if inserted == 0 {
            return Err(ServiceError::AlreadyExists(format!("organization {organization:?} already exists")));
        }
        let env = insert_environment(&tx, org, environment, &title(environment), &[]).await?;
        let (key, secret) =
            insert_key(&tx, org, None, KeyKind::Admin, "bootstrap admin", None, &KeyScope::default()).await?;
        audit(
            &tx,
            org,
            None,
            None,
            None,
            "bootstrap",
            "bootstrap",
            None,
            None,
            None,
            Some(serde_json::json!({
                "organization": organization, "environment": environment, "admin_key_id": key.id,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok((org, env, key, secret))
    }

    pub(crate) async fn create_environment(
        &self,
        actor: &Principal,
        key: &str,
        name: &str,
        cors_origins: &[String],
    ) -> Result<EnvRow, ServiceError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM environments WHERE organization_id = $1 AND key = $2",
                &[&actor.organization_id, &key],
            )
            .await?;
        if exists.is_some() {
            return Err(ServiceError::AlreadyExists(format!("environment {key:?} already exists")));
        }
        let env = insert_environment(&tx, actor.organization_id, key, name, cors_origins).await?;
        audit(
            &tx,
            actor.organization_id,
            Some(env.id),
            None,
            Some(actor),
            "",
            "create_environment",
            None,
            None,
            None,
            Some(serde_json::json!({"key": key, "name": name, "cors_origins": cors_origins})),
        )
        .await?;
        tx.commit().await?;
        Ok(env)
    }

    /// Renames an environment or replaces its allowed browser origins; audited with the
    /// settings before and after.
    pub(crate) async fn update_environment(
        &self,
        actor: &Principal,
        env: Uuid,
        name: Option<&str>,
        cors_origins: Option<&[String]>,
    ) -> Result<EnvRow, ServiceError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let before = tx
            .query_opt(&format!("SELECT {ENV_COLUMNS} FROM environments WHERE id = $1 FOR UPDATE"), &[&env])
            .await?
            .map(|r| EnvRow::from_row(&r))
            .ok_or_else(|| ServiceError::NotFound("environment does not exist".into()))?;
        let row = tx
            .query_one(
                &format!(
                    "UPDATE environments SET name = coalesce($2, name), cors_origins = coalesce($3, cors_origins)
                     WHERE id = $1 RETURNING {ENV_COLUMNS}"
                ),
                &[&env, &name, &cors_origins],
            )
            .await?;
        let after = EnvRow::from_row(&row);
        let settings = |e: &EnvRow| serde_json::json!({"name": e.name, "cors_origins": e.cors_origins});
        audit(
            &tx,
            actor.organization_id,
            Some(env),
            None,
            Some(actor),
            "",
            "update_environment",
            None,
            Some(&after.key),
            Some(&settings(&before)),
            Some(settings(&after)),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub(crate) async fn create_api_key(
        &self,
        actor: &Principal,
        kind: KeyKind,
        name: &str,
        env: Option<&EnvRow>,
        scope: &KeyScope,
    ) -> Result<(ApiKeyRow, String), ServiceError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (row, secret) =
            insert_key(&tx, actor.organization_id, env, kind, name, Some(actor.key_id), scope).await?;
        audit(
            &tx,
            actor.organization_id,
            env.map(|e| e.id),
            None,
            Some(actor),
            "",
            "create_api_key",
            None,
            None,
            None,
            Some(serde_json::json!({"id": row.id, "kind": kind.as_str(), "name": name, "prefix": row.prefix,
                    "read_only": scope.read_only, "environments": row.environments,
                    "expires_at_ms": scope.expires_at_ms})),
        )
        .await?;
        tx.commit().await?;
        Ok((row, secret))
    }

    pub(crate) async fn list_api_keys(
        &self,
        organization: Uuid,
        include_revoked: bool,
    ) -> Result<Vec<ApiKeyRow>, ServiceError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN environments e ON e.id = k.environment_id
                     WHERE k.organization_id = $1 AND ($2 OR k.revoked_at IS NULL) ORDER BY k.created_at, k.id"
                ),
                &[&organization, &include_revoked],
            )
            .await?;
        Ok(rows.iter().map(ApiKeyRow::from_row).collect())
    }

    pub(crate) async fn revoke_api_key(
        &self,
        actor: &Principal,
        id: Uuid,
    ) -> Result<ApiKeyRow, ServiceError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let updated = tx
            .execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND organization_id = $2",
                &[&id, &actor.organization_id],
            )
            .await?;
        if updated == 0 {
            return Err(ServiceError::NotFound(format!("api key {id} does not exist")));
        }
        let row = tx
            .query_one(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN environments e ON e.id = k.environment_id WHERE k.id = $1"),
                &[&id],
            )
            .await?;
        let key = ApiKeyRow::from_row(&row);
        audit(
            &tx,
            actor.organization_id,
            None,
            None,
            Some(actor),
            "",
            "revoke_api_key",
            None,
            None,
            None,
            Some(serde_json::json!({"id": id, "name": key.name, "prefix": key.prefix})),
        )
        .await?;
        // Every replica ends the key's streams and forgets it from its auth cache.
        tx.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &format!("{REVOKED_PREFIX}{id}")]).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Key `id` of `organization`, if it exists.
    pub(crate) async fn api_key(
        &self,
        organization: Uuid,
        id: Uuid,
    ) -> Result<Option<ApiKeyRow>, ServiceError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN environments e ON e.id = k.environment_id
                          WHERE k.id = $1 AND k.organization_id = $2"
                ),
                &[&id, &organization],
            )
            .await?;
        Ok(row.as_ref().map(ApiKeyRow::from_row))
    }

    /// A new secret for key `id` of the actor's organization, with the same kind, name,
    /// environment and scope; the old one expires after `overlap_ms` (revoked at once for 0).
    /// Returns the new key and secret, and the old key as it now is.
    pub(crate) async fn rotate_api_key(
        &self,
        actor: &Principal,
        id: Uuid,
        overlap_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(ApiKeyRow, String, ApiKeyRow), ServiceError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let old = tx
            .query_opt(
                "SELECT kind, name, environment_id, read_only, environment_ids FROM api_keys
                 WHERE id = $1 AND organization_id = $2 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > now())
                 FOR UPDATE",
                &[&id, &actor.organization_id],
            )
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("api key {id} does not exist or no longer works"))
            })?;
        let kind = KeyKind::parse(old.get(0)).unwrap_or(KeyKind::Sdk);
        let name: String = old.get(1);
        let env = match old.get::<_, Option<Uuid>>(2) {
            Some(env) => Some(EnvRow::from_row(
                &tx.query_one(&format!("SELECT {ENV_COLUMNS} FROM environments WHERE id = $1"), &[&env])
                    .await?,
            )),
            None => None,
        };
        let scope = KeyScope { read_only: old.get(3), environments: old.get(4), expires_at_ms };
        let (new, secret) =
            insert_key(&tx, actor.organization_id, env.as_ref(), kind, &name, Some(actor.key_id), &scope)
                .await?;
        if overlap_ms <= 0 {
            tx.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", &[&id]).await?;
            tx.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &format!("{REVOKED_PREFIX}{id}")])
                .await?;
        } else {
            tx.execute(
                "UPDATE api_keys SET expires_at = least(coalesce(expires_at, 'infinity'), now() + $2::bigint * interval '1 millisecond')
                 WHERE id = $1",
                &[&id, &overlap_ms],
            )
            .await?;
        }
        let old = tx
            .query_one(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN environments e ON e.id = k.environment_id WHERE k.id = $1"),
                &[&id],
            )
            .await?;
        let old = ApiKeyRow::from_row(&old);
        audit(
            &tx,
            actor.organization_id,
            env.as_ref().map(|e| e.id),
            None,
            Some(actor),
            "",
            "rotate_api_key",
            None,
            None,
            None,
            Some(serde_json::json!({"id": id, "new_id": new.id, "name": name, "prefix": new.prefix,
                "old_expires_at_ms": old.expires_at.map(unix_ms), "old_revoked": old.revoked_at.is_some()})),
        )
        .await?;
        tx.commit().await?;
        Ok((new, secret, old))
    }

    /// Which of `ids` are keys that still work (exist and are not revoked).
    pub(crate) async fn active_keys(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, ServiceError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id FROM api_keys WHERE id = ANY($1) AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > now())",
                &[&ids],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Validates and commits one definition change; returns the entity and the new version.
    pub(crate) async fn write(
        &self,
        actor: &Principal,
        env: &EnvRow,
        op: Op,
        reason: Option<&str>,
    ) -> Result<Written, ServiceError> {
        let (mut entities, version) =
            self.commit(actor, env, &[reason], |current| Ok(vec![domain::plan(op, current)?])).await?;
        Ok(Written { entity: entities.pop().flatten(), version })
    }

    /// Validates and commits several definition changes as one version, all or nothing;
    /// returns the entity after each operation (`None` after a delete) and the version.
    /// `reasons` go with the operations of the same index.
    pub(crate) async fn write_batch(
        &self,
        actor: &Principal,
        env: &EnvRow,
        ops: Vec<Op>,
        reasons: &[Option<&str>],
    ) -> Result<(Vec<Option<EntityRow>>, u64), ServiceError> {
        self.commit(actor, env, reasons, |current| domain::plan_batch(ops, current)).await
    }

    /// Locks the environment, plans against its entities, and commits the plans as one new
    /// version: the entities, the version, an audit row per plan, and the notification.
    async fn commit(
        &self,
        actor: &Principal,
        env: &EnvRow,
        reasons: &[Option<&str>],
        plan: impl FnOnce(&[Entity]) -> Result<Vec<domain::Plan>, ServiceError>,
    ) -> Result<(Vec<Option<EntityRow>>, u64), ServiceError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The row lock serializes writers of one environment: versions have no gaps, and each
        // write is validated against exactly the state it commits on top of.
        let version: i64 = tx
            .query_one("SELECT version FROM environments WHERE id = $1 FOR UPDATE", &[&env.id])
            .await?
            .get(0);
        let rows = tx
            .query(
                "SELECT kind, key, definition, revision FROM entities WHERE environment_id = $1",
                &[&env.id],
            )
            .await?;
        let current = rows
            .iter()
            .map(|r| {
                let kind: &str = r.get(0);
                Ok(Entity {
                    kind: Kind::parse(kind)
                        .ok_or_else(|| ServiceError::Internal(format!("unknown kind {kind}")))?,
                    key: r.get(1),
                    definition: r.get(2),
                    revision: r.get(3),
                })
            })
            .collect::<Result<Vec<_>, ServiceError>>()?;
        let plans = plan(&current)?;
        if plans.is_empty() {
            // Nothing changes, so no version: the invariant is one version per change.
            return Ok((Vec::new(), version as u64));
        }
        let new_version = version + 1;
        let mut entities = Vec::with_capacity(plans.len());
        for (index, plan) in plans.iter().enumerate() {
            let kind = plan.kind.as_str();
            let entity = match &plan.after {
                Some(after) => {
                    let row = tx
                        .query_one(
                            &format!(
                                "INSERT INTO entities (environment_id, kind, key, definition, revision, created_at, updated_at)
                                 VALUES ($1, $2, $3, $4, $5, now(), now())
                                 ON CONFLICT (environment_id, kind, key)
                                 DO UPDATE SET definition = EXCLUDED.definition, revision = EXCLUDED.revision, updated_at = now()
                                 RETURNING {ENTITY_COLUMNS}"
                            ),
                            &[&env.id, &kind, &plan.key, after, &plan.revision],
                        )
                        .await?;
                    Some(EntityRow::from_row(&row)?)
                }
                None => {
                    tx.execute(
                        "DELETE FROM entities WHERE environment_id = $1 AND kind = $2 AND key = $3",
                        &[&env.id, &kind, &plan.key],
                    )
                    .await?;
                    None
                }
            };
            entities.push(entity);
            let reason = reasons.get(index).copied().flatten().filter(|r| !r.is_empty());
            audit_change(&tx, actor, env, new_version, index as i32, plan, reason).await?;
        }
        tx.execute("UPDATE environments SET version = $2 WHERE id = $1", &[&env.id, &new_version]).await?;
        tx.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &format!("{}:{new_version}", env.id)])
            .await?;
        tx.commit().await?;
        Ok((entities, new_version as u64))
    }

    pub(crate) async fn get_entity(
        &self,
        env: Uuid,
        kind: Kind,
        key: &str,
    ) -> Result<Option<EntityRow>, ServiceError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE environment_id = $1 AND kind = $2 AND key = $3"),
                &[&env, &kind.as_str(), &key],
            )
            .await?;
        row.as_ref().map(EntityRow::from_row).transpose()
    }

    /// A page of entities ordered by (kind, key), after `after` when given.
    pub(crate) async fn list_entities(
        &self,
        env: Uuid,
        kind: Option<Kind>,
        limit: i64,
        after: Option<(Kind, String)>,
    ) -> Result<Vec<EntityRow>, ServiceError> {
        let client = self.pool.get().await?;
        let kind = kind.map(Kind::as_str);
        let (after_kind, after_key) = match &after {
            Some((k, key)) => (Some(k.as_str()), Some(key.as_str())),
            None => (None, None),
        };
        let rows = client
            .query(
                &format!(
                    "SELECT {ENTITY_COLUMNS} FROM entities
                     WHERE environment_id = $1 AND ($2::text IS NULL OR kind = $2)
                       AND ($3::text IS NULL OR (kind, key) > ($3, $4))
                     ORDER BY kind, key LIMIT $5"
                ),
                &[&env, &kind, &after_kind, &after_key, &limit],
            )
            .await?;
        rows.iter().map(EntityRow::from_row).collect()
    }

    /// The environment's entities at one consistent version.
    pub(crate) async fn snapshot(&self, env: Uuid) -> Result<SnapshotData, ServiceError> {
        let mut client = self.pool.get().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let version: i64 = tx
            .query_opt("SELECT version FROM environments WHERE id = $1", &[&env])
            .await?
            .ok_or_else(|| ServiceError::NotFound("environment does not exist".into()))?
            .get(0);
        let rows = tx
            .query(
                &format!(
                    "SELECT {ENTITY_COLUMNS} FROM entities WHERE environment_id = $1 ORDER BY kind, key"
                ),
                &[&env],
            )
            .await?;
        let at: Option<SystemTime> = tx
            .query_opt(
                "SELECT at FROM audit_log WHERE environment_id = $1 AND version = $2 AND batch_index = 0",
                &[&env, &version],
            )
            .await?
            .map(|r| r.get(0));
        tx.commit().await?;
        Ok(SnapshotData {
            version: version as u64,
            entities: rows.iter().map(EntityRow::from_row).collect::<Result<_, _>>()?,
            committed_at_ms: at.map_or(0, unix_ms),
        })
    }

    /// Committed changes with `after < version <= upto`, in order: one per version, except a
    /// batch's version, which has one per operation (see [`versions_contiguous`]).
    pub(crate) async fn changes(
        &self,
        env: Uuid,
        after: u64,
        upto: u64,
    ) -> Result<Vec<ChangeRow>, ServiceError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT version, kind, key, after, at FROM audit_log
                 WHERE environment_id = $1 AND version > $2 AND version <= $3 ORDER BY version, batch_index",
                &[&env, &(after as i64), &(upto as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let kind: Option<&str> = r.get(1);
                Ok(ChangeRow {
                    version: r.get::<_, i64>(0) as u64,
                    kind: kind
                        .and_then(Kind::parse)
                        .ok_or_else(|| ServiceError::Internal("versioned audit row without a kind".into()))?,
                    key: r.get::<_, Option<String>>(2).unwrap_or_default(),
                    after: r.get(3),
                    at_ms: unix_ms(r.get(4)),
                })
            })
            .collect()
    }

    /// Audit entries newest first, before `before_id` when given.
    pub(crate) async fn list_audit(
        &self,
        organization: Uuid,
        env: Option<Uuid>,
        kind: Option<Kind>,
        key: Option<&str>,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<AuditRow>, ServiceError> {
        let client = self.pool.get().await?;
        let kind = kind.map(Kind::as_str);
        let rows = client
            .query(
                "SELECT a.id, e.key, a.version, a.actor_key_id, a.actor_name, a.action, a.kind, a.key,
                        a.before, a.after, a.reason, a.at
                 FROM audit_log a LEFT JOIN environments e ON e.id = a.environment_id
                 WHERE a.organization_id = $1
                   AND ($2::uuid IS NULL OR a.environment_id = $2)
                   AND ($3::text IS NULL OR a.kind = $3)
                   AND ($4::text IS NULL OR a.key = $4)
                   AND ($5::bigint IS NULL OR a.id < $5)
                 ORDER BY a.id DESC LIMIT $6",
                &[&organization, &env, &kind, &key, &before_id, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                id: r.get(0),
                environment_key: r.get(1),
                version: r.get(2),
                actor_key_id: r.get(3),
                actor_name: r.get(4),
                action: r.get(5),
                kind: r.get(6),
                key: r.get(7),
                before: r.get(8),
                after: r.get(9),
                reason: r.get(10),
                at: r.get(11),
            })
            .collect())
    }

    /// Replaces this replica's recorded latencies for one version.
    pub(crate) async fn record_propagation(
        &self,
        replica: Uuid,
        env: Uuid,
        version: u64,
        latencies_ms: &[f32],
    ) -> Result<(), ServiceError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO propagation (environment_id, version, replica_id, latencies_ms, updated_at)
                 VALUES ($1, $2, $3, $4, now())
                 ON CONFLICT (environment_id, version, replica_id)
                 DO UPDATE SET latencies_ms = EXCLUDED.latencies_ms, updated_at = now()",
                &[&env, &(version as i64), &replica, &latencies_ms],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn record_connected(
        &self,
        replica: Uuid,
        counts: &[(Uuid, i32)],
    ) -> Result<(), ServiceError> {
        let client = self.pool.get().await?;
        for (env, n) in counts {
            client
                .execute(
                    "INSERT INTO replica_streams (replica_id, environment_id, connected, updated_at)
                     VALUES ($1, $2, $3, now())
                     ON CONFLICT (replica_id, environment_id) DO UPDATE SET connected = EXCLUDED.connected, updated_at = now()",
                    &[&replica, env, n],
                )
                .await?;
        }
        Ok(())
    }

    /// Every replica's latencies for one version, and the streams connected now.
    pub(crate) async fn propagation(&self, env: Uuid, version: u64) -> Result<(Vec<f32>, i64), ServiceError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT latencies_ms FROM propagation WHERE environment_id = $1 AND version = $2",
                &[&env, &(version as i64)],
            )
            .await?;
        let latencies = rows.iter().flat_map(|r| r.get::<_, Vec<f32>>(0)).collect();
        // A replica that stopped reporting is gone; its streams moved elsewhere.
        let connected: i64 = client
            .query_one(
                "SELECT coalesce(sum(connected), 0)::bigint FROM replica_streams
                 WHERE environment_id = $1 AND updated_at > now() - interval '30 seconds'",
                &[&env],
            )
            .await?
            .get(0);
        Ok((latencies, connected))
    }

    /// Deletes propagation rows older than a day.
    pub(crate) async fn prune_propagation(&self) -> Result<(), ServiceError> {
        let client = self.pool.get().await?;
        client.execute("DELETE FROM propagation WHERE updated_at < now() - interval '1 day'", &[]).await?;
        client
            .execute("DELETE FROM replica_streams WHERE updated_at < now() - interval '1 day'", &[])
            .await?;
        Ok(())
    }
}

fn title(key: &str) -> String {
    let mut c = key.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

async fn insert_environment(
    tx: &tokio_postgres::Transaction<'_>,
    org: Uuid,
    key: &str,
    name: &str,
    cors_origins: &[String],
) -> Result<EnvRow, ServiceError> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO environments (id, organization_id, key, name, cors_origins)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {ENV_COLUMNS}"
            ),
            &[&Uuid::new_v4(), &org, &key, &name, &cors_origins],
        )
        .await?;
    Ok(EnvRow::from_row(&row))
}

async fn insert_key(
    tx: &tokio_postgres::Transaction<'_>,
    org: Uuid,
    env: Option<&EnvRow>,
    kind: KeyKind,
    name: &str,
    created_by: Option<Uuid>,
    scope: &KeyScope,
) -> Result<(ApiKeyRow, String), ServiceError> {
    let new = keys::generate(kind);
    let id = Uuid::new_v4();
    tx.execute(
        "INSERT INTO api_keys (id, organization_id, environment_id, kind, name, prefix, key_hash, created_by,
                               read_only, environment_ids, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, to_timestamp($11::bigint / 1000.0))",
        &[
            &id,
            &org,
            &env.map(|e| e.id),
            &kind.as_str(),
            &name,
            &new.prefix,
            &new.hash,
            &created_by,
            &scope.read_only,
            &scope.environments,
            &scope.expires_at_ms,
        ],
    )
    .await?;
    let row = tx
        .query_one(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN environments e ON e.id = k.environment_id WHERE k.id = $1"),
            &[&id],
        )
        .await?;
    Ok((ApiKeyRow::from_row(&row), new.secret))
}

#[allow(clippy::too_many_arguments)]
async fn audit(
    tx: &tokio_postgres::Transaction<'_>,
    org: Uuid,
    env: Option<Uuid>,
    version: Option<i64>,
    actor: Option<&Principal>,
    system_actor: &str,
    action: &str,
    kind: Option<&str>,
    key: Option<&str>,
    before: Option<&Value>,
    after: Option<Value>,
) -> Result<(), ServiceError> {
    let (actor_id, actor_name) = match actor {
        Some(p) => (Some(p.key_id), p.key_name.as_str()),
        None => (None, if system_actor.is_empty() { "system" } else { system_actor }),
    };
    tx.execute(
        "INSERT INTO audit_log (organization_id, environment_id, version, actor_key_id, actor_name, action, kind, key, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[&org, &env, &version, &actor_id, &actor_name, &action, &kind, &key, &before, &after],
    )
    .await?;
    Ok(())
}

/// The audit row of one definition change; a batch's changes share the version and are told
/// apart, in order, by `batch_index`.
async fn audit_change(
    tx: &tokio_postgres::Transaction<'_>,
    actor: &Principal,
    env: &EnvRow,
    version: i64,
    batch_index: i32,
    plan: &domain::Plan,
    reason: Option<&str>,
) -> Result<(), ServiceError> {
    tx.execute(
        "INSERT INTO audit_log (organization_id, environment_id, version, batch_index, actor_key_id, actor_name,
                                action, kind, key, before, after, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &env.organization_id,
            &env.id,
            &version,
            &batch_index,
            &actor.key_id,
            &actor.key_name,
            &plan.action,
            &plan.kind.as_str(),
            &plan.key,
            &plan.before,
            &plan.after,
            &reason,
        ],
    )
    .await?;
    Ok(())
}

/// Whether `changes` (as [`Store::changes`] returns them) hold every version from
/// `after + 1` to `upto` and nothing else: versions in order, each one or the next.
pub(crate) fn versions_contiguous(changes: &[ChangeRow], after: u64, upto: u64) -> bool {
    let mut expected = after + 1;
    let mut last = after;
    for c in changes {
        if c.version == expected {
            last = expected;
            expected += 1;
        } else if c.version != last || last == after {
            return false;
        }
    }
    last == upto
}
