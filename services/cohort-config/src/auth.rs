//! Authentication: `authorization: Bearer <key>` to a [`Principal`], with a short-lived cache
//! so the hot paths (stream opens, snapshot polls) do not query PostgreSQL every time. A
//! revocation (on any replica, through the hub) evicts the key at once; the time limit bounds
//! how long a revocation this replica did not hear of can go unnoticed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cohort_db::keys::{self, KeyKind, Principal};
use tonic::metadata::MetadataMap;
use uuid::Uuid;

use crate::error::ServiceError;
use crate::store::Store;

/// How long a verified key is trusted without asking the database (and so how long a revoked
/// key may keep working when its revocation notice is lost).
const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;

/// The keys of Cohort's own services, by the SHA-256 of their secrets.
#[derive(Debug, Clone, Default)]
pub struct ServiceKeys {
    by_hash: HashMap<Vec<u8>, String>,
}

impl ServiceKeys {
    /// From `NAME=SHA256HEX` entries; the error names the setting and the entry's position.
    pub fn parse(entries: &[String]) -> Result<ServiceKeys, String> {
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
        self.by_hash.get(hash).map(|name| Principal {
            key_id: Uuid::nil(),
            key_name: name.clone(),
            kind: KeyKind::Service,
            organization_id: Uuid::nil(),
            environment_id: None,
        })
    }
}

#[derive(Debug)]
pub struct Authenticator {
    store: Store,
    services: ServiceKeys,
    cache: Mutex<HashMap<Vec<u8>, (Principal, Instant)>>,
    /// Bumped by every [`Authenticator::forget`]: a lookup that raced a revocation is not
    /// cached, since the database may have answered before the revocation committed.
    revocations: AtomicU64,
}

impl Authenticator {
    pub fn new(store: Store, services: ServiceKeys) -> Self {
        Authenticator { store, services, cache: Mutex::new(HashMap::new()), revocations: AtomicU64::new(0) }
    }

    pub async fn from_metadata(&self, metadata: &MetadataMap) -> Result<Principal, ServiceError> {
        let header = metadata.get("authorization").and_then(|v| v.to_str().ok());
        self.from_header(header).await
    }

    /// Authenticates an `Authorization` header value.
    pub async fn from_header(&self, header: Option<&str>) -> Result<Principal, ServiceError> {
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
        if let Some((p, at)) = self.cache.lock().map_err(poisoned)?.get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(p.clone());
        }
        let revocations = self.revocations.load(Ordering::Acquire);
        let principal = self
            .store
            .verify_key(secret)
            .await?
            .ok_or_else(|| ServiceError::Unauthenticated("unknown or revoked api key".into()))?;
        let mut cache = self.cache.lock().map_err(poisoned)?;
        if self.revocations.load(Ordering::Acquire) != revocations {
            return Ok(principal);
        }
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(hash, (principal.clone(), Instant::now()));
        Ok(principal)
    }

    /// Stops trusting a revoked key: its next use asks the database.
    pub fn forget(&self, key_id: Uuid) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.revocations.fetch_add(1, Ordering::AcqRel);
        cache.retain(|_, (p, _)| p.key_id != key_id);
    }
}

fn poisoned<T>(_: T) -> ServiceError {
    ServiceError::Internal("auth cache lock poisoned".into())
}

/// Service keys may call the internal API and pause or complete experiments, nothing else.
pub fn require_service(p: &Principal) -> Result<(), ServiceError> {
    match p.kind {
        KeyKind::Service => Ok(()),
        _ => Err(ServiceError::PermissionDenied("this call is for Cohort's own services".into())),
    }
}

pub fn require_admin(p: &Principal) -> Result<(), ServiceError> {
    match p.kind {
        KeyKind::Admin => Ok(()),
        KeyKind::Sdk => {
            Err(ServiceError::PermissionDenied("this call needs an admin key; SDK keys are read-only".into()))
        }
        KeyKind::Service => Err(ServiceError::PermissionDenied("this call needs an admin key".into())),
    }
}
