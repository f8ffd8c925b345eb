//! Authentication: `authorization: Bearer <key>` to a [`Principal`], with a short-lived cache
//! so the hot paths (stream opens, snapshot polls) do not query PostgreSQL every time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cohort_db::keys::{self, KeyKind, Principal};
use tonic::metadata::MetadataMap;

use crate::error::ServiceError;
use crate::store::Store;

/// How long a verified key is trusted without asking the database (and so how long a revoked
/// key may keep working).
const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;

#[derive(Debug)]
pub struct Authenticator {
    store: Store,
    cache: Mutex<HashMap<Vec<u8>, (Principal, Instant)>>,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Authenticator { store, cache: Mutex::new(HashMap::new()) }
    }

    pub async fn from_metadata(&self, metadata: &MetadataMap) -> Result<Principal, ServiceError> {
        let header = metadata.get("authorization").and_then(|v| v.to_str().ok());
        self.from_header(header).await
    }

    /// Authenticates an `Authorization` header value.
    pub async fn from_header(&self, header: Option<&str>) -> Result<Principal, ServiceError> {
        let secret = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| {
                ServiceError::Unauthenticated("missing `authorization: Bearer <api key>`".into())
            })?;
        let hash = keys::hash(secret);
        if let Some((p, at)) = self.cache.lock().map_err(poisoned)?.get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(p.clone());
        }
        let principal = self
            .store
            .verify_key(secret)
            .await?
            .ok_or_else(|| ServiceError::Unauthenticated("unknown or revoked api key".into()))?;
        let mut cache = self.cache.lock().map_err(poisoned)?;
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(hash, (principal.clone(), Instant::now()));
        Ok(principal)
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
