//! Config propagation: commit-to-acknowledgment latencies per environment version.
//!
//! Each replica collects the acknowledgments of its own streams in memory and writes them,
//! with its stream counts, to PostgreSQL a few times a second; `GetPropagation` merges every
//! replica's rows, so the answer covers all SDKs wherever they are connected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_proto::config::v1 as pb;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

use crate::error::ServiceError;
use crate::hub::Hub;
use crate::store::Store;

/// Versions per environment kept in memory; older ones are final in the database.
const VERSIONS_KEPT: usize = 32;

#[derive(Debug, Default)]
struct Acks {
    latencies: HashMap<Uuid, BTreeMap<u64, Vec<f32>>>,
    dirty: HashSet<(Uuid, u64)>,
}

#[derive(Debug)]
pub(crate) struct Propagation {
    replica: Uuid,
    store: Store,
    acks: Mutex<Acks>,
    /// One flush at a time: each writes a version's whole list of latencies, and a list taken
    /// earlier must not land after a longer one taken later (the periodic flush and
    /// `GetPropagation`'s would otherwise race, and a version could stay short of its acks).
    flushing: tokio::sync::Mutex<()>,
}

impl Propagation {
    pub(crate) fn new(replica: Uuid, store: Store) -> Self {
        Propagation {
            replica,
            store,
            acks: Mutex::new(Acks::default()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn record(&self, env: Uuid, version: u64, latency_ms: f32) {
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        let versions = acks.latencies.entry(env).or_default();
        versions.entry(version).or_default().push(latency_ms);
        while versions.len() > VERSIONS_KEPT {
            versions.pop_first();
        }
        acks.dirty.insert((env, version));
    }

    /// Writes what changed since the last flush, and this replica's stream counts.
    pub(crate) async fn flush(&self, hub: &Hub) -> Result<(), ServiceError> {
        let _one = self.flushing.lock().await;
        let batch: Vec<(Uuid, u64, Vec<f32>)> = {
            let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
            let dirty = std::mem::take(&mut acks.dirty);
            dirty
                .into_iter()
                .filter_map(|(env, v)| acks.latencies.get(&env)?.get(&v).map(|l| (env, v, l.clone())))
                .collect()
        };
        for (env, version, latencies) in &batch {
            if let Err(e) = self.store.record_propagation(self.replica, *env, *version, latencies).await {
                // Put it back so the next flush retries.
                let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
                acks.dirty.insert((*env, *version));
                return Err(e);
            }
        }
        self.store.record_connected(self.replica, &hub.stream_counts()).await
    }

    pub(crate) async fn run(self: Arc<Self>, hub: Arc<Hub>, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        let mut prune = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = self.flush(&hub).await;
                    return;
                }
                _ = tick.tick() => {
                    if let Err(e) = self.flush(&hub).await {
                        warn!(error = %e, "could not record propagation");
                    }
                }
                _ = prune.tick() => {
                    if let Err(e) = self.store.prune_propagation().await {
                        warn!(error = %e, "could not prune propagation records");
                    }
                }
            }
        }
    }

    /// Every replica's view of one version, merged.
    pub(crate) async fn get(
        &self,
        hub: &Hub,
        env: Uuid,
        version: u64,
    ) -> Result<pb::GetPropagationResponse, ServiceError> {
        self.flush(hub).await?;
        let (mut latencies, connected) = self.store.propagation(env, version).await?;
        latencies.sort_by(f32::total_cmp);
        Ok(pb::GetPropagationResponse {
            version,
            connected: connected.clamp(0, i64::from(u32::MAX)) as u32,
            acknowledged: latencies.len() as u32,
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            max_ms: latencies.last().copied().map_or(0.0, f64::from),
        })
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub(crate) fn percentile(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    f64::from(sorted[rank.min(sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
