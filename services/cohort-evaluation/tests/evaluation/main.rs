//! The evaluation service end to end: a real config service on a fresh PostgreSQL database,
//! an in-test event service that records what it receives, and the evaluation service, all
//! in-process on pre-bound 127.0.0.1:0 listeners.

mod behaviour;
mod conformance;
mod http;
mod malformed;
mod readiness;
mod revocation;
mod settings;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use cohort_db::testing::{Tenant, TestDb};
use cohort_evaluation::{Listeners, Settings};
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

/// A request carrying `authorization: Bearer <key>`.
pub fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

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
        _: Request<Streaming<epb::SendBatchRequest>>,
    ) -> Result<Response<epb::StreamBatchesResponse>, Status> {
        Err(Status::unimplemented("stream_batches"))
    }
}

/// A server task and how to stop it.
#[derive(Debug)]
struct Running {
    shutdown: Shutdown,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("server task").expect("server ran cleanly");
    }
}

/// PostgreSQL, the config service, a fake event service and the evaluation service.
#[derive(Debug)]
pub struct Stack {
    pub tenant: Tenant,
    pub config_addr: SocketAddr,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub events: FakeEvents,
    config: Running,
    evaluation: Running,
    events_server: Running,
    // Dropped last: the database outlives the servers using it.
    _db: TestDb,
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(&[]).await
    }

    /// Starts everything; `extra` are more evaluation-service flags.
    pub async fn start_with(extra: &[&str]) -> Stack {
        let db = TestDb::new().await;
        let tenant = db.seed_tenant("acme").await;

        let settings = cohort_config::settings::Cli::try_parse_from([
            "cohort-config",
            "--database-url",
            &db.url,
            "--heartbeat-interval",
            "500ms",
            "--poll-interval",
            "1s",
            "--shutdown-grace",
            "5s",
        ])
        .expect("config settings parse")
        .serve;
        settings.validate().expect("config settings are valid");
        let (grpc, http) = (bind().await, bind().await);
        let config_addr = grpc.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(cohort_config::run(
            settings,
            cohort_config::Listeners { grpc, http, admin: None },
            shutdown.clone(),
        ));
        let config = Running { shutdown, task };

        let events = FakeEvents::default();
        let listener = bind().await;
        let events_addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let server = tonic::transport::Server::builder()
            .add_service(EventServiceServer::new(events.clone()))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                async move { stop.cancelled().await },
            );
        let task = tokio::spawn(async move { server.await.map_err(anyhow::Error::from) });
        let events_server = Running { shutdown, task };

        let config_url = format!("http://{config_addr}");
        let events_url = format!("http://{events_addr}");
        let mut args = vec![
            "cohort-evaluation",
            "--config-endpoint",
            &config_url,
            "--events-endpoint",
            &events_url,
            "--init-timeout",
            "5s",
            "--request-timeout",
            "10s",
            "--shutdown-grace",
            "10s",
        ];
        args.extend_from_slice(extra);
        let settings = Settings::try_parse_from(args).expect("evaluation settings parse");
        settings.validate().expect("evaluation settings are valid");
        let (grpc, http, admin) = (bind().await, bind().await, bind().await);
        let (grpc_addr, http_addr, admin_addr) =
            (grpc.local_addr().unwrap(), http.local_addr().unwrap(), admin.local_addr().unwrap());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(cohort_evaluation::run(
            settings,
            Listeners { grpc, http, admin: Some(admin) },
            shutdown.clone(),
        ));
        let evaluation = Running { shutdown, task };
        Stack {
            tenant,
            config_addr,
            grpc: grpc_addr,
            http: http_addr,
            admin: admin_addr,
            events,
            config,
            evaluation,
            events_server,
            _db: db,
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
            cpb::CreateEnvironmentRequest { key: key.into(), name: key.into() },
        ))
        .await
        .expect("create environment");
        c.create_api_key(authed(
            admin,
            cpb::CreateApiKeyRequest {
                kind: cpb::KeyKind::Sdk as i32,
                name: format!("{key} sdk"),
                environment: key.into(),
            },
        ))
        .await
        .expect("create sdk key")
        .into_inner()
        .secret
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
                    definition_json: json.clone(),
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

    /// Asks the config service to stop and returns at once; [`Stack::stop`] waits for it.
    pub fn stop_config_service(&self) {
        self.config.shutdown.cancel();
    }

    /// Stops the evaluation service first (its clients flush to the others), then the rest.
    pub async fn stop(self) {
        self.evaluation.stop().await;
        self.events_server.stop().await;
        self.config.stop().await;
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0")
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

/// A minimal HTTP/1.1 request, returning status, headers (lowercased names) and body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// The value of header `name` (lowercase), if present.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
