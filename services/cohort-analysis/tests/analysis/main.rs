//! The analysis service against a real PostgreSQL: the config service run by the shared test
//! stack (cohort-dev's `TestCluster`), experiments written through its gRPC API, synthetic
//! exposures and events inserted directly into the event service's read model, cycles run
//! in-process.

mod cycle;
mod holdouts;
mod incremental;
mod metrics;
mod results;
mod settings;
mod tenancy;

use std::time::{Duration, SystemTime};

use cohort_analysis::analyze::Settings;
use cohort_analysis::config::ConfigClient;
use cohort_analysis::cycle::Analyzer;
use cohort_analysis::metrics::Metrics;
use cohort_analysis::store::ExperimentRef;
use cohort_db::testing::{Tenant, TestDb};
use cohort_dev::stack::{Addrs, Service};
use cohort_dev::testing::{TestCluster, authed};
use cohort_proto::config::v1 as cpb;
use cohort_proto::config::v1::batch_operation::Operation;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
pub use cohort_proto::config::v1::{EntityKind as Kind, ExperimentAction as Action};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tonic::transport::Channel;
use uuid::Uuid;

/// A write of `definition`, a new entity of `kind`.
pub fn create(kind: Kind, definition: Value) -> Operation {
    Operation::Create(cpb::CreateOperation {
        kind: kind as i32,
        definition: cohort_proto::convert::structured::json_struct(&definition),
        reason: String::new(),
    })
}

/// A lifecycle move of experiment `key`, read at `expected_revision`.
pub fn transition(key: &str, action: Action, expected_revision: i64) -> Operation {
    Operation::Transition(cpb::TransitionOperation {
        key: key.to_owned(),
        action: action as i32,
        expected_revision,
        reason: String::new(),
    })
}

/// A tenant with the event tables ready, on a cluster running the config service (which
/// analysis reads from with its service key); config is written through the config service's
/// API with the tenant's admin key.
#[derive(Debug)]
pub struct World {
    pub cluster: TestCluster,
    pub tenant: Tenant,
    config: ConfigServiceClient<Channel>,
}

impl World {
    pub async fn new() -> World {
        let cluster = TestCluster::with(&[Service::Config]).await;
        let tenant = cluster.seed_organization("acme").await;
        // The event service creates daily partitions as it drains; tests write directly.
        cluster
            .db()
            .pool
            .get()
            .await
            .unwrap()
            .batch_execute(
                "CREATE TABLE exposures_any PARTITION OF exposures DEFAULT;
                 CREATE TABLE metric_events_any PARTITION OF metric_events DEFAULT;",
            )
            .await
            .unwrap();
        let config = cluster.config().await;
        World { cluster, tenant, config }
    }

    /// The cluster's database.
    pub fn db(&self) -> &TestDb {
        self.cluster.db()
    }

    /// `operations` as one batch in `tenant`'s environment, with its admin key: each
    /// operation's entity definition afterwards (null after a delete).
    async fn apply(&self, tenant: &Tenant, operations: Vec<Operation>) -> Vec<Value> {
        let request = cpb::ApplyBatchRequest {
            environment: tenant.environment_id.to_string(),
            operations: operations.into_iter().map(|o| cpb::BatchOperation { operation: Some(o) }).collect(),
        };
        let response = self
            .config
            .clone()
            .apply_batch(authed(&tenant.admin_key, request))
            .await
            .unwrap_or_else(|e| panic!("write: {e}"))
            .into_inner();
        response
            .results
            .into_iter()
            .map(|r| {
                r.entity.map_or(Value::Null, |e| {
                    cohort_proto::convert::structured::to_json(e.definition.as_ref()).unwrap()
                })
            })
            .collect()
    }

    /// Writes as this world's admin; the entity's definition afterwards.
    pub async fn write(&self, op: Operation) -> Value {
        self.apply(&self.tenant, vec![op]).await.remove(0)
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
        self.write(create(Kind::Metric, m)).await;
    }

    /// Creates and starts an experiment; returns its id.
    pub async fn running_experiment(&self, definition: Value) -> Uuid {
        self.running_experiment_in(&self.tenant, definition).await
    }

    /// Creates and starts an experiment in `tenant`'s environment (as two operations of one
    /// batch); returns its id.
    pub async fn running_experiment_in(&self, tenant: &Tenant, definition: Value) -> Uuid {
        let key = definition["key"].as_str().unwrap().to_owned();
        let written = self
            .apply(tenant, vec![create(Kind::Experiment, definition), transition(&key, Action::Start, 1)])
            .await;
        Uuid::parse_str(written[0]["id"].as_str().unwrap()).unwrap()
    }

    /// An experiment of this world's environment, as analysis keys it.
    pub fn exp(&self, experiment_id: Uuid) -> ExperimentRef {
        ExperimentRef { environment_id: self.tenant.environment_id, experiment_id }
    }

    /// Experiment `key`'s status, as the config service reports it.
    pub async fn status(&self, key: &str) -> String {
        let request = cpb::GetEntityRequest {
            environment: self.tenant.environment_id.to_string(),
            kind: Kind::Experiment as i32,
            key: key.to_owned(),
        };
        let e = self.config.clone().get_entity(authed(&self.tenant.admin_key, request)).await.unwrap();
        let definition: Value = cohort_proto::convert::structured::to_json(
            e.into_inner().entity.and_then(|e| e.definition).as_ref(),
        )
        .unwrap();
        definition["status"].as_str().unwrap().to_owned()
    }

    /// The config service's audit entries for experiment `key` (its first page, newest first).
    pub async fn audit(&self, key: &str) -> Vec<cpb::AuditEntry> {
        let request = cpb::ListAuditRequest {
            environment: self.tenant.environment_id.to_string(),
            kind: Kind::Experiment as i32,
            key: key.to_owned(),
            ..Default::default()
        };
        let audit = self.config.clone().list_audit(authed(&self.tenant.admin_key, request)).await.unwrap();
        audit.into_inner().entries
    }

    /// A client of the config service with analysis's service key, as the service has.
    pub fn config_client(&self) -> ConfigClient {
        ConfigClient::new(
            &self.cluster.config_url(),
            &self.cluster.service_key(Service::Analysis),
            &Default::default(),
        )
        .unwrap()
    }

    pub fn analyzer(&self, settings: Settings) -> Analyzer {
        self.analyzer_in(settings, &mut prometheus_client::registry::Registry::default())
    }

    /// An analyzer whose metrics are registered in `registry`.
    pub fn analyzer_in(
        &self,
        settings: Settings,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Analyzer {
        let store = cohort_analysis::store::Store::new(self.db().pool.clone());
        Analyzer::new(store, self.config_client(), settings, Metrics::new(registry))
    }

    /// Another organization on the same installation.
    pub async fn other_organization(&self, name: &str) -> Org {
        Org { tenant: self.cluster.seed_organization(name).await }
    }

    /// Writes as `org`'s admin into its environment.
    pub async fn write_as(&self, org: &Org, op: Operation) -> Value {
        self.apply(&org.tenant, vec![op]).await.remove(0)
    }

    /// Starts the analysis service in the cluster, its cycles an hour apart (tests run them
    /// themselves); where it listens.
    pub async fn start_analysis(&mut self) -> Addrs {
        self.cluster.add(Service::Analysis, &[("--interval", "1h")]).await
    }

    /// Stops the analysis service gracefully; panics when it does not stop cleanly.
    pub async fn stop_analysis(&mut self) {
        self.cluster.stop_service(Service::Analysis).await;
    }

    /// [`World::traffic_in`] this world's environment.
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
        self.traffic_in(self.tenant.environment_id, experiment, seed, first, n, variants, event, country)
            .await
    }

    /// Units `first..first+n` exposed to a variant drawn by `weights`, each converting on
    /// `event` with its variant's probability, half an hour after exposure an hour ago; all
    /// stored under `environment` (as the events service stores what that environment's SDK
    /// key sends, whatever experiment id it names).
    #[allow(clippy::too_many_arguments)]
    pub async fn traffic_in(
        &self,
        environment: Uuid,
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
        let client = self.db().pool.get().await.unwrap();
        client
            .execute(
                "INSERT INTO exposures (environment_id, event_id, experiment_id, unit, variant, config_version, attributes, ts, received_at)
                 SELECT $1, gen_random_uuid(), $2, u, v, 1, a, $5, now() FROM unnest($3::text[], $4::text[], $6::jsonb[]) AS t(u, v, a)",
                &[&environment, &experiment, &units, &assigned, &exposed_at, &attrs],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO metric_events (environment_id, event_id, unit, event, value, properties, ts, received_at)
                 SELECT $1, gen_random_uuid(), u, $3, NULL, '{}', $4, now() FROM unnest($2::text[]) AS t(u)",
                &[&environment, &converters, &event, &converted_at],
            )
            .await
            .unwrap();
    }
}

/// A readiness condition of its own, for a leader under test.
pub fn condition() -> cohort_runtime::Condition {
    let (reporter, _) = tonic_health::server::health_reporter();
    cohort_runtime::Readiness::new(reporter, &[]).condition("analysis cycles")
}

/// A second organization.
#[derive(Debug)]
pub struct Org {
    pub tenant: Tenant,
}

impl Org {
    pub fn exp(&self, experiment_id: Uuid) -> ExperimentRef {
        ExperimentRef { environment_id: self.tenant.environment_id, experiment_id }
    }
}

/// `GET path` over HTTP/1.1 with an `authorization` header value: the status and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str, authorization: &str) -> (u16, String) {
    let response = cohort_dev::testing::http::get(addr, path, &[("authorization", authorization)]).await;
    (response.status, response.body)
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
