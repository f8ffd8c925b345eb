//! In-test fakes: a config service implementing only `Sync` (scripted by the test, one
//! [`Conn`] per stream) and an event service that stores events by id; both serve on
//! pre-bound `127.0.0.1:0` listeners with a shutdown handle. Plus definitions and temp dirs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_proto::config::v1 as cpb;
use cohort_proto::config::v1::config_service_server::{ConfigService, ConfigServiceServer};
use cohort_proto::config::v1::sync_request::Message as Req;
use cohort_proto::config::v1::sync_response::Message as Resp;
use cohort_proto::events::v1 as epb;
use cohort_proto::events::v1::event_service_server::{EventService, EventServiceServer};
use cohort_sdk::Definitions;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// The key the fakes accept.
pub(crate) const KEY: &str = "sdk-test-key";

/// How long a test waits for anything before failing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

pub(crate) async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn authorized<T>(request: &Request<T>) -> Result<(), Status> {
    let expected = format!("Bearer {KEY}");
    match request.metadata().get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == expected => Ok(()),
        _ => Err(Status::unauthenticated("unknown sdk key")),
    }
}

/// One `Sync` stream as the server sees it.
#[derive(Debug)]
pub(crate) struct Conn {
    requests: mpsc::UnboundedReceiver<cpb::SyncRequest>,
    tx: mpsc::Sender<Result<cpb::SyncResponse, Status>>,
}

impl Conn {
    /// The next request from the client.
    pub(crate) async fn request(&mut self) -> Req {
        let r = within("a sync request", self.requests.recv()).await.expect("client closed the stream");
        r.message.expect("empty sync request")
    }

    /// The opening Hello.
    pub(crate) async fn hello(&mut self) -> cpb::Hello {
        match self.request().await {
            Req::Hello(h) => h,
            other => panic!("expected Hello, got {other:?}"),
        }
    }

    /// The next Ack, skipping Pings; returns its version.
    pub(crate) async fn ack(&mut self) -> u64 {
        loop {
            match self.request().await {
                Req::Ack(a) => return a.version,
                Req::Ping(_) => continue,
                Req::Hello(h) => panic!("unexpected Hello {h:?}"),
            }
        }
    }

    pub(crate) async fn send(&self, message: Resp) {
        self.tx.send(Ok(cpb::SyncResponse { message: Some(message) })).await.expect("client gone");
    }

    pub(crate) async fn snapshot(&self, version: u64, defs: &Definitions) {
        self.send(Resp::Snapshot(cpb::Snapshot {
            environment_id: "env-1".into(),
            version,
            definitions_json: serde_json::to_vec(defs).unwrap().into(),
            committed_at_ms: 0,
        }))
        .await;
    }

    pub(crate) async fn delta(&self, from: u64, to: u64, changes: Vec<cpb::Change>) {
        self.send(Resp::Delta(cpb::Delta {
            from_version: from,
            to_version: to,
            changes,
            committed_at_ms: 0,
        }))
        .await;
    }

    pub(crate) async fn heartbeat(&self, version: u64, interval_ms: u32) {
        self.send(Resp::Heartbeat(cpb::Heartbeat { version, interval_ms })).await;
    }

    pub(crate) async fn fail(&self, status: Status) {
        let _ = self.tx.send(Err(status)).await;
    }
}

#[derive(Debug, Clone)]
struct FakeConfigService {
    conns: mpsc::UnboundedSender<Conn>,
}

#[tonic::async_trait]
impl ConfigService for FakeConfigService {
    // Only Sync is faked; everything else is UNIMPLEMENTED.
    async fn bootstrap(
        &self,
        _: Request<cpb::BootstrapRequest>,
    ) -> Result<Response<cpb::BootstrapResponse>, Status> {
        Err(Status::unimplemented("bootstrap"))
    }
    async fn create_environment(
        &self,
        _: Request<cpb::CreateEnvironmentRequest>,
    ) -> Result<Response<cpb::CreateEnvironmentResponse>, Status> {
        Err(Status::unimplemented("create_environment"))
    }
    async fn list_environments(
        &self,
        _: Request<cpb::ListEnvironmentsRequest>,
    ) -> Result<Response<cpb::ListEnvironmentsResponse>, Status> {
        Err(Status::unimplemented("list_environments"))
    }
    async fn update_environment(
        &self,
        _: Request<cpb::UpdateEnvironmentRequest>,
    ) -> Result<Response<cpb::UpdateEnvironmentResponse>, Status> {
        Err(Status::unimplemented("update_environment"))
    }
    async fn create_api_key(
        &self,
        _: Request<cpb::CreateApiKeyRequest>,
    ) -> Result<Response<cpb::CreateApiKeyResponse>, Status> {
        Err(Status::unimplemented("create_api_key"))
    }
    async fn list_api_keys(
        &self,
        _: Request<cpb::ListApiKeysRequest>,
    ) -> Result<Response<cpb::ListApiKeysResponse>, Status> {
        Err(Status::unimplemented("list_api_keys"))
    }
    async fn revoke_api_key(
        &self,
        _: Request<cpb::RevokeApiKeyRequest>,
    ) -> Result<Response<cpb::RevokeApiKeyResponse>, Status> {
        Err(Status::unimplemented("revoke_api_key"))
    }
    async fn rotate_api_key(
        &self,
        _: Request<cpb::RotateApiKeyRequest>,
    ) -> Result<Response<cpb::RotateApiKeyResponse>, Status> {
        Err(Status::unimplemented("rotate_api_key"))
    }
    async fn create_entity(
        &self,
        _: Request<cpb::CreateEntityRequest>,
    ) -> Result<Response<cpb::CreateEntityResponse>, Status> {
        Err(Status::unimplemented("create_entity"))
    }
    async fn get_entity(
        &self,
        _: Request<cpb::GetEntityRequest>,
    ) -> Result<Response<cpb::GetEntityResponse>, Status> {
        Err(Status::unimplemented("get_entity"))
    }
    async fn list_entities(
        &self,
        _: Request<cpb::ListEntitiesRequest>,
    ) -> Result<Response<cpb::ListEntitiesResponse>, Status> {
        Err(Status::unimplemented("list_entities"))
    }
    async fn update_entity(
        &self,
        _: Request<cpb::UpdateEntityRequest>,
    ) -> Result<Response<cpb::UpdateEntityResponse>, Status> {
        Err(Status::unimplemented("update_entity"))
    }
    async fn delete_entity(
        &self,
        _: Request<cpb::DeleteEntityRequest>,
    ) -> Result<Response<cpb::DeleteEntityResponse>, Status> {
        Err(Status::unimplemented("delete_entity"))
    }
    async fn transition_experiment(
        &self,
        _: Request<cpb::TransitionExperimentRequest>,
    ) -> Result<Response<cpb::TransitionExperimentResponse>, Status> {
        Err(Status::unimplemented("transition_experiment"))
    }
    async fn get_snapshot(
        &self,
        _: Request<cpb::GetSnapshotRequest>,
    ) -> Result<Response<cpb::GetSnapshotResponse>, Status> {
        Err(Status::unimplemented("get_snapshot"))
    }
    async fn list_audit(
        &self,
        _: Request<cpb::ListAuditRequest>,
    ) -> Result<Response<cpb::ListAuditResponse>, Status> {
        Err(Status::unimplemented("list_audit"))
    }
    async fn get_propagation(
        &self,
        _: Request<cpb::GetPropagationRequest>,
    ) -> Result<Response<cpb::GetPropagationResponse>, Status> {
        Err(Status::unimplemented("get_propagation"))
    }
    async fn apply_batch(
        &self,
        _: Request<cpb::ApplyBatchRequest>,
    ) -> Result<Response<cpb::ApplyBatchResponse>, Status> {
        Err(Status::unimplemented("apply_batch"))
    }

    type SyncStream = ReceiverStream<Result<cpb::SyncResponse, Status>>;

    async fn sync(
        &self,
        request: Request<Streaming<cpb::SyncRequest>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        authorized(&request)?;
        let mut inbound = request.into_inner();
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if req_tx.send(m).is_err() {
                    break;
                }
            }
        });
        let (tx, rx) = mpsc::channel(64);
        let _ = self.conns.send(Conn { requests: req_rx, tx });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A running server and its shutdown handle.
#[derive(Debug)]
struct Running {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    async fn stop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(mut t) = self.task.take() {
            // Graceful first (connections close, so clients see the server gone), then force.
            if tokio::time::timeout(Duration::from_secs(2), &mut t).await.is_err() {
                t.abort();
                let _ = t.await;
            }
        }
    }
}

/// A bound listener on 127.0.0.1 (port 0 = any).
pub(crate) async fn listener(addr: Option<SocketAddr>) -> TcpListener {
    TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap())).await.unwrap()
}

/// An address nothing listens on.
pub(crate) async fn dead_addr() -> SocketAddr {
    let l = listener(None).await;
    l.local_addr().unwrap()
}

/// The fake config service.
#[derive(Debug)]
pub(crate) struct FakeConfig {
    conns: mpsc::UnboundedReceiver<Conn>,
    running: Running,
}

impl FakeConfig {
    pub(crate) async fn start() -> Self {
        Self::serve(listener(None).await)
    }

    pub(crate) fn serve(listener: TcpListener) -> Self {
        Self::serve_with(listener, None)
    }

    /// Over TLS with this PEM certificate and key.
    pub(crate) async fn start_tls(cert: &str, key: &str) -> Self {
        // tonic's server TLS takes rustls' process-wide provider, as its client does.
        cohort_transport::use_ring_by_default();
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        Self::serve_with(listener(None).await, Some(tls))
    }

    fn serve_with(listener: TcpListener, tls: Option<tonic::transport::ServerTlsConfig>) -> Self {
        let addr = listener.local_addr().unwrap();
        let (conns_tx, conns) = mpsc::unbounded_channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let service = ConfigServiceServer::new(FakeConfigService { conns: conns_tx });
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).expect("TLS settings");
        }
        let task = tokio::spawn(async move {
            let _ = builder
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = shutdown_rx.await;
                })
                .await;
        });
        FakeConfig { conns, running: Running { addr, shutdown: Some(shutdown_tx), task: Some(task) } }
    }

    pub(crate) fn uri(&self) -> String {
        format!("http://{}", self.running.addr)
    }

    /// The address as a TLS client names it (`localhost`, which the test certificate carries).
    pub(crate) fn https_uri(&self) -> String {
        format!("https://localhost:{}", self.running.addr.port())
    }

    /// The next `Sync` stream a client opens.
    pub(crate) async fn conn(&mut self) -> Conn {
        within("a sync connection", self.conns.recv()).await.expect("server stopped")
    }

    pub(crate) async fn stop(mut self) {
        self.running.stop().await;
    }
}

/// What the fake event service saw, shared across restarts.
#[derive(Debug, Default)]
pub(crate) struct EventLog {
    /// Every batch received, in order (including ones answered with an error).
    pub(crate) batches: Vec<Vec<epb::Event>>,
    /// Events stored, by id: the first copy wins.
    pub(crate) stored: HashMap<String, epb::Event>,
    /// How often each id arrived.
    pub(crate) received: HashMap<String, usize>,
    /// Answer the next calls with these errors after storing their events (a lost ack).
    pub(crate) fail_after_store: Vec<Status>,
}

#[derive(Debug, Clone)]
struct FakeEventService {
    log: Arc<Mutex<EventLog>>,
}

#[tonic::async_trait]
impl EventService for FakeEventService {
    async fn send_batch(
        &self,
        request: Request<epb::SendBatchRequest>,
    ) -> Result<Response<epb::SendBatchResponse>, Status> {
        authorized(&request)?;
        let events = request.into_inner().events;
        let mut log = self.log.lock().unwrap();
        log.batches.push(events.clone());
        let accepted = events.len() as u32;
        for e in events {
            *log.received.entry(e.event_id.clone()).or_default() += 1;
            log.stored.entry(e.event_id.clone()).or_insert(e);
        }
        if !log.fail_after_store.is_empty() {
            return Err(log.fail_after_store.remove(0));
        }
        Ok(Response::new(epb::SendBatchResponse { accepted, rejected: vec![] }))
    }

    async fn stream_batches(
        &self,
        _: Request<Streaming<epb::StreamBatchesRequest>>,
    ) -> Result<Response<epb::StreamBatchesResponse>, Status> {
        Err(Status::unimplemented("stream_batches"))
    }
}

/// The fake event service.
#[derive(Debug)]
pub(crate) struct FakeEvents {
    running: Running,
}

impl FakeEvents {
    pub(crate) async fn start(log: Arc<Mutex<EventLog>>, addr: Option<SocketAddr>) -> Self {
        let listener = listener(addr).await;
        let addr = listener.local_addr().unwrap();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let service = EventServiceServer::new(FakeEventService { log: log.clone() });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = shutdown_rx.await;
                })
                .await;
        });
        FakeEvents { running: Running { addr, shutdown: Some(shutdown_tx), task: Some(task) } }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    pub(crate) fn uri(&self) -> String {
        format!("http://{}", self.running.addr)
    }

    pub(crate) async fn stop(mut self) {
        self.running.stop().await;
    }
}

/// The experiment id in [`defs`].
pub(crate) const EXPERIMENT_ID: &str = "00000000-0000-4000-8000-0000000000e1";

/// A boolean flag `f` (serving `on`) and a running experiment `exp` enrolling everyone, broken
/// down by `country`.
pub(crate) fn defs(version: u64, flag_on: bool) -> Definitions {
    let mut d: Definitions = serde_json::from_value(json!({
        "flags": [flag_json("f", flag_on)],
        "experiments": [{
            "id": EXPERIMENT_ID, "key": "exp", "status": "running",
            "variants": [
                {"key": "control", "weight_bp": 5000, "control": true},
                {"key": "treatment", "weight_bp": 5000, "payload": {"color": "green"}},
            ],
            "breakdown_attributes": ["country"],
        }],
    }))
    .unwrap();
    d.version = version;
    d
}

pub(crate) fn flag_json(key: &str, on: bool) -> serde_json::Value {
    json!({
        "key": key, "type": "boolean", "salt": key,
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off",
        "default": {"variation": if on { "on" } else { "off" }},
    })
}

/// A fresh directory, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cohort-sdk-test-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` until it holds (for effects with no event to await, like a file write).
pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}
