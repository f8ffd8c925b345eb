//! The config service against a real PostgreSQL: a fresh database per test, servers started
//! in-process on pre-bound 127.0.0.1:0 listeners.

mod api;
mod batch;
mod isolation;
mod malformed;
mod readiness;
mod revocation;
mod settings;
mod stream;

use std::net::SocketAddr;

use clap::Parser;
use cohort_config::settings::Cli;
use cohort_config::{Listeners, run};
use cohort_proto::config::v1 as pb;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use cohort_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// One running config-service replica.
#[derive(Debug)]
pub struct Server {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: SocketAddr,
    shutdown: Shutdown,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub async fn start(database_url: &str) -> Server {
        Server::start_with(database_url, &[]).await
    }

    /// A replica with more flags; a flag in `extra` replaces the test default of that name.
    pub async fn start_with(database_url: &str, extra: &[&str]) -> Server {
        let mut args = vec!["cohort-config", "--database-url", database_url];
        for [flag, value] in
            [["--heartbeat-interval", "500ms"], ["--poll-interval", "1s"], ["--shutdown-grace", "5s"]]
        {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend_from_slice(extra);
        let settings = Cli::try_parse_from(args).expect("settings parse").serve;
        settings.validate().expect("settings are valid");
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr, admin_addr) =
            (grpc.local_addr().unwrap(), http.local_addr().unwrap(), admin.local_addr().unwrap());
        let shutdown = Shutdown::new();
        let task =
            tokio::spawn(run(settings, Listeners { grpc, http, admin: Some(admin) }, shutdown.clone()));
        Server { grpc: grpc_addr, http: http_addr, admin: admin_addr, shutdown, task }
    }

    pub async fn client(&self) -> ConfigServiceClient<Channel> {
        // The listener is bound before `run` starts, so connecting cannot race the server.
        ConfigServiceClient::connect(format!("http://{}", self.grpc)).await.expect("connect")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("server task").expect("server ran cleanly");
    }
}

/// A request carrying `authorization: Bearer <key>`.
pub fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

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
) -> pb::WriteResponse {
    client
        .create_entity(authed(
            key,
            pb::CreateEntityRequest { environment: env.into(), kind: kind as i32, definition_json: json },
        ))
        .await
        .expect("create entity")
        .into_inner()
}

/// A minimal HTTP/1.1 GET, returning status, headers (lowercased names) and body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
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

/// A TCP proxy in front of a server; cutting it drops every connection at once, which is what
/// a client sees when the server's process dies.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    cut: tokio_util::sync::CancellationToken,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = tokio_util::sync::CancellationToken::new();
        let stop = cut.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => return },
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Proxy { addr, cut }
    }

    pub fn cut(&self) {
        self.cut.cancel();
    }
}
