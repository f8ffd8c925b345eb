//! The analysis service against a real PostgreSQL: experiments written through the config
//! service's store, synthetic exposures and events inserted directly, cycles run in-process.

mod cycle;
mod incremental;
mod results;
mod settings;
mod tenancy;

use std::time::{Duration, SystemTime};

use cohort_analysis::analyze::Settings;
use cohort_analysis::config::ConfigClient;
use cohort_analysis::cycle::Analyzer;
use cohort_analysis::metrics::Metrics;
use cohort_analysis::store::ExperimentRef;
use cohort_config::domain::{Action, Kind, Op};
use cohort_config::store::{EnvRow, Store as ConfigStore};
use cohort_db::keys::Principal;
use cohort_db::testing::{Tenant, TestDb};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use uuid::Uuid;

/// The config service in-process, which analysis reads over gRPC with its service key.
#[derive(Debug)]
pub struct ConfigService {
    pub url: String,
    pub service_key: String,
    shutdown: cohort_runtime::Shutdown,
}

impl ConfigService {
    pub async fn start(database_url: &str) -> ConfigService {
        let key = cohort_db::keys::generate(cohort_db::keys::KeyKind::Service);
        let hashes = format!("cohort-analysis={}", hex::encode(&key.hash));
        let settings = <cohort_config::settings::Cli as clap::Parser>::try_parse_from([
            "cohort-config",
            "--database-url",
            database_url,
            "--service-keys",
            &hashes,
            "--shutdown-grace",
            "1s",
        ])
        .unwrap()
        .serve;
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", grpc.local_addr().unwrap());
        let shutdown = cohort_runtime::Shutdown::new();
        let listeners = cohort_config::Listeners { grpc, http, admin: None };
        tokio::spawn(cohort_config::run(settings, listeners, shutdown.clone()));
        ConfigService { url, service_key: key.secret, shutdown }
    }

    pub fn client(&self) -> ConfigClient {
        ConfigClient::new(&self.url, &self.service_key).unwrap()
    }
}

impl Drop for ConfigService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A tenant with the event tables ready, a config store to write through, and the config
/// service analysis reads from.
pub struct World {
    pub config_service: ConfigService,
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
        let config_service = ConfigService::start(&db.url).await;
        World { config_service, db, tenant, config, admin, env }
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

    /// An experiment of this world's environment, as analysis keys it.
    pub fn exp(&self, experiment_id: Uuid) -> ExperimentRef {
        ExperimentRef { environment_id: self.env.id, experiment_id }
    }

    pub async fn status(&self, key: &str) -> String {
        let e = self.config.get_entity(self.env.id, Kind::Experiment, key).await.unwrap().unwrap();
        e.definition["status"].as_str().unwrap().to_owned()
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
        let store = cohort_analysis::store::Store::new(self.db.pool.clone());
        Analyzer::new(store, self.config_service.client(), settings, Metrics::new(registry))
    }

    /// Another organization in the same database, written through the same config store.
    pub async fn other_organization(&self, name: &str) -> Org {
        let tenant = self.db.seed_tenant(name).await;
        let client = self.db.pool.get().await.unwrap();
        let admin = cohort_db::keys::verify(&client, &tenant.admin_key).await.unwrap().unwrap();
        let env = self.config.environment_by_id(tenant.environment_id).await.unwrap().unwrap();
        Org { tenant, admin, env }
    }

    /// Writes as `org`'s admin into its environment.
    pub async fn write_as(&self, org: &Org, op: Op) -> Value {
        let w =
            self.config.write(&org.admin, &org.env, op, None).await.unwrap_or_else(|e| panic!("write: {e}"));
        w.entity.map(|e| e.definition).unwrap_or(Value::Null)
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
        self.traffic_in(self.env.id, experiment, seed, first, n, variants, event, country).await
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
        let client = self.db.pool.get().await.unwrap();
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

/// A second organization: its tenant, admin principal and environment.
#[derive(Debug)]
pub struct Org {
    pub tenant: Tenant,
    pub admin: Principal,
    pub env: EnvRow,
}

impl Org {
    pub fn exp(&self, experiment_id: Uuid) -> ExperimentRef {
        ExperimentRef { environment_id: self.env.id, experiment_id }
    }
}

/// The analysis service's `run` on loopback ports against a world's database (its cycles an
/// hour apart: tests run them themselves).
#[derive(Debug)]
pub struct Server {
    pub grpc: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    shutdown: cohort_runtime::Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub async fn start(w: &World) -> Server {
        let settings = <cohort_analysis::settings::Cli as clap::Parser>::try_parse_from([
            "cohort-analysis",
            "--database-url",
            &w.db.url,
            "--interval",
            "1h",
            "--config-endpoint",
            &w.config_service.url,
            "--service-key",
            &w.config_service.service_key,
        ])
        .unwrap()
        .settings;
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let shutdown = cohort_runtime::Shutdown::new();
        let listeners = cohort_analysis::Listeners { grpc, http, admin: None };
        let task = tokio::spawn(cohort_analysis::run(settings, listeners, shutdown.clone()));
        Server { grpc: grpc_addr, http: http_addr, shutdown, task }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// `GET path` over HTTP/1.1 with an `authorization` header value: the status and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str, authorization: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
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
