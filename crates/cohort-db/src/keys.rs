//! API keys: random secrets shown once, stored only as SHA-256 hashes.
//!
//! Secrets are 256 random bits, so a fast hash is enough: there is nothing to brute-force
//! that a slow password hash would protect.

use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::DbError;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Organization-wide: read and write everything.
    Admin,
    /// One environment: read its config and send its events (server-side SDKs).
    Sdk,
    /// One environment, for code that runs where anyone can read the key (browsers, mobile
    /// apps): evaluate through the evaluation service and send the environment's exposures;
    /// never read the raw config, list anything or send metric events.
    Client,
    /// One of Cohort's own services (analysis, events): what that service needs of the config
    /// service across every organization, nothing else. Never stored in `api_keys`: the config
    /// service knows the SHA-256 of each service key from its settings.
    Service,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Admin => "admin",
            KeyKind::Sdk => "sdk",
            KeyKind::Client => "client",
            KeyKind::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<KeyKind> {
        match s {
            "admin" => Some(KeyKind::Admin),
            "sdk" => Some(KeyKind::Sdk),
            "client" => Some(KeyKind::Client),
            "service" => Some(KeyKind::Service),
            _ => None,
        }
    }
}

/// A newly generated key: the secret goes to the caller once; the rest is stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub secret: String,
    pub prefix: String,
    pub hash: Vec<u8>,
}

/// Length of the displayed prefix (`cohort_sdk_` plus a few characters of the secret).
const PREFIX_RANDOM_CHARS: usize = 8;

/// Generates `cohort_<kind>_<64 hex chars>`.
pub fn generate(kind: KeyKind) -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let head = format!("cohort_{}_", kind.as_str());
    let secret = format!("{head}{}", hex::encode(bytes));
    let prefix = secret[..head.len() + PREFIX_RANDOM_CHARS].to_owned();
    let hash = hash(&secret);
    NewKey { secret, prefix, hash }
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The kind a secret claims by its shape; the database decides what it really is.
pub fn claimed_kind(secret: &str) -> Option<KeyKind> {
    let rest = secret.strip_prefix("cohort_")?;
    let (kind, random) = rest.split_once('_')?;
    (random.len() == 64 && random.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
    KeyKind::parse(kind)
}

/// Who a verified key belongs to and what it may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: Uuid,
    pub key_name: String,
    pub kind: KeyKind,
    pub organization_id: Uuid,
    /// The environment of an SDK or client key; `None` for admin and service keys.
    pub environment_id: Option<Uuid>,
    /// An admin key that may read but not write.
    pub read_only: bool,
    /// The environments an admin key may reach; `None` for every environment.
    pub environments: Option<Vec<Uuid>>,
    /// When the key stops working (Unix ms), checked on every use (a cached key too).
    pub expires_at_ms: Option<i64>,
}

impl Principal {
    /// A principal of `kind` with every right of its kind (no scope limits, no expiry).
    pub fn unlimited(key_id: Uuid, key_name: String, kind: KeyKind, organization_id: Uuid) -> Principal {
        Principal {
            key_id,
            key_name,
            kind,
            organization_id,
            environment_id: None,
            read_only: false,
            environments: None,
            expires_at_ms: None,
        }
    }

    /// Whether the key may reach environment `id` (its own, for an SDK or client key; one of
    /// its list, for a limited admin key).
    pub fn reaches(&self, id: Uuid) -> bool {
        match (self.kind, self.environment_id, &self.environments) {
            (KeyKind::Sdk | KeyKind::Client, Some(own), _) => own == id,
            (KeyKind::Sdk | KeyKind::Client, None, _) => false,
            (_, _, Some(list)) => list.contains(&id),
            (_, _, None) => true,
        }
    }

    /// Whether the key has expired at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

/// Looks a secret up by its hash. `Ok(None)` for unknown, malformed or revoked keys, and for
/// service keys (they are not stored here).
pub async fn verify(client: &tokio_postgres::Client, secret: &str) -> Result<Option<Principal>, DbError> {
    if !matches!(claimed_kind(secret), Some(KeyKind::Admin | KeyKind::Sdk | KeyKind::Client)) {
        return Ok(None);
    }
    verify_hash(client, &hash(secret)).await
}

/// Looks a key up by the SHA-256 of its secret. `Ok(None)` for unknown, revoked or expired
/// keys. Records the use (`last_used_at`, at most once a minute per key).
pub async fn verify_hash(
    client: &tokio_postgres::Client,
    key_hash: &[u8],
) -> Result<Option<Principal>, DbError> {
    let row = client
        .query_opt(
            "SELECT id, name, kind, organization_id, environment_id, read_only, environment_ids,
                    (extract(epoch FROM expires_at) * 1000)::bigint,
                    last_used_at IS NULL OR last_used_at < now() - interval '1 minute'
             FROM api_keys
             WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
            &[&key_hash],
        )
        .await
        .map_err(DbError::query("verify api key"))?;
    let Some(r) = row else { return Ok(None) };
    let Some(kind) = KeyKind::parse(r.get(2)) else { return Ok(None) };
    let principal = Principal {
        key_id: r.get(0),
        key_name: r.get(1),
        kind,
        organization_id: r.get(3),
        environment_id: r.get(4),
        read_only: r.get(5),
        environments: r.get(6),
        expires_at_ms: r.get(7),
    };
    if r.get::<_, bool>(8) {
        client
            .execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", &[&principal.key_id])
            .await
            .map_err(DbError::query("record api key use"))?;
    }
    Ok(Some(principal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let k = generate(KeyKind::Sdk);
        assert!(k.secret.starts_with("cohort_sdk_"));
        assert_eq!(k.secret.len(), "cohort_sdk_".len() + 64);
        assert!(k.secret.starts_with(&k.prefix));
        assert_eq!(k.hash, hash(&k.secret));
        assert_eq!(claimed_kind(&k.secret), Some(KeyKind::Sdk));
        assert_ne!(generate(KeyKind::Sdk).secret, k.secret);
        assert_eq!(claimed_kind(&generate(KeyKind::Admin).secret), Some(KeyKind::Admin));
        assert_eq!(claimed_kind(&generate(KeyKind::Service).secret), Some(KeyKind::Service));
        assert_eq!(claimed_kind(&generate(KeyKind::Client).secret), Some(KeyKind::Client));
        assert!(generate(KeyKind::Client).secret.starts_with("cohort_client_"));
    }

    #[test]
    fn malformed_secrets_claim_nothing() {
        for bad in ["", "cohort_sdk_", "cohort_root_00", "sdk_abc", &format!("cohort_sdk_{}", "g".repeat(64))]
        {
            assert_eq!(claimed_kind(bad), None, "{bad}");
        }
    }
}
