//! The evaluation service end to end: a real config service on a fresh PostgreSQL database,
//! an in-test event service that records what it receives, and the evaluation service, all
//! in-process on pre-bound 127.0.0.1:0 listeners.

mod behaviour;
mod browser;
mod conformance;
mod flagd;
mod http;
mod limits;
mod malformed;
mod metrics;
mod ofrep;
mod openfeature;
mod readiness;
mod revocation;
mod settings;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_db::testing::Tenant;
use cohort_dev::stack::Service;
use cohort_dev::testing::TestCluster;
use cohort_proto::config::v1 as cpb;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use cohort_proto::evaluation::v1::evaluation_service_client::EvaluationServiceClient;
use cohort_proto::events::v1 as epb;
use cohort_proto::events::v1::event_service_server::{EventService, EventServiceServer};
use cohort_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// How long a test waits for anything before failing.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub use cohort_dev::testing::authed;

/// An event service that stores every event it is sent.
#[derive(Debug, Clone, Default)]
pub struct FakeEvents {
    pub events: Arc<Mutex<Vec<epb::Event>>>,
}

#[tonic::async_trait]
impl EventService for FakeEvents {
    async fn send_batch(
        &self,
        request: Request<epb::SendBatchRequest>,
    ) -> Result<Response<epb::SendBatchResponse>, Status> {
        if request.metadata().get("authorization").is_none() {
            return Err(Status::unauthenticated("no key"));
        }
        let events = request.into_inner().events;
        let accepted = events.len() as u32;
        self.events.lock().unwrap().extend(events);
        Ok(Response::new(epb::SendBatchResponse { accepted, rejected: Vec::new() }))
    }

    async fn stream_batches(
        &self,
        _: Request<Streaming<epb::StreamBatchesRequest>>,
    ) -> Result<Response<epb::StreamBatchesResponse>, Status> {
        Err(Status::unimplemented("stream_batches"))
    }
}

/// PostgreSQL and the config service (from the shared test cluster), a fake event service and
/// the evaluation service.
#[derive(Debug)]
pub struct Stack {
    pub tenant: Tenant,
    pub config_addr: SocketAddr,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub events: FakeEvents,
    events_server: (Shutdown, JoinHandle<Result<(), tonic::transport::Error>>),
    cluster: TestCluster,
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(&[]).await
    }

    /// Starts everything; `extra` are more evaluation-service flags, each with a value.
    pub async fn start_with(extra: &[&str]) -> Stack {
        let mut cluster = TestCluster::empty().await;
        let tenant = cluster.db().seed_tenant("acme").await;
        let config = cluster
            .add(
                Service::Config,
                &[("--heartbeat-interval", "500ms"), ("--poll-interval", "1s"), ("--shutdown-grace", "5s")],
            )
            .await;

        let events = FakeEvents::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let events_url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let server = tonic::transport::Server::builder()
            .add_service(EventServiceServer::new(events.clone()))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                async move { stop.cancelled().await },
            );
        let events_server = (shutdown, tokio::spawn(server));

        let mut flags = vec![("--events-endpoint", events_url.as_str()), ("--shutdown-grace", "10s")];
        flags.extend(extra.chunks(2).map(|pair| (pair[0], pair[1])));
        let evaluation = cluster.add(Service::Evaluation, &flags).await;
        Stack {
            tenant,
            config_addr: config.grpc,
            grpc: evaluation.grpc,
            http: evaluation.http,
            admin: evaluation.admin,
            events,
            events_server,
            cluster,
        }
    }

    pub async fn config_client(&self) -> ConfigServiceClient<Channel> {
        ConfigServiceClient::connect(format!("http://{}", self.config_addr)).await.expect("connect config")
    }

    pub async fn client(&self) -> EvaluationServiceClient<Channel> {
        EvaluationServiceClient::connect(format!("http://{}", self.grpc)).await.expect("connect evaluation")
    }

    /// A new environment with its own SDK key; returns the key's secret.
    pub async fn environment(&self, key: &str) -> String {
        let mut c = self.config_client().await;
        let admin = &self.tenant.admin_key;
        c.create_environment(authed(
            admin,
            cpb::CreateEnvironmentRequest { key: key.into(), name: key.into(), ..Default::default() },
        ))
        .await
        .expect("create environment");
        c.create_api_key(authed(
            admin,
            cpb::CreateApiKeyRequest {
                kind: cpb::KeyKind::Sdk as i32,
                name: format!("{key} sdk"),
                environment: key.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create sdk key")
        .into_inner()
        .secret
    }

    /// A new client-side key (browsers) for environment `env`; returns its secret.
    pub async fn client_key(&self, env: &str) -> String {
        let request = cpb::CreateApiKeyRequest {
            kind: cpb::KeyKind::Client as i32,
            name: format!("{env} web"),
            environment: env.into(),
            ..Default::default()
        };
        let mut c = self.config_client().await;
        c.create_api_key(authed(&self.tenant.admin_key, request))
            .await
            .expect("create client key")
            .into_inner()
            .secret
    }

    /// Sets the browser origins allowed to use environment `env`'s keys.
    pub async fn allow_origins(&self, env: &str, origins: &[&str]) {
        let request = cpb::UpdateEnvironmentRequest {
            environment: env.into(),
            name: None,
            cors_origins: Some(cpb::CorsOrigins {
                origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            }),
        };
        let mut c = self.config_client().await;
        c.update_environment(authed(&self.tenant.admin_key, request)).await.expect("update environment");
    }

    /// Creates an entity; returns its revision and the environment version.
    pub async fn create(&self, env: &str, kind: cpb::EntityKind, json: String) -> (i64, u64) {
        let mut c = self.config_client().await;
        let w = c
            .create_entity(authed(
                &self.tenant.admin_key,
                cpb::CreateEntityRequest {
                    environment: env.into(),
                    kind: kind as i32,
                    definition: cohort_proto::convert::structured::text_struct(&json),
                    reason: String::new(),
                },
            ))
            .await
            .unwrap_or_else(|e| panic!("create {json}: {e:?}"))
            .into_inner();
        (w.entity.map_or(0, |e| e.revision), w.version)
    }

    /// Moves an experiment through its lifecycle; returns the new revision and version.
    pub async fn transition(
        &self,
        env: &str,
        key: &str,
        action: cpb::ExperimentAction,
        revision: i64,
    ) -> (i64, u64) {
        let mut c = self.config_client().await;
        let w = c
            .transition_experiment(authed(
                &self.tenant.admin_key,
                cpb::TransitionExperimentRequest {
                    environment: env.into(),
                    key: key.into(),
                    action: action as i32,
                    expected_revision: revision,
                    reason: "test".into(),
                },
            ))
            .await
            .unwrap_or_else(|e| panic!("transition {key}: {e:?}"))
            .into_inner();
        (w.entity.map_or(0, |e| e.revision), w.version)
    }

    /// The admin server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        http_request(self.admin, "GET", "/metrics", &[], "").await.2
    }

    /// Kills the config service, as a crash would.
    pub async fn kill_config_service(&mut self) {
        self.cluster.kill(Service::Config).await;
    }

    /// Stops the evaluation service first (its clients flush to the others), then the rest.
    pub async fn stop(self) {
        let Stack { cluster, events_server: (shutdown, task), .. } = self;
        let mut cluster = cluster;
        cluster.stop_service(Service::Evaluation).await;
        shutdown.cancel();
        task.await.expect("event server task").expect("event server ran cleanly");
        cluster.stop().await;
    }
}

/// A flag that serves `on` to everyone when `on`, else `off`.
pub fn flag_json(key: &str, on: bool) -> String {
    serde_json::json!({
        "key": key, "type": "boolean", "salt": format!("{key}-salt"),
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off", "default": {"variation": if on { "on" } else { "off" }},
    })
    .to_string()
}

/// One HTTP/1.1 request: status, headers (lowercase names) and body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let r = cohort_dev::testing::http::request(addr, method, path, headers, body).await;
    (r.status, r.headers, r.body)
}

/// The value of header `name` (lowercase), if present.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// An evaluation service of its own, in this process, with `settings` (validated); its gRPC
/// address, what stops it, and its task.
pub async fn in_process(
    settings: cohort_evaluation::Settings,
) -> (SocketAddr, Shutdown, JoinHandle<anyhow::Result<()>>) {
    settings.validate().unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(cohort_evaluation::run(
        settings,
        cohort_evaluation::Listeners { grpc, http, admin: None },
        shutdown.clone(),
    ));
    (addr, shutdown, task)
}
