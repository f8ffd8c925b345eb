//! The analysis service against a real PostgreSQL: experiments written through the config
//! service's store, synthetic exposures and events inserted directly, cycles run in-process.

mod cycle;
mod incremental;
mod results;

use std::time::{Duration, SystemTime};

use cohort_analysis::analyze::Settings;
use cohort_analysis::cycle::Analyzer;
use cohort_analysis::metrics::Metrics;
use cohort_config::domain::{Action, Kind, Op};
use cohort_config::store::{EnvRow, Store as ConfigStore};
use cohort_db::keys::Principal;
use cohort_db::testing::{Tenant, TestDb};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use uuid::Uuid;

/// A tenant with the event tables ready and a config store to write through.
pub struct World {
    pub db: TestDb,
    pub tenant: Tenant,
    pub config: ConfigStore,
    pub admin: Principal,
    pub env: EnvRow,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("db", &self.db.name).finish()
    }
}

impl World {
    pub async fn new() -> World {
        let db = TestDb::new().await;
        let tenant = db.seed_tenant("acme").await;
        let client = db.pool.get().await.unwrap();
        // The event service creates daily partitions as it drains; tests write directly.
        client
            .batch_execute(
                "CREATE TABLE exposures_any PARTITION OF exposures DEFAULT;
                 CREATE TABLE metric_events_any PARTITION OF metric_events DEFAULT;",
            )
            .await
            .unwrap();
        let admin = cohort_db::keys::verify(&client, &tenant.admin_key).await.unwrap().unwrap();
        drop(client);
        let config = ConfigStore::new(db.pool.clone());
        let env = config.environment_by_id(tenant.environment_id).await.unwrap().unwrap();
        World { db, tenant, config, admin, env }
    }

    pub async fn write(&self, op: Op) -> Value {
        let w = self
            .config
            .write(&self.admin, &self.env, op, None)
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        w.entity.map(|e| e.definition).unwrap_or(Value::Null)
    }

    pub async fn metric(
        &self,
        key: &str,
        event: &str,
        aggregation: &str,
        direction: &str,
        threshold: Option<f64>,
    ) {
        let mut m = json!({"key": key, "event": event, "aggregation": aggregation, "direction": direction});
        if let Some(t) = threshold {
            m["guardrail_threshold"] = t.into();
        }
        self.write(Op::Create { kind: Kind::Metric, definition: m }).await;
    }

    /// Creates and starts an experiment; returns its id.
    pub async fn running_experiment(&self, definition: Value) -> Uuid {
        let key = definition["key"].as_str().unwrap().to_owned();
        let created = self.write(Op::Create { kind: Kind::Experiment, definition }).await;
        self.write(Op::Transition { key, action: Action::Start, expected_revision: 1 }).await;
        Uuid::parse_str(created["id"].as_str().unwrap()).unwrap()
    }

    pub async fn status(&self, key: &str) -> String {
        let e = self.config.get_entity(self.env.id, Kind::Experiment, key).await.unwrap().unwrap();
        e.definition["status"].as_str().unwrap().to_owned()
    }

    pub fn analyzer(&self, settings: Settings) -> Analyzer {
        let store = cohort_analysis::store::Store::new(self.db.pool.clone());
        Analyzer::new(store, settings, Metrics::new(&mut prometheus_client::registry::Registry::default()))
    }

    /// Units `first..first+n` exposed to a variant drawn by `weights`, each converting on
    /// `event` with its variant's probability, half an hour after exposure an hour ago.
    #[allow(clippy::too_many_arguments)]
    pub async fn traffic(
        &self,
        experiment: Uuid,
        seed: u64,
        first: usize,
        n: usize,
        variants: &[(&str, f64, f64)],
        event: &str,
        country: bool,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let exposed_at = SystemTime::now() - Duration::from_secs(3600);
        let converted_at = SystemTime::now() - Duration::from_secs(1800);
        let (mut units, mut assigned, mut attrs, mut converters) = (vec![], vec![], vec![], vec![]);
        for i in first..first + n {
            let r: f64 = rng.random();
            let mut acc = 0.0;
            let (variant, _, p) = variants
                .iter()
                .find(|(_, w, _)| {
                    acc += w;
                    r < acc
                })
                .unwrap_or(&variants[variants.len() - 1]);
            let unit = format!("user-{i}");
            if rng.random::<f64>() < *p {
                converters.push(unit.clone());
            }
            let country = if country { ["NZ", "AU", "US"][i % 3] } else { "NZ" };
            attrs.push(json!({"country": country}));
            units.push(unit);
            assigned.push((*variant).to_owned());
        }
        let client = self.db.pool.get().await.unwrap();
        client
            .execute(
                "INSERT INTO exposures (environment_id, event_id, experiment_id, unit, variant, config_version, attributes, ts, received_at)
                 SELECT $1, gen_random_uuid(), $2, u, v, 1, a, $5, now() FROM unnest($3::text[], $4::text[], $6::jsonb[]) AS t(u, v, a)",
                &[&self.env.id, &experiment, &units, &assigned, &exposed_at, &attrs],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO metric_events (environment_id, event_id, unit, event, value, properties, ts, received_at)
                 SELECT $1, gen_random_uuid(), u, $3, NULL, '{}', $4, now() FROM unnest($2::text[]) AS t(u)",
                &[&self.env.id, &converters, &event, &converted_at],
            )
            .await
            .unwrap();
    }
}

pub fn two_arm(key: &str, primary: &[&str], guardrails: &[&str]) -> Value {
    json!({
        "key": key,
        "variants": [{"key": "control", "weight_bp": 5000, "control": true}, {"key": "treatment", "weight_bp": 5000}],
        "primary_metrics": primary,
        "guardrail_metrics": guardrails,
        "breakdown_attributes": ["country"],
        "planned_units_per_variant": 10000,
    })
}
