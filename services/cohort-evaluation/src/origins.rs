//! The browser origins each environment allows (CORS). A request that comes from a browser
//! (it has an `Origin` header) is answered only when its origin is one its key's environment
//! lists; otherwise 403 before anything is evaluated or recorded. Requests without `Origin`
//! (servers, edge workers) never come here.
//!
//! The lists are the config service's (`InternalService.VerifyKey`, asked under this
//! service's own key), cached per key: asked again once older than [`REFRESH`], and the last
//! answer kept for up to [`MAX_STALE`] while the config service cannot answer, so an outage
//! does not stop browsers. Only one request per key refreshes; the others use the cached list
//! meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cohort_proto::config::v1 as pb;
use pb::internal_service_client::InternalServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tracing::warn;

use crate::environments::KeyId;
use crate::error::ServiceError;

/// How long a list is used before the config service is asked again (a change reaches
/// browsers within this).
pub const REFRESH: Duration = Duration::from_secs(10);
/// How long a list stands in for a config service that cannot answer.
pub const MAX_STALE: Duration = Duration::from_secs(3600);
/// The longest one question may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry {
    origins: Arc<[String]>,
    fetched: Instant,
    refreshing: AtomicBool,
}

/// The allowed origins of the environments in use, by key.
#[derive(Debug, Clone)]
pub struct Origins {
    /// `None` without a service key: browser requests are refused.
    config: Option<Asker>,
    cache: moka::sync::Cache<KeyId, Arc<Entry>>,
}

#[derive(Debug, Clone)]
struct Asker {
    client: InternalServiceClient<Channel>,
    authorization: MetadataValue<Ascii>,
}

/// What the config service said of a key.
enum Answer {
    Origins(Arc<[String]>),
    UnknownKey,
}

impl Origins {
    /// Asks over `channel` (to the config service) with `service_key`; without one, every
    /// browser request is refused with a message saying why.
    pub fn new(channel: Option<(Channel, &str)>, capacity: u64) -> Result<Origins, String> {
        let config = match channel {
            Some((channel, key)) => Some(Asker {
                client: InternalServiceClient::new(channel),
                authorization: format!("Bearer {key}")
                    .parse()
                    .map_err(|_| "--service-key is not a usable key".to_owned())?,
            }),
            None => None,
        };
        let cache = moka::sync::Cache::builder().max_capacity(capacity).time_to_live(MAX_STALE).build();
        Ok(Origins { config, cache })
    }

    /// Whether a browser at `origin` may use `key` (already accepted by its environment's
    /// client): `Ok` when its environment lists the origin.
    pub async fn check(&self, key: &str, origin: &str) -> Result<(), ServiceError> {
        let allowed = self.allowed(key).await?;
        if cohort_runtime::origin::allowed(&allowed, origin) {
            Ok(())
        } else {
            Err(ServiceError::PermissionDenied(format!(
                "the origin {origin:?} is not allowed for this environment (its cors_origins)"
            )))
        }
    }

    async fn allowed(&self, key: &str) -> Result<Arc<[String]>, ServiceError> {
        let Some(config) = &self.config else {
            return Err(ServiceError::PermissionDenied(
                "this evaluation service answers no browsers: it was started without --service-key, \
                 which it needs to read environments' allowed origins"
                    .into(),
            ));
        };
        let id = KeyId::of(key);
        let cached = self.cache.get(&id);
        if let Some(entry) = &cached {
            // Fresh, or another request is refreshing it.
            if entry.fetched.elapsed() < REFRESH || entry.refreshing.swap(true, Ordering::AcqRel) {
                return Ok(entry.origins.clone());
            }
        }
        match config.ask(&id).await {
            Ok(Answer::Origins(origins)) => {
                let entry = Entry {
                    origins: origins.clone(),
                    fetched: Instant::now(),
                    refreshing: AtomicBool::new(false),
                };
                self.cache.insert(id, Arc::new(entry));
                Ok(origins)
            }
            Ok(Answer::UnknownKey) => {
                self.cache.invalidate(&id);
                Err(ServiceError::Unauthenticated("unknown, revoked or expired key".into()))
            }
            Err(status) => match cached {
                Some(entry) => {
                    warn!(env = %id.short(), error = %status.message(), "cannot refresh allowed origins; using the last list");
                    entry.refreshing.store(false, Ordering::Release);
                    Ok(entry.origins.clone())
                }
                None => {
                    warn!(env = %id.short(), error = %status.message(), "cannot read allowed origins");
                    Err(ServiceError::Unavailable {
                        message: "cannot check this page's origin now; retry shortly".into(),
                        retry_after: RETRY_AFTER,
                    })
                }
            },
        }
    }
}

impl Asker {
    async fn ask(&self, id: &KeyId) -> Result<Answer, tonic::Status> {
        let mut request = tonic::Request::new(pb::VerifyKeyRequest { key_hash: id.sha256().to_vec().into() });
        request.metadata_mut().insert("authorization", self.authorization.clone());
        request.set_timeout(ASK_TIMEOUT);
        let mut client = self.client.clone();
        let answer = tokio::time::timeout(ASK_TIMEOUT, client.verify_key(request))
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("no answer in time"))?;
        match answer {
            Ok(k) => Ok(Answer::Origins(k.into_inner().cors_origins.into())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(Answer::UnknownKey),
            Err(s) => Err(s),
        }
    }
}
