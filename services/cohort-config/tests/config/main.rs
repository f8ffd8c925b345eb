//! The config service against a real PostgreSQL: a fresh database per test, servers started
//! in-process on pre-bound 127.0.0.1:0 listeners.

mod api;
mod batch;
mod client_keys;
mod flagd;
mod holdouts;
mod isolation;
mod malformed;
mod metrics;
mod readiness;
mod revocation;
mod scopes;
mod settings;
mod stream;

use std::net::SocketAddr;

use cohort_dev::stack::{Instance, Ports, Service};
use cohort_proto::config::v1 as pb;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use tonic::transport::Channel;

/// One running config-service replica (several may share a database), started by the same
/// code as every other service in tests and `make dev`.
#[derive(Debug)]
pub struct Server {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: SocketAddr,
    instance: Instance,
}

impl Server {
    pub async fn start(database_url: &str) -> Server {
        Server::start_with(database_url, &[]).await
    }

    /// A replica with more flags; a flag in `extra` replaces the test default of that name.
    pub async fn start_with(database_url: &str, extra: &[&str]) -> Server {
        let mut flags = vec![("--database-url", database_url)];
        for (flag, value) in
            [("--heartbeat-interval", "500ms"), ("--poll-interval", "1s"), ("--shutdown-grace", "5s")]
        {
            if !extra.contains(&flag) {
                flags.push((flag, value));
            }
        }
        let mut extra = extra.iter().copied().peekable();
        while let Some(flag) = extra.next() {
            let value = extra.next_if(|v| !v.starts_with("--")).unwrap_or("");
            flags.push((flag, value));
        }
        let instance = Instance::start(Service::Config, &flags, Ports::Any)
            .await
            .unwrap_or_else(|e| panic!("starting the config service: {e}"));
        let addrs = instance.addrs();
        Server { grpc: addrs.grpc, http: addrs.http, admin: addrs.admin, instance }
    }

    pub async fn client(&self) -> ConfigServiceClient<Channel> {
        // The listener is bound before `run` starts, so connecting cannot race the server.
        ConfigServiceClient::connect(format!("http://{}", self.grpc)).await.expect("connect")
    }

    pub async fn stop(self) {
        self.instance.stop().await.unwrap_or_else(|e| panic!("server ran cleanly: {e}"));
    }
}

pub use cohort_dev::testing::authed;

pub fn flag_json(key: &str, on: bool) -> String {
    serde_json::json!({
        "key": key, "type": "boolean", "salt": format!("{key}-salt"),
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off", "default": {"variation": if on { "on" } else { "off" }},
    })
    .to_string()
}

pub fn experiment_json(key: &str) -> String {
    serde_json::json!({
        "key": key,
        "variants": [
            {"key": "control", "weight_bp": 5000, "control": true},
            {"key": "treatment", "weight_bp": 5000},
        ],
    })
    .to_string()
}

pub async fn create(
    client: &mut ConfigServiceClient<Channel>,
    key: &str,
    env: &str,
    kind: pb::EntityKind,
    json: String,
) -> pb::CreateEntityResponse {
    client
        .create_entity(authed(
            key,
            pb::CreateEntityRequest {
                environment: env.into(),
                kind: kind as i32,
                definition: cohort_proto::convert::structured::text_struct(&json),
                reason: String::new(),
            },
        ))
        .await
        .expect("create entity")
        .into_inner()
}

/// `GET path`: status, headers (lowercase names) and body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let r = cohort_dev::testing::http::get(addr, path, headers).await;
    (r.status, r.headers, r.body)
}

/// What `FindExperiments` answers for `name` in `organization`'s production environment:
/// (key, experiment id) pairs.
pub async fn find_experiments(
    internal: &mut pb::internal_service_client::InternalServiceClient<Channel>,
    service_secret: &str,
    organization: uuid::Uuid,
    name: &str,
) -> Vec<(String, String)> {
    let request = pb::FindExperimentsRequest {
        organization_id: organization.to_string(),
        environment: "production".into(),
        experiment: name.into(),
    };
    let found = internal.find_experiments(authed(service_secret, request)).await.unwrap().into_inner();
    found.experiments.into_iter().map(|f| (f.key, f.experiment_id)).collect()
}
