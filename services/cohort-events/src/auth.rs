//! SDK key verification with an in-memory cache, so the hot path does not touch PostgreSQL.
//!
//! A verified key is trusted for the TTL, then checked again. While PostgreSQL is unreachable,
//! a key verified earlier stays usable (up to [`MAX_STALE`]) so a database outage does not stop
//! ingestion; a key never seen before gets UNAVAILABLE. Unknown keys are remembered briefly so
//! a client with a bad key cannot turn every request into a query.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tracing::warn;
use uuid::Uuid;

/// How long a once-verified key is still honoured while the database cannot be reached.
pub(crate) const MAX_STALE: Duration = Duration::from_secs(3600);
/// How long an unknown key is remembered as unknown.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How long to wait before asking the database again after it failed.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Longest a key lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Most cached keys; the cache is emptied when it grows past this.
const MAX_ENTRIES: usize = 100_000;

/// Why a key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("missing `authorization: Bearer <sdk key>`")]
    Missing,
    #[error("unknown or revoked API key")]
    Unknown,
    #[error("events need an SDK key (one environment); this is an admin key")]
    NotSdk,
    #[error("cannot verify the API key now: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Environment(Uuid),
    NotSdk,
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    verdict: Verdict,
    verified_at: Instant,
    next_check: Instant,
}

/// Verified SDK keys, by the SHA-256 of the secret (secrets themselves are not kept).
#[derive(Debug)]
pub(crate) struct KeyCache {
    pool: Pool,
    ttl: Duration,
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
}

impl KeyCache {
    pub(crate) fn new(pool: Pool, ttl: Duration) -> Self {
        KeyCache { pool, ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The environment an SDK key belongs to.
    pub(crate) async fn environment(&self, secret: &str) -> Result<Uuid, AuthError> {
        let hash = cohort_db::keys::hash(secret);
        let now = Instant::now();
        let cached = self.lock().get(&hash).copied();
        if let Some(entry) = cached {
            if now < entry.next_check {
                return answer(entry.verdict);
            }
            // Expired: this request refreshes it; concurrent ones keep using it meanwhile.
            self.lock().insert(hash.clone(), Entry { next_check: now + RETRY_AFTER_FAILURE, ..entry });
        }
        match self.lookup(secret).await {
            Ok(verdict) => {
                let ttl = if verdict == Verdict::Unknown { NEGATIVE_TTL } else { self.ttl };
                let mut entries = self.lock();
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
                entries.insert(hash, Entry { verdict, verified_at: now, next_check: now + ttl });
                answer(verdict)
            }
            Err(reason) => match cached {
                Some(entry) if entry.verdict != Verdict::Unknown && now - entry.verified_at < MAX_STALE => {
                    warn!(error = %reason, "key lookup failed; using the last verification");
                    answer(entry.verdict)
                }
                _ => Err(AuthError::Unavailable(reason)),
            },
        }
    }

    async fn lookup(&self, secret: &str) -> Result<Verdict, String> {
        let query = async {
            let client = self.pool.get().await.map_err(|e| e.to_string())?;
            cohort_db::keys::verify(&client, secret).await.map_err(|e| e.to_string())
        };
        let principal = tokio::time::timeout(LOOKUP_TIMEOUT, query)
            .await
            .map_err(|_| format!("no answer from the database within {LOOKUP_TIMEOUT:?}"))??;
        Ok(match principal {
            None => Verdict::Unknown,
            Some(p) => match (p.kind, p.environment_id) {
                (cohort_db::keys::KeyKind::Sdk, Some(env)) => Verdict::Environment(env),
                _ => Verdict::NotSdk,
            },
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn answer(verdict: Verdict) -> Result<Uuid, AuthError> {
    match verdict {
        Verdict::Environment(env) => Ok(env),
        Verdict::NotSdk => Err(AuthError::NotSdk),
        Verdict::Unknown => Err(AuthError::Unknown),
    }
}

/// The key in an `authorization: Bearer <key>` header value.
pub(crate) fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?.trim();
    let (scheme, key) = value.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || key.trim().is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(key.trim())
}

#[cfg(test)]
mod tests;
