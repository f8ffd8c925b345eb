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

#[derive(Debug)]
pub struct Authenticator {
    store: Store,
    cache: Mutex<HashMap<Vec<u8>, (Principal, Instant)>>,
    /// Bumped by every [`Authenticator::forget`]: a lookup that raced a revocation is not
    /// cached, since the database may have answered before the revocation committed.
    revocations: AtomicU64,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Authenticator { store, cache: Mutex::new(HashMap::new()), revocations: AtomicU64::new(0) }
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

pub fn require_admin(p: &Principal) -> Result<(), ServiceError> {
    match p.kind {
        KeyKind::Admin => Ok(()),
        KeyKind::Sdk => {
            Err(ServiceError::PermissionDenied("this call needs an admin key; SDK keys are read-only".into()))
        }
    }
}
