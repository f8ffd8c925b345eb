//! Where the SDK clients connect: static endpoints, or the passing instances of a Consul
//! service, followed with blocking queries.
//!
//! The SDK takes endpoint URIs (it rotates through them on reconnect), not a balanced
//! channel, so Consul discovery here resolves instances to URIs: each new environment's client
//! gets the instances passing at the time it is built.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cohort_backoff::{Backoff, BackoffPolicy};
use cohort_discovery::{ConsulClient, Instance};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// How long one blocking query may wait.
const WAIT: Duration = Duration::from_secs(30);

/// Endpoints of one upstream service.
#[derive(Debug, Clone)]
pub enum Endpoints {
    Static(Arc<[String]>),
    Consul(Arc<Followed>),
}

/// The passing instances of a Consul service, kept current by a background task.
#[derive(Debug)]
pub struct Followed {
    client: ConsulClient,
    service: String,
    current: RwLock<Arc<[String]>>,
}

impl Endpoints {
    /// Fixed endpoints.
    pub fn fixed(uris: &[String]) -> Self {
        Endpoints::Static(uris.into())
    }

    /// Follows `service` in Consul until `shutdown`.
    pub fn consul(client: ConsulClient, service: &str, shutdown: CancellationToken) -> Self {
        let followed =
            Arc::new(Followed { client, service: service.to_owned(), current: RwLock::new(Arc::from([])) });
        tokio::spawn(follow(followed.clone(), shutdown));
        Endpoints::Consul(followed)
    }

    /// The endpoints to give a new SDK client; for Consul, asks it directly when nothing is
    /// known yet (the first environment built right after start-up). Empty when none is found.
    pub async fn resolve(&self) -> Arc<[String]> {
        match self {
            Endpoints::Static(uris) => uris.clone(),
            Endpoints::Consul(f) => {
                let known = f.current.read().unwrap_or_else(|p| p.into_inner()).clone();
                if !known.is_empty() {
                    return known;
                }
                match f.client.healthy(&f.service, 0, WAIT).await {
                    Ok((instances, _)) => f.set(&instances),
                    Err(e) => {
                        debug!(service = f.service, error = %e, "consul query failed");
                        known
                    }
                }
            }
        }
    }
}

impl Followed {
    fn set(&self, instances: &[Instance]) -> Arc<[String]> {
        let uris: Arc<[String]> = instances.iter().map(Instance::uri).collect();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = uris.clone();
        uris
    }
}

async fn follow(f: Arc<Followed>, shutdown: CancellationToken) {
    let mut index = 0u64;
    let mut backoff =
        Backoff::new(BackoffPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(10) });
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = f.client.healthy(&f.service, index, WAIT) => r,
        };
        let delay = match result {
            Ok((instances, new_index)) => {
                backoff.reset();
                // Consul's rules for blocking queries: an index going backwards resets it.
                index = if new_index < index { 0 } else { new_index.max(1) };
                let before = f.current.read().unwrap_or_else(|p| p.into_inner()).len();
                let now = f.set(&instances).len();
                if before != now {
                    info!(service = f.service, instances = now, "service membership changed");
                }
                // Blocking queries may return early without a change; do not spin.
                Duration::from_millis(20)
            }
            Err(e) => {
                let delay = backoff.next_delay();
                debug!(service = f.service, error = %e, retry_in = ?delay, "consul query failed");
                index = 0;
                delay
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
