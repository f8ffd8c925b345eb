//! Balanced tonic channels whose endpoints follow Consul's healthy instances of a service
//! (blocking queries), or a fixed list of endpoints.

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_backoff::{Backoff, BackoffPolicy};
use cohort_transport::{ClientTls, LoadedTls};
use tokio_util::sync::CancellationToken;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::DiscoveryError;
use crate::consul::{ConsulClient, Instance};

/// Where a service's instances are found.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// Fixed endpoints (`http://host:port`), e.g. a Kubernetes Service name.
    Static(Vec<String>),
    /// The passing instances of a Consul service.
    Consul { client: Box<ConsulClient>, service: String },
}

/// How long one blocking query may wait (Consul adds a little jitter itself).
const WAIT: Duration = Duration::from_secs(30);

fn endpoint(uri: &str, tls: &LoadedTls, connect_timeout: Duration) -> Result<Endpoint, DiscoveryError> {
    cohort_transport::endpoint(uri, tls)
        .map(|e| e.connect_timeout(connect_timeout))
        .map_err(|e| DiscoveryError::Endpoint(uri.into(), e.to_string()))
}

/// A channel that balances over the upstream's instances and follows changes until
/// `shutdown`. Requests wait (up to their own deadline) while no instance is known.
///
/// `tls` applies to `https://` endpoints; a Consul instance registered as serving TLS is
/// reached with `https`, its certificate checked for the service's name unless `tls` names
/// another.
pub fn balanced_channel(
    upstream: Upstream,
    tls: &ClientTls,
    connect_timeout: Duration,
    shutdown: CancellationToken,
) -> Result<Channel, DiscoveryError> {
    match upstream {
        Upstream::Static(uris) => {
            let tls = load(tls)?;
            let endpoints =
                uris.iter().map(|u| endpoint(u, &tls, connect_timeout)).collect::<Result<Vec<_>, _>>()?;
            Ok(Channel::balance_list(endpoints.into_iter()))
        }
        Upstream::Consul { client, service } => {
            let named = ClientTls {
                server_name: tls.server_name.clone().or_else(|| Some(service.clone())),
                ..tls.clone()
            };
            let tls = load(&named)?;
            let (channel, tx) = Channel::balance_channel(64);
            tokio::spawn(follow(*client, service, tls, connect_timeout, tx, shutdown));
            Ok(channel)
        }
    }
}

fn load(tls: &ClientTls) -> Result<LoadedTls, DiscoveryError> {
    tls.load().map_err(|e| DiscoveryError::Tls(e.to_string()))
}

async fn follow(
    client: ConsulClient,
    service: String,
    tls: LoadedTls,
    connect_timeout: Duration,
    tx: tokio::sync::mpsc::Sender<Change<String, Endpoint>>,
    shutdown: CancellationToken,
) {
    let mut index = 0u64;
    let mut current: BTreeMap<String, Instance> = BTreeMap::new();
    let mut backoff =
        Backoff::new(BackoffPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(10) });
    loop {
        let query = client.healthy(&service, index, WAIT);
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = query => r,
        };
        match result {
            Ok((instances, new_index)) => {
                backoff.reset();
                // Consul's rules for blocking queries: an index that goes backwards resets
                // the wait; an index of 0 is never used to block.
                index = if new_index < index { 0 } else { new_index.max(1) };
                let next: BTreeMap<String, Instance> =
                    instances.into_iter().map(|i| (i.id.clone(), i)).collect();
                for (id, old) in &current {
                    if next.get(id) != Some(old) && tx.send(Change::Remove(id.clone())).await.is_err() {
                        return;
                    }
                }
                for (id, instance) in &next {
                    if current.get(id) == Some(instance) {
                        continue;
                    }
                    match endpoint(&instance.uri(), &tls, connect_timeout) {
                        Ok(e) => {
                            if tx.send(Change::Insert(id.clone(), e)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => warn!(service, error = %e, "ignoring an instance with a bad address"),
                    }
                }
                if next != current {
                    info!(service, instances = next.len(), "service membership changed");
                }
                current = next;
                // Blocking queries can return early without a change; do not spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                debug!(service, error = %e, retry_in = ?delay, "consul query failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                index = 0;
            }
        }
    }
}
