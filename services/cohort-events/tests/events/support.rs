//! Test harness: the services on the shared test stack (`cohort_dev::testing::TestCluster`),
//! the config service behind a severable proxy, clients, load, and database checks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_dev::stack::{Addrs, Service};
use cohort_dev::testing::{Proxy, TestCluster, http};
use cohort_proto::events::v1 as pb;
use cohort_proto::events::v1::event_service_client::EventServiceClient;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use uuid::Uuid;

/// A test's services: a [`TestCluster`] (a fresh migrated database, the services' keys) with
/// a config service that the event service reaches through a proxy, so a test can make it
/// unreachable and bring it back at the same address. The event service is started and
/// stopped by the test ([`Cluster::start_events`]), as often as it likes.
pub(crate) struct Cluster {
    cluster: TestCluster,
    /// In front of the config service's gRPC port.
    config: Proxy,
    /// In front of PostgreSQL, when both services reach it through one.
    postgres: Option<Proxy>,
}

impl Cluster {
    /// A config service on the cluster's database.
    pub(crate) async fn start() -> Cluster {
        Cluster::with(false).await
    }

    /// Both services reach PostgreSQL through a proxy ([`Cluster::postgres`]), as in
    /// production one server: cutting it off cuts off both, so the config service cannot
    /// verify keys either.
    pub(crate) async fn behind_postgres_proxy() -> Cluster {
        Cluster::with(true).await
    }

    async fn with(postgres_proxy: bool) -> Cluster {
        let mut cluster = TestCluster::empty().await;
        let postgres = match postgres_proxy {
            true => Some(Proxy::start(server_addr(&cluster.db().url).await).await),
            false => None,
        };
        let database = postgres.as_ref().map(|p| p.url_for(&cluster.db().url));
        let flags: Vec<(&str, &str)> = database.iter().map(|url| ("--database-url", url.as_str())).collect();
        let addrs = cluster.add(Service::Config, &flags).await;
        let config = Proxy::start(addrs.grpc).await;
        Cluster { cluster, config, postgres }
    }

    /// The cluster's database (its URL, pool and tenants), reached directly.
    pub(crate) fn db(&self) -> &cohort_db::testing::TestDb {
        self.cluster.db()
    }

    /// A pool on the cluster's database that outlives borrows of the cluster.
    pub(crate) fn pool(&self) -> cohort_db::Pool {
        self.cluster.db().pool.clone()
    }

    /// The event service's default spool directory.
    pub(crate) fn spool_dir(&self) -> &Path {
        self.cluster.spool_dir()
    }

    /// The proxy in front of PostgreSQL; panics unless made by [`Cluster::behind_postgres_proxy`].
    pub(crate) fn postgres(&self) -> &Proxy {
        self.postgres.as_ref().expect("a cluster behind a PostgreSQL proxy")
    }

    /// Where the event service reaches the config service (the proxy).
    pub(crate) fn config_endpoint(&self) -> String {
        self.config.url()
    }

    /// The event service's key for the config service.
    pub(crate) fn service_key(&self) -> String {
        self.cluster.service_key(Service::Events)
    }

    /// Makes the config service unreachable: connections to it dropped, new ones refused.
    pub(crate) fn sever_config(&self) {
        self.config.sever();
    }

    pub(crate) fn restore_config(&self) {
        self.config.restore();
    }

    /// Starts the event service with the stack's flags, reaching the config service through
    /// its proxy (and PostgreSQL through its proxy, when there is one), retrying a failed
    /// drain within 500 ms; `extra` flags replace those or are added.
    pub(crate) async fn start_events(&mut self, extra: &[(&str, &str)]) -> Events {
        let endpoint = self.config_endpoint();
        let database = self.postgres.as_ref().map(|p| p.url_for(&self.cluster.db().url));
        let mut flags = vec![("--config-endpoint", endpoint.as_str()), ("--drain-max-backoff", "500ms")];
        flags.extend(database.iter().map(|url| ("--database-url", url.as_str())));
        for &(name, value) in extra {
            match flags.iter_mut().find(|flag| flag.0 == name) {
                Some(flag) => flag.1 = value,
                None => flags.push((name, value)),
            }
        }
        Events(self.cluster.add(Service::Events, &flags).await)
    }

    /// Starts the stopped event service again where it was (same ports), with the same flags.
    pub(crate) async fn restart_events(&mut self) {
        self.cluster.restart(Service::Events).await;
    }

    /// Stops the event service gracefully (panics unless it stops cleanly); returns how long
    /// that took.
    pub(crate) async fn stop_events(&mut self) -> Duration {
        let started = Instant::now();
        self.cluster.stop_service(Service::Events).await;
        started.elapsed()
    }
}

/// The address of the server of a `postgres://user@host:port/database` URL.
async fn server_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("a URL with a scheme").1;
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    tokio::net::lookup_host(&host_port)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve the database server {host_port}"))
}

/// Where a running event service listens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Events(Addrs);

impl Events {
    pub(crate) fn grpc(&self) -> SocketAddr {
        self.0.grpc
    }

    pub(crate) fn http(&self) -> SocketAddr {
        self.0.http
    }

    pub(crate) fn admin(&self) -> SocketAddr {
        self.0.admin
    }

    pub(crate) async fn client(&self) -> EventServiceClient<Channel> {
        connect(self.0.grpc).await
    }

    /// The value of one metric line (`name{labels}` prefix) on the admin server.
    pub(crate) async fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = http_request(self.0.admin, "GET", "/metrics", None, "").await;
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

pub(crate) async fn connect(addr: SocketAddr) -> EventServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.expect("connect");
    EventServiceClient::new(channel)
}

/// `SendBatch` with a bearer key.
pub(crate) async fn send(
    client: &mut EventServiceClient<Channel>,
    key: &str,
    events: Vec<pb::Event>,
) -> Result<pb::SendBatchResponse, tonic::Status> {
    let mut request = tonic::Request::new(pb::SendBatchRequest { events });
    if !key.is_empty() {
        request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    client.send_batch(request).await.map(|r| r.into_inner())
}

pub(crate) fn now_ms() -> i64 {
    cohort_core::time::unix_ms(std::time::SystemTime::now())
}

pub(crate) fn exposure(id: Uuid, experiment: Uuid, unit: &str) -> pb::Event {
    pb::Event {
        event_id: id.to_string(),
        timestamp_ms: now_ms(),
        kind: Some(pb::event::Kind::Exposure(pb::Exposure {
            unit: unit.to_owned(),
            experiment_id: experiment.to_string(),
            variant: "treatment".to_owned(),
            config_version: 3,
            attributes: HashMap::from([
                ("country".to_owned(), "NL".to_owned()),
                ("platform".to_owned(), "ios".to_owned()),
            ]),
        })),
    }
}

pub(crate) fn metric(id: Uuid, unit: &str, value: Option<f64>) -> pb::Event {
    pb::Event {
        event_id: id.to_string(),
        timestamp_ms: now_ms(),
        kind: Some(pb::event::Kind::Metric(pb::Metric {
            unit: unit.to_owned(),
            name: "checkout".to_owned(),
            value,
            properties: HashMap::from([("plan".to_owned(), "pro".to_owned())]),
        })),
    }
}

/// A batch of `n` exposures with fresh ids.
pub(crate) fn exposures(n: usize) -> Vec<pb::Event> {
    let experiment = Uuid::new_v4();
    (0..n).map(|i| exposure(Uuid::new_v4(), experiment, &format!("user-{i}"))).collect()
}

/// Polls `check` every 100 ms until it is true; panics with `what` after `timeout`.
pub(crate) async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows of `table` for `environment`.
pub(crate) async fn count(pool: &cohort_db::Pool, table: &str, environment: Uuid) -> i64 {
    let client = pool.get().await.expect("database connection");
    client
        .query_one(&format!("SELECT count(*) FROM {table} WHERE environment_id = $1"), &[&environment])
        .await
        .expect("count rows")
        .get(0)
}

/// Every stored event id of `environment` (both tables) with how often it is stored.
pub(crate) async fn stored_ids(pool: &cohort_db::Pool, environment: Uuid) -> HashMap<Uuid, i64> {
    let client = pool.get().await.expect("database connection");
    let rows = client
        .query(
            "SELECT event_id, count(*) FROM (
                 SELECT event_id FROM exposures WHERE environment_id = $1
                 UNION ALL SELECT event_id FROM metric_events WHERE environment_id = $1) e
             GROUP BY event_id",
            &[&environment],
        )
        .await
        .expect("stored ids");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Asserts every acknowledged id is stored exactly once, and nothing else was stored
/// except events that were sent (sent but unacknowledged ones may or may not be there).
pub(crate) fn assert_exactly_once(stored: &HashMap<Uuid, i64>, acked: &[Uuid], sent: &[Uuid]) {
    let dup: Vec<_> = stored.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dup.is_empty(), "{} ids stored more than once, e.g. {:?}", dup.len(), dup.first());
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains_key(id)).collect();
    assert!(missing.is_empty(), "{} acknowledged events lost, e.g. {:?}", missing.len(), missing.first());
    let sent: std::collections::HashSet<_> = sent.iter().collect();
    let unknown = stored.keys().filter(|id| !sent.contains(id)).count();
    assert_eq!(unknown, 0, "stored ids that were never sent");
}

/// One HTTP/1.1 request (the shared test client) with a bearer `key`; status and body.
pub(crate) async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String) {
    let (status, _, body) = http_request_full(addr, method, path, key, body).await;
    (status, body)
}

/// Like [`http_request`], also returning the response headers (lowercase names).
pub(crate) async fn http_request_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, HashMap<String, String>, String) {
    let authorization = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(authorization.as_deref().map(|a| ("authorization", a)));
    let response = http::request(addr, method, path, &headers, body).await;
    (response.status, response.headers.into_iter().collect(), response.body)
}

/// What a load run saw.
#[derive(Default)]
pub(crate) struct LoadReport {
    /// Ids of acknowledged events.
    pub(crate) acked: Vec<Uuid>,
    /// Ids of every event sent (acknowledged or not).
    pub(crate) sent: Vec<Uuid>,
    /// Refusals and failures by gRPC code.
    pub(crate) errors: HashMap<tonic::Code, u64>,
    /// Acknowledgement latency of successful calls, in microseconds.
    pub(crate) latency_us: Option<Histogram<u64>>,
}

impl LoadReport {
    fn merge(&mut self, other: LoadReport) {
        self.acked.extend(other.acked);
        self.sent.extend(other.sent);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        match (&mut self.latency_us, other.latency_us) {
            (Some(a), Some(b)) => a.add(b).unwrap(),
            (a @ None, b) => *a = b,
            _ => {}
        }
    }
}

/// A load: `tasks` senders, each sending a batch of `batch` events every `every` (or back to
/// back), until `stop` fires or a send fails with something other than RESOURCE_EXHAUSTED
/// when `stop_on_error` is set.
pub(crate) struct Load {
    pub(crate) addr: SocketAddr,
    pub(crate) key: String,
    pub(crate) tasks: usize,
    pub(crate) batch: usize,
    pub(crate) every: Option<Duration>,
    pub(crate) stop_on_error: bool,
}

impl Load {
    pub(crate) fn spawn(self, stop: CancellationToken) -> JoinHandle<LoadReport> {
        let load = Arc::new(self);
        tokio::spawn(async move {
            let mut handles = Vec::new();
            for _ in 0..load.tasks {
                let (load, stop) = (load.clone(), stop.clone());
                handles.push(tokio::spawn(async move { load.run_one(stop).await }));
            }
            let mut report = LoadReport::default();
            for h in handles {
                report.merge(h.await.expect("load task"));
            }
            report
        })
    }

    async fn run_one(&self, stop: CancellationToken) -> LoadReport {
        let mut report = LoadReport {
            latency_us: Some(Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()),
            ..LoadReport::default()
        };
        let Ok(channel) = Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await
        else {
            return report;
        };
        let mut client = EventServiceClient::new(channel);
        let experiment = Uuid::new_v4();
        let mut tick = self.every.map(tokio::time::interval);
        while !stop.is_cancelled() {
            if let Some(t) = tick.as_mut() {
                tokio::select! {
                    _ = t.tick() => {}
                    _ = stop.cancelled() => break,
                }
            }
            let ids: Vec<Uuid> = (0..self.batch).map(|_| Uuid::new_v4()).collect();
            let events = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    if i % 4 == 3 {
                        metric(*id, &format!("user-{i}"), Some(i as f64))
                    } else {
                        exposure(*id, experiment, &format!("user-{i}"))
                    }
                })
                .collect();
            report.sent.extend_from_slice(&ids);
            let started = Instant::now();
            match send(&mut client, &self.key, events).await {
                Ok(response) => {
                    assert_eq!(response.accepted as usize, self.batch, "{:?}", response.rejected.first());
                    let us = started.elapsed().as_micros() as u64;
                    if let Some(h) = report.latency_us.as_mut() {
                        h.saturating_record(us.max(1));
                    }
                    report.acked.extend(ids);
                }
                Err(status) => {
                    *report.errors.entry(status.code()).or_default() += 1;
                    if status.code() == tonic::Code::ResourceExhausted {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    } else if self.stop_on_error {
                        break;
                    }
                }
            }
        }
        report
    }
}

/// The real `cohort-events` binary, started with JSON logs so its addresses can be read.
pub(crate) struct Process {
    pub(crate) child: tokio::process::Child,
    pub(crate) grpc: SocketAddr,
}

impl Process {
    /// Starts the binary on the cluster's database and spool directory, verifying keys with
    /// the cluster's config service.
    pub(crate) async fn spawn(cluster: &Cluster) -> Process {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cohort-events"))
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json"])
            .args(["--database-url", &cluster.db().url, "--drain-max-backoff", "500ms"])
            .args(["--config-endpoint", &cluster.config_endpoint()])
            // The secret through the environment, as a deployment passes it.
            .env("COHORT_SERVICE_KEY", cluster.service_key())
            .arg("--spool-dir")
            .arg(cluster.spool_dir())
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start cohort-events");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let grpc = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read logs") {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                if let Some(addr) = v.get("grpc_addr").and_then(|a| a.as_str()) {
                    return addr.parse::<SocketAddr>().expect("grpc address");
                }
            }
            panic!("cohort-events exited before it was serving");
        })
        .await
        .expect("cohort-events starts within 60s");
        // Keep reading so a full pipe never blocks the process.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Process { child, grpc }
    }
}
