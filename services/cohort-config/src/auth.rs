//! Authentication: `authorization: Bearer <key>` to a [`Principal`], with a short-lived cache
//! so the hot paths (stream opens, snapshot polls) do not query PostgreSQL every time. A
//! revocation (on any replica, through the hub) evicts the key at once; the time limit bounds
//! how long a revocation this replica did not hear of can go unnoticed. The cache is bounded:
//! past its capacity the least recently used keys go, not all of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cohort_db::keys::{self, KeyKind, Principal};
use moka::policy::EvictionPolicy;
use tonic::metadata::MetadataMap;
use uuid::Uuid;

use crate::error::ServiceError;
use crate::store::Store;

/// How long a verified key is trusted without asking the database (and so how long a revoked
/// key may keep working when its revocation notice is lost).
const CACHE_TTL: Duration = Duration::from_secs(5);
/// Most verified keys cached at once.
const CACHE_MAX: u64 = 10_000;

/// The keys of Cohort's own services, by the SHA-256 of their secrets.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceKeys {
    by_hash: HashMap<Vec<u8>, String>,
}

impl ServiceKeys {
    /// From `NAME=SHA256HEX` entries; the error names the setting and the entry's position.
    pub(crate) fn parse(entries: &[String]) -> Result<ServiceKeys, String> {
        let mut by_hash = HashMap::new();
        for (i, entry) in entries.iter().enumerate().filter(|(_, e)| !e.trim().is_empty()) {
            let bad = |why: &str| format!("--service-keys entry {}: {why}", i + 1);
            let (name, hash) = entry.trim().split_once('=').ok_or_else(|| bad("expected NAME=SHA256"))?;
            let name_ok = (1..=64).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b' ');
            if !name_ok {
                return Err(bad("the name must be 1 to 64 letters, digits, '-', '_' or spaces"));
            }
            let hash = hex::decode(hash).ok().filter(|h| h.len() == 32).ok_or_else(|| {
                bad("the hash must be 64 hex digits (the SHA-256 of the secret, not the secret)")
            })?;
            by_hash.insert(hash, name.to_owned());
        }
        Ok(ServiceKeys { by_hash })
    }

    fn principal(&self, hash: &[u8]) -> Option<Principal> {
        self.by_hash
            .get(hash)
            .map(|name| Principal::unlimited(Uuid::nil(), name.clone(), KeyKind::Service, Uuid::nil()))
    }
}

/// Verified keys by the SHA-256 of their secrets, each trusted for a time to live; past the
/// capacity the least recently used are evicted.
#[derive(Debug)]
struct KeyCache {
    keys: moka::sync::Cache<Vec<u8>, Principal>,
    /// Bumped by every [`KeyCache::forget`]: a lookup that raced a revocation is not
    /// cached, since the database may have answered before the revocation committed.
    revocations: AtomicU64,
    /// Makes an insert's revocation check and the insert one step against `forget`.
    writes: Mutex<()>,
}

impl KeyCache {
    fn new(capacity: u64, ttl: Duration) -> Self {
        let keys = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .eviction_policy(EvictionPolicy::lru())
            .build();
        KeyCache { keys, revocations: AtomicU64::new(0), writes: Mutex::new(()) }
    }

    fn get(&self, hash: &[u8]) -> Option<Principal> {
        self.keys.get(hash)
    }

    /// Read before asking the database; hand it back to [`KeyCache::insert`].
    fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::Acquire)
    }

    /// Caches a lookup, unless a key was revoked since `revocations` was read.
    fn insert(&self, hash: Vec<u8>, principal: Principal, revocations: u64) {
        let _writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        if self.revocations.load(Ordering::Acquire) != revocations {
            return;
        }
        self.keys.insert(hash, principal);
    }

    /// Evicts every entry of a key id.
    fn forget(&self, key_id: Uuid) {
        let _writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        self.revocations.fetch_add(1, Ordering::AcqRel);
        let revoked: Vec<_> =
            self.keys.iter().filter(|(_, p)| p.key_id == key_id).map(|(hash, _)| hash).collect();
        for hash in revoked {
            self.keys.invalidate(hash.as_slice());
        }
    }
}

#[derive(Debug)]
pub(crate) struct Authenticator {
    store: Store,
    services: ServiceKeys,
    cache: KeyCache,
}

impl Authenticator {
    pub(crate) fn new(store: Store, services: ServiceKeys) -> Self {
        Authenticator { store, services, cache: KeyCache::new(CACHE_MAX, CACHE_TTL) }
    }

    pub(crate) async fn principal_from_metadata(
        &self,
        metadata: &MetadataMap,
    ) -> Result<Principal, ServiceError> {
        let header = metadata.get("authorization").and_then(|v| v.to_str().ok());
        self.principal_from_header(header).await
    }

    /// Authenticates an `Authorization` header value.
    pub(crate) async fn principal_from_header(
        &self,
        header: Option<&str>,
    ) -> Result<Principal, ServiceError> {
        let secret = header.and_then(cohort_runtime::bearer).ok_or_else(|| {
            ServiceError::Unauthenticated("missing `authorization: Bearer <api key>`".into())
        })?;
        let hash = keys::hash(secret);
        if keys::claimed_kind(secret) == Some(KeyKind::Service) {
            return self
                .services
                .principal(&hash)
                .ok_or_else(|| ServiceError::Unauthenticated("unknown service key".into()));
        }
        if let Some(p) = self.cache.get(&hash) {
            // A cached key still expires on time.
            if p.expired(cohort_core::time::unix_ms(std::time::SystemTime::now())) {
                return Err(ServiceError::Unauthenticated("unknown, revoked or expired api key".into()));
            }
            return Ok(p);
        }
        let revocations = self.cache.revocations();
        let principal = self
            .store
            .verify_key(secret)
            .await?
            .ok_or_else(|| ServiceError::Unauthenticated("unknown, revoked or expired api key".into()))?;
        self.cache.insert(hash, principal.clone(), revocations);
        Ok(principal)
    }

    /// The service key whose secret hashes to `hash`.
    pub(crate) fn service_principal(&self, hash: &[u8]) -> Option<Principal> {
        self.services.principal(hash)
    }

    /// Stops trusting a revoked key: its next use asks the database.
    pub(crate) fn forget(&self, key_id: Uuid) {
        self.cache.forget(key_id);
    }
}

/// Service keys may call the internal API and pause or complete experiments, nothing else.
pub(crate) fn require_service(p: &Principal) -> Result<(), ServiceError> {
    match p.kind {
        KeyKind::Service => Ok(()),
        _ => Err(ServiceError::PermissionDenied("this call is for Cohort's own services".into())),
    }
}

/// An admin key may write: not read-only. Environment limits are checked where the
/// environment is named.
pub(crate) fn require_write(p: &Principal) -> Result<(), ServiceError> {
    require_admin(p)?;
    if p.read_only {
        return Err(ServiceError::PermissionDenied(
            "this key is read-only; writing needs a key with write access".into(),
        ));
    }
    Ok(())
}

/// Managing the organization itself (environments, admin keys) needs a key that may write in
/// every environment, so a limited key cannot widen its own reach.
pub(crate) fn require_organization_write(p: &Principal) -> Result<(), ServiceError> {
    require_write(p)?;
    if p.environments.is_some() {
        return Err(ServiceError::PermissionDenied(
            "this key is limited to some environments; this call needs an unrestricted admin key".into(),
        ));
    }
    Ok(())
}

/// Reading definitions and environments: admin and SDK keys. Cohort's services read through
/// `InternalService`; client-side keys read nothing.
pub(crate) fn require_reader(p: &Principal) -> Result<(), ServiceError> {
    match p.kind {
        KeyKind::Admin | KeyKind::Sdk => Ok(()),
        KeyKind::Client => Err(client_refused()),
        KeyKind::Service => {
            Err(ServiceError::PermissionDenied("services read definitions through InternalService".into()))
        }
    }
}

/// What a client-side key hears from every call of the config service.
pub(crate) fn client_refused() -> ServiceError {
    ServiceError::PermissionDenied(
        "client-side keys cannot read the config; they evaluate through the evaluation service".into(),
    )
}

pub(crate) fn require_admin(p: &Principal) -> Result<(), ServiceError> {
    match p.kind {
        KeyKind::Admin => Ok(()),
        KeyKind::Sdk => {
            Err(ServiceError::PermissionDenied("this call needs an admin key; SDK keys are read-only".into()))
        }
        KeyKind::Client => Err(client_refused()),
        KeyKind::Service => Err(ServiceError::PermissionDenied("this call needs an admin key".into())),
    }
}

#[cfg(test)]
mod tests;
