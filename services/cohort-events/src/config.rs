//! The config service, as the events service sees it: who an SDK key is
//! (`InternalService.VerifyKey`, asked with this service's key and the SHA-256 of the secret,
//! never the secret), and which experiments run (`ListRunning`, for retention). Config's
//! tables are never read here.

use std::time::Duration;

use cohort_proto::config::v1 as pb;
use cohort_transport::ClientTls;
use pb::internal_service_client::InternalServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use uuid::Uuid;

/// Longest a verification may take, connecting included.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest a `ListRunning` may take: it answers every environment's definitions at once.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// A config service call that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("config service: {:?}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("no answer from the config service within {0:?}")]
    Timeout(Duration),
    #[error("config service answered {0}")]
    Malformed(String),
}

impl ConfigError {
    /// Whether the config service could not be reached or could not answer now (its database
    /// down, a timeout, a connection refused or cut), as opposed to an answer that is not a
    /// verdict on the key (this service's key refused, an internal error).
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            ConfigError::Status(s) => matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown
            ),
            ConfigError::Timeout(_) => true,
            ConfigError::Malformed(_) => false,
        }
    }
}

/// An API key the config service vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VerifiedKey {
    pub(crate) key_id: Uuid,
    pub(crate) organization_id: Uuid,
    /// The key's environment when it is an SDK or client key; `None` for any other kind.
    pub(crate) environment: Option<Uuid>,
    /// A client-side key: it may send exposures only.
    pub(crate) client: bool,
}

/// `InternalService` over one lazily connected channel (the events service starts, and spools
/// with the keys it recorded, while the config service is down).
#[derive(Debug, Clone)]
pub(crate) struct ConfigClient {
    internal: InternalServiceClient<Channel>,
    authorization: MetadataValue<Ascii>,
}

impl ConfigClient {
    pub(crate) fn new(endpoint: &str, service_key: &str, tls: &ClientTls) -> Result<ConfigClient, String> {
        let tls = tls.load().map_err(|e| e.to_string())?;
        let channel = cohort_transport::endpoint(endpoint, &tls)
            .map_err(|e| format!("--config-endpoint: {e}"))?
            .connect_timeout(VERIFY_TIMEOUT)
            // A connection that went silent (a partition, not a refusal) is noticed and
            // replaced instead of timing out every verification.
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let authorization = format!("Bearer {service_key}")
            .parse()
            .map_err(|_| "--service-key: not a valid header value".to_owned())?;
        Ok(ConfigClient { internal: InternalServiceClient::new(channel), authorization })
    }

    /// The key whose secret has the SHA-256 `key_hash`; `None` when the config service says it
    /// does not exist or is revoked.
    pub(crate) async fn verify(&self, key_hash: &[u8]) -> Result<Option<VerifiedKey>, ConfigError> {
        let mut request = tonic::Request::new(pb::VerifyKeyRequest { key_hash: key_hash.to_vec().into() });
        request.metadata_mut().insert("authorization", self.authorization.clone());
        request.set_timeout(VERIFY_TIMEOUT);
        let mut internal = self.internal.clone();
        let answer = tokio::time::timeout(VERIFY_TIMEOUT, internal.verify_key(request))
            .await
            .map_err(|_| ConfigError::Timeout(VERIFY_TIMEOUT))?;
        match answer {
            Ok(key) => verified(&key.into_inner()).map(Some),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(s.into()),
        }
    }

    /// Every running experiment and enabled holdout, with each environment's metrics, as
    /// the JSON texts the config service keeps (parsed by the caller, which knows which
    /// fields it needs).
    pub(crate) async fn list_running(&self) -> Result<pb::ListRunningResponse, ConfigError> {
        let mut request = tonic::Request::new(pb::ListRunningRequest {});
        request.metadata_mut().insert("authorization", self.authorization.clone());
        request.set_timeout(LIST_TIMEOUT);
        let mut internal = self.internal.clone();
        let answer = tokio::time::timeout(LIST_TIMEOUT, internal.list_running(request))
            .await
            .map_err(|_| ConfigError::Timeout(LIST_TIMEOUT))?;
        Ok(answer?.into_inner())
    }
}

fn verified(key: &pb::VerifyKeyResponse) -> Result<VerifiedKey, ConfigError> {
    let client = key.kind == pb::KeyKind::Client as i32;
    let environment = if key.kind == pb::KeyKind::Sdk as i32 || client {
        Some(uuid("environment_id", &key.environment_id)?)
    } else {
        None
    };
    Ok(VerifiedKey {
        key_id: uuid("key_id", &key.key_id)?,
        organization_id: uuid("organization_id", &key.organization_id)?,
        environment,
        client,
    })
}

fn uuid(field: &str, text: &str) -> Result<Uuid, ConfigError> {
    Uuid::parse_str(text).map_err(|_| ConfigError::Malformed(format!("{text:?} for {field}, not a UUID")))
}

#[cfg(test)]
mod tests;
