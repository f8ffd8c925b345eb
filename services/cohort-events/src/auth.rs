//! SDK key verification through the config service (`InternalService.VerifyKey`), with an
//! in-memory cache so the hot path does not leave the process. Config's tables are never read.
//!
//! A verified key is trusted for the TTL, then checked again. While the config service cannot
//! answer (unreachable, its database down, no answer in time:
//! [`crate::config::ConfigError::is_unavailable`]), a key verified earlier stays usable (up to
//! the configured maximum age) so an outage does not stop ingestion; the verified keys are also
//! kept in a record in the spool directory (`record`), so a restart during an outage keeps
//! accepting them. A key never verified gets UNAVAILABLE. Whenever the config service answers,
//! it decides: a refused key (NOT_FOUND, or not an SDK key) leaves the cache and the record.
//! Any other failure (this service's key refused, an internal error) is no outage: the request
//! is refused as UNAVAILABLE and the cause logged. Unknown keys are remembered briefly so a
//! client with a bad key cannot turn every request into a call.

mod record;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cohort_core::time::unix_ms;
use tracing::{error, warn};
use uuid::Uuid;

use crate::config::{ConfigClient, VerifiedKey};

pub(crate) use record::KeyRecord;
use record::Recorded;

/// How long an unknown key is remembered as unknown.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How long to wait before asking the config service again after it failed; also how soon a
/// key accepted from the record alone is verified again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Most cached keys; the cache is emptied when it grows past this.
const MAX_ENTRIES: usize = 100_000;

/// Why a key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("missing `authorization: Bearer <sdk key>`")]
    Missing,
    #[error("unknown or revoked API key")]
    Unknown,
    #[error("events need an SDK or client key (one environment); this is an admin key")]
    NotSdk,
    #[error("cannot verify the API key now: {0}")]
    Unavailable(String),
}

/// Who may send: an environment's SDK key, or its client-side key (exposures only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) environment: Uuid,
    pub(crate) exposures_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Environment(Caller),
    NotSdk,
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    verdict: Verdict,
    /// Until when the verdict may stand in for a config service that cannot answer.
    usable_until: Instant,
    next_check: Instant,
}

/// Verified SDK keys, by the SHA-256 of the secret (secrets themselves are not kept).
#[derive(Debug)]
pub(crate) struct KeyCache {
    config: ConfigClient,
    ttl: Duration,
    /// How long a verification stays usable while the config service cannot answer.
    max_stale: Duration,
    record: Arc<KeyRecord>,
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
}

impl KeyCache {
    /// `record` holds the keys verified before this start; its maximum age is `max_stale`.
    pub(crate) fn new(
        config: ConfigClient,
        ttl: Duration,
        max_stale: Duration,
        record: Arc<KeyRecord>,
    ) -> Self {
        KeyCache { config, ttl, max_stale, record, entries: Mutex::new(HashMap::new()) }
    }

    /// The environment an SDK or client key belongs to, and what it may send.
    pub(crate) async fn caller(&self, secret: &str) -> Result<Caller, AuthError> {
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
        match self.config.verify(&hash).await {
            Ok(key) => {
                let verdict = verdict(key.as_ref());
                match (verdict, key) {
                    (Verdict::Environment(caller), Some(k)) => self.record.verified(
                        &hash,
                        Recorded {
                            environment_id: caller.environment,
                            organization_id: k.organization_id,
                            key_id: k.key_id,
                            verified_at_ms: unix_ms(SystemTime::now()),
                            exposures_only: caller.exposures_only,
                        },
                    ),
                    _ => self.record.forget(&hash),
                }
                let ttl = if verdict == Verdict::Unknown { NEGATIVE_TTL } else { self.ttl };
                let entry = Entry { verdict, usable_until: now + self.max_stale, next_check: now + ttl };
                self.remember(hash, entry);
                answer(verdict)
            }
            Err(reason) if !reason.is_unavailable() => {
                error!(error = %reason, "the config service did not verify the key");
                Err(AuthError::Unavailable(reason.to_string()))
            }
            Err(reason) => {
                if let Some(entry) = cached
                    && entry.verdict != Verdict::Unknown
                    && now < entry.usable_until
                {
                    warn!(error = %reason, "key lookup failed; using the last verification");
                    return answer(entry.verdict);
                }
                // Verified before this process started: accepted until the config service can say.
                if let Some((recorded, left)) = self.record.get(&hash, unix_ms(SystemTime::now())) {
                    warn!(error = %reason, key_id = %recorded.key_id, "key lookup failed; using the verified-key record");
                    let verdict = Verdict::Environment(Caller {
                        environment: recorded.environment_id,
                        exposures_only: recorded.exposures_only,
                    });
                    let entry =
                        Entry { verdict, usable_until: now + left, next_check: now + RETRY_AFTER_FAILURE };
                    self.remember(hash, entry);
                    return answer(verdict);
                }
                Err(AuthError::Unavailable(reason.to_string()))
            }
        }
    }

    fn remember(&self, hash: Vec<u8>, entry: Entry) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(hash, entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn verdict(key: Option<&VerifiedKey>) -> Verdict {
    match key {
        None => Verdict::Unknown,
        Some(VerifiedKey { environment: Some(env), client, .. }) => {
            Verdict::Environment(Caller { environment: *env, exposures_only: *client })
        }
        Some(_) => Verdict::NotSdk,
    }
}

fn answer(verdict: Verdict) -> Result<Caller, AuthError> {
    match verdict {
        Verdict::Environment(caller) => Ok(caller),
        Verdict::NotSdk => Err(AuthError::NotSdk),
        Verdict::Unknown => Err(AuthError::Unknown),
    }
}

/// The key in an `authorization: Bearer <key>` header value (read as every service reads it).
pub(crate) fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    header.and_then(cohort_runtime::bearer).ok_or(AuthError::Missing)
}

#[cfg(test)]
mod tests;
