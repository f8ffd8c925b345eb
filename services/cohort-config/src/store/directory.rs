//! The reads behind the internal API: what Cohort's own services need of config's tables
//! (keys by hash, running experiments, enabled holdouts and analysed flag splits with their
//! metrics, experiments and holdouts by name), so that no other service reads them.

use cohort_core::model::FlagDef;
use cohort_db::keys::{self, Principal};
use uuid::Uuid;

use super::Store;
use crate::error::ServiceError;

/// A running experiment or enabled holdout: where it runs, its entity revision and its
/// definition.
#[derive(Debug, Clone)]
pub(crate) struct RunningRow {
    pub environment_id: Uuid,
    pub organization_id: Uuid,
    pub revision: i64,
    pub definition: serde_json::Value,
}

/// What the analysis service analyzes: running experiments, enabled holdouts, and the
/// metrics of the environments that have either.
#[derive(Debug, Clone, Default)]
pub(crate) struct Running {
    pub experiments: Vec<RunningRow>,
    pub holdouts: Vec<RunningRow>,
    pub metrics: Vec<(Uuid, serde_json::Value)>,
}

/// An experiment (or holdout) a name can mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundRow {
    pub environment_id: Uuid,
    pub experiment_id: Uuid,
    pub key: String,
}

impl Store {
    pub(crate) async fn verify_key_hash(&self, key_hash: &[u8]) -> Result<Option<Principal>, ServiceError> {
        let client = self.pool.get().await?;
        Ok(keys::verify_hash(&client, key_hash).await?)
    }

    /// Every running experiment and enabled holdout, and the metrics of the environments
    /// that have one.
    pub(crate) async fn running(&self) -> Result<Running, ServiceError> {
        let client = self.pool.get().await?;
        // A holdout is enabled unless it says otherwise (`enabled` defaults to true).
        let rows = client
            .query(
                "SELECT x.kind, x.environment_id, e.organization_id, x.revision, x.definition
                 FROM entities x JOIN environments e ON e.id = x.environment_id
                 WHERE (x.kind = 'experiment' AND x.definition->>'status' = 'running')
                    OR (x.kind = 'holdout' AND x.definition->'enabled' IS DISTINCT FROM 'false'::jsonb)
                    OR (x.kind = 'flag' AND x.definition ? 'experiment')",
                &[],
            )
            .await?;
        let mut running = Running::default();
        for r in &rows {
            let row = RunningRow {
                environment_id: r.get(1),
                organization_id: r.get(2),
                revision: r.get(3),
                definition: r.get(4),
            };
            match r.get::<_, &str>(0) {
                "holdout" => running.holdouts.push(row),
                // A flag's split is analysed as the experiment cohort-core derives from it.
                "flag" => {
                    let experiment = serde_json::from_value::<FlagDef>(row.definition.clone())
                        .ok()
                        .as_ref()
                        .and_then(cohort_core::flag_experiment);
                    if let Some(e) = experiment.and_then(|e| serde_json::to_value(e).ok()) {
                        running.experiments.push(RunningRow { definition: e, ..row });
                    }
                }
                _ => running.experiments.push(row),
            }
        }
        let mut environments: Vec<Uuid> =
            running.experiments.iter().chain(&running.holdouts).map(|r| r.environment_id).collect();
        environments.sort();
        environments.dedup();
        running.metrics = client
            .query(
                "SELECT environment_id, definition FROM entities
                 WHERE kind = 'metric' AND environment_id = ANY($1)",
                &[&environments],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(running)
    }

    /// The experiments and holdouts of `organization` named `experiment` (key or id) in the
    /// environment `environment` (key or id), or in any of its environments when that is
    /// empty. A holdout's results are looked up like an experiment's: by its key or its id,
    /// the experiment id of its exposures.
    pub(crate) async fn find_experiments(
        &self,
        organization: Uuid,
        environment: &str,
        experiment: &str,
    ) -> Result<Vec<FoundRow>, ServiceError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT e.id, x.id, x.key FROM environments e
                 JOIN (SELECT environment_id, key,
                              COALESCE(definition->>'id', definition->'experiment'->>'id')::uuid AS id
                       FROM entities
                       WHERE kind IN ('experiment', 'holdout')
                          OR (kind = 'flag' AND definition ? 'experiment')) x ON x.environment_id = e.id
                 WHERE e.organization_id = $1 AND ($2 = '' OR e.key = $2 OR e.id::text = $2)
                   AND (x.key = $3 OR x.id::text = $3)
                 ORDER BY e.key",
                &[&organization, &environment, &experiment],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| FoundRow { environment_id: r.get(0), experiment_id: r.get(1), key: r.get(2) })
            .collect())
    }
}
