//! Test harness: services (the config service they verify keys with included), clients, a
//! severable proxy, load, and database checks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use cohort_events::{Listeners, Settings};
use cohort_proto::events::v1 as pb;
use cohort_proto::events::v1::event_service_client::EventServiceClient;
use cohort_runtime::Shutdown;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use uuid::Uuid;

/// A config service running in this process against the test database, knowing the events
/// service's key (`--service-keys cohort-events=<hash>`). The events service reaches it through
/// a proxy, so a test can make it unreachable and bring it back at the same address.
pub(crate) struct Config {
    /// Where the events service reaches it (the proxy).
    pub(crate) endpoint: String,
    /// The events service's key for it.
    pub(crate) service_key: String,
    proxy: Proxy,
    shutdown: Shutdown,
}

impl Config {
    /// Starts a config service on `database_url` (the events service's database, as in
    /// production: a test that cuts PostgreSQL off cuts it off from both).
    pub(crate) async fn start(database_url: &str) -> Config {
        let key = cohort_db::keys::generate(cohort_db::keys::KeyKind::Service);
        let hashes = format!("cohort-events={}", hex::encode(&key.hash));
        let settings = cohort_config::settings::Cli::try_parse_from([
            "cohort-config",
            "--database-url",
            database_url,
            "--service-keys",
            &hashes,
            "--shutdown-grace",
            "1s",
        ])
        .expect("config service settings parse")
        .serve;
        settings.validate().expect("config service settings are valid");
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy::start(grpc.local_addr().unwrap()).await;
        let shutdown = Shutdown::new();
        let listeners = cohort_config::Listeners { grpc, http, admin: None };
        tokio::spawn(cohort_config::run(settings, listeners, shutdown.clone()));
        Config { endpoint: format!("http://{}", proxy.addr), service_key: key.secret, proxy, shutdown }
    }

    /// Makes the config service unreachable: connections to it dropped, new ones refused.
    pub(crate) fn sever(&self) {
        self.proxy.sever();
    }

    pub(crate) fn restore(&self) {
        self.proxy.restore();
    }

    /// The events service's flags to reach it.
    fn flags(&self) -> [&str; 4] {
        ["--config-endpoint", &self.endpoint, "--service-key", &self.service_key]
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An event service running in this process on 127.0.0.1 listeners bound before it starts.
pub(crate) struct Service {
    pub(crate) grpc: SocketAddr,
    pub(crate) http: SocketAddr,
    pub(crate) admin: SocketAddr,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), cohort_events::EventsError>>,
}

impl Service {
    /// Starts the service against `database_url`, verifying keys with `config`, with its spool
    /// in `spool_dir`; `extra` are more command-line flags.
    pub(crate) async fn start(
        config: &Config,
        database_url: &str,
        spool_dir: &Path,
        extra: &[&str],
    ) -> Service {
        let mut args = vec![
            "cohort-events",
            "--database-url",
            database_url,
            "--spool-dir",
            spool_dir.to_str().expect("utf-8 temp path"),
            "--drain-max-backoff",
            "500ms",
            "--shutdown-grace",
            "10s",
        ];
        args.extend_from_slice(&config.flags());
        args.extend_from_slice(extra);
        let settings = Settings::try_parse_from(args).expect("test settings parse");
        settings.validate().expect("test settings are valid");
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr, admin_addr) =
            (grpc.local_addr().unwrap(), http.local_addr().unwrap(), admin.local_addr().unwrap());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(cohort_events::run(
            settings,
            Listeners { grpc, http, admin: Some(admin) },
            shutdown.clone(),
        ));
        Service { grpc: grpc_addr, http: http_addr, admin: admin_addr, shutdown, task }
    }

    pub(crate) async fn client(&self) -> EventServiceClient<Channel> {
        connect(self.grpc).await
    }

    /// Graceful shutdown; returns what `run` returned and how long it took.
    pub(crate) async fn stop(self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        self.task.await.expect("service task").expect("service stops cleanly");
        started.elapsed()
    }

    /// The value of one metric line (`name{labels}` prefix) on the admin server.
    pub(crate) async fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = http_request(self.admin, "GET", "/metrics", None, "").await;
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
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
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

/// A minimal HTTP/1.1 client: one request per connection; returns status and body.
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
    let mut stream = TcpStream::connect(addr).await.expect("connect http");
    let auth = key.map(|k| format!("authorization: Bearer {k}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<HashMap<_, _>>();
    let body = if headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, headers, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n.min(after.len())]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

/// A TCP proxy in front of PostgreSQL (or the config service) that a test can sever (every
/// connection dropped, new ones refused) and restore, without touching the shared server.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Mutex<CancellationToken>>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let (up2, cut2) = (up.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::Acquire) {
                    drop(inbound);
                    continue;
                }
                let token = cut2.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        Proxy { addr, up, cut, task }
    }

    /// Drops every proxied connection and refuses new ones.
    pub(crate) fn sever(&self) {
        self.up.store(false, Ordering::Release);
        let mut cut = self.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }

    pub(crate) fn restore(&self) {
        self.up.store(true, Ordering::Release);
    }

    /// `url` with its host and port replaced by the proxy's.
    pub(crate) fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap();
        let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@")).unwrap_or_default();
        format!("{scheme}://{user}{}/{path}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.lock().unwrap().cancel();
    }
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
    pub(crate) async fn spawn(config: &Config, database_url: &str, spool_dir: &Path) -> Process {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cohort-events"))
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json"])
            .args(["--database-url", database_url, "--drain-max-backoff", "500ms"])
            .args(["--config-endpoint", &config.endpoint])
            // The secret through the environment, as a deployment passes it.
            .env("COHORT_SERVICE_KEY", &config.service_key)
            .arg("--spool-dir")
            .arg(spool_dir)
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
