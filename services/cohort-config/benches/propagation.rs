//! Config propagation at scale: two config-service replicas in this process, N SDK streams
//! split between them, and a series of writes; for each write, the time from commit to every
//! stream's acknowledgment (as `GetPropagation` reports it), the CPU time it cost, the memory
//! per idle stream, and how long a 1,000-entry environment takes to load and compile.
//!
//! `cargo bench -p cohort-config --bench propagation -- [--streams N] [--writes N] [--scale]
//! [--client-process]`
//! (`--scale` first fills the database with 1,000 organizations and 10,000 running experiments;
//! `--client-process` runs the streams in a child process, this binary again, so the replicas'
//! CPU time and memory are counted apart from the load generator's, which in the default mode
//! shares their process and runtime). Needs PostgreSQL (COHORT_TEST_DATABASE_URL, default the
//! local server).

#![allow(clippy::print_stdout)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use cohort_config::settings::Cli;
use cohort_config::{Listeners, run};
use cohort_db::testing::TestDb;
use cohort_proto::config::v1 as pb;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use cohort_runtime::Shutdown;
use hdrhistogram::Histogram;
use pb::sync_response::Message as Out;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

// The service binary's allocator, so what is measured is what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Connected SDK streams, split evenly over the two replicas.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Writes to measure, one after another.
    #[arg(long, default_value_t = 20)]
    writes: u64,
    /// Skip the 1,000-entry environment load measurement.
    #[arg(long)]
    skip_load: bool,
    /// Streams per HTTP/2 connection (SDK processes usually have one each).
    #[arg(long, default_value_t = 100)]
    streams_per_connection: usize,
    /// Fill the database with 1,000 organizations and 10,000 running experiments first.
    #[arg(long)]
    scale: bool,
    /// Run the streams in a child process, so the replicas' CPU and memory are their own.
    #[arg(long)]
    client_process: bool,
    /// The replicas' heartbeat interval (longer keeps heartbeats out of per-write counts).
    #[arg(long, default_value = "5s")]
    heartbeat: String,
    /// Child mode: open `--streams` streams to these replicas, print `ready <RSS growth KiB>`
    /// once all have their first snapshot, then acknowledge every version until stdin closes.
    #[arg(long, hide = true, value_delimiter = ',')]
    clients_for: Vec<SocketAddr>,
    #[arg(long, hide = true, default_value = "")]
    sdk_key: String,
    // `cargo bench` passes this to every bench binary.
    #[arg(long, hide = true)]
    bench: bool,
}

fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("ascii key"));
    r
}

async fn replica(
    url: &str,
    heartbeat: &str,
) -> (SocketAddr, Shutdown, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let settings = Cli::try_parse_from([
        "cohort-config",
        "--database-url",
        url,
        "--database-max-connections",
        "8",
        "--heartbeat-interval",
        heartbeat,
    ])
    .expect("settings")
    .serve;
    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = grpc.local_addr().expect("addr");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(run(settings, Listeners { grpc, http, admin: None }, shutdown.clone()));
    (addr, shutdown, task)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU time of a whole process so far, every thread (finished ones too).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // utime and stime are fields 14 and 15; the command name (field 2) may hold spaces.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn flag(key: &str, n: u64) -> String {
    serde_json::json!({
        "key": key, "type": "boolean", "salt": "bench",
        "description": format!("write {n}"),
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off", "default": {"variation": "on"},
    })
    .to_string()
}

/// 1,000 organizations with one environment each, ten running experiments per environment.
async fn fill_at_scale(db: &TestDb) {
    let client = db.pool.get().await.expect("connection");
    let started = Instant::now();
    client
        .batch_execute(
            "INSERT INTO organizations (id, name)
               SELECT md5('org' || i)::uuid, 'scale-org-' || i FROM generate_series(1, 1000) i;
             INSERT INTO environments (id, organization_id, key, name, version)
               SELECT md5('env' || i)::uuid, md5('org' || i)::uuid, 'production', 'Production', 10
               FROM generate_series(1, 1000) i;
             INSERT INTO entities (environment_id, kind, key, definition, revision, created_at, updated_at)
               SELECT md5('env' || i)::uuid, 'experiment', 'exp-' || j,
                      jsonb_build_object('id', md5('exp' || i || '-' || j)::uuid, 'key', 'exp-' || j,
                        'status', 'running', 'traffic_bp', 10000,
                        'variants', jsonb_build_array(
                          jsonb_build_object('key', 'control', 'weight_bp', 5000, 'control', true),
                          jsonb_build_object('key', 'treatment', 'weight_bp', 5000))),
                      1, now(), now()
               FROM generate_series(1, 1000) i, generate_series(1, 10) j;",
        )
        .await
        .expect("fill");
    println!("filled 1,000 organizations and 10,000 running experiments in {:?}", started.elapsed());
}

/// Opens `streams` Sync streams, their connections alternating between the replicas. Each
/// acknowledges every version it receives and reports those after its first on `deliveries`.
/// Returns the number of connections once every stream has its first snapshot.
async fn open_streams(
    replicas: &[SocketAddr],
    key: &str,
    streams: usize,
    per_connection: usize,
    deliveries: Option<mpsc::UnboundedSender<(u64, Instant)>>,
) -> usize {
    let connections = streams.div_ceil(per_connection);
    let mut channels = Vec::new();
    for c in 0..connections {
        let addr = replicas[c % replicas.len()];
        let channel: Channel =
            Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
        channels.push(channel);
    }
    let mut ready = Vec::new();
    for s in 0..streams {
        let channel = channels[s / per_connection].clone();
        let key = key.to_owned();
        let deliveries = deliveries.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        ready.push(ready_rx);
        tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(4);
            let hello =
                pb::sync_request::Message::Hello(pb::Hello { known_version: 0, client: "bench".into() });
            tx.send(pb::SyncRequest { message: Some(hello) }).await.expect("hello");
            let mut client = ConfigServiceClient::new(channel);
            let mut stream =
                client.sync(authed(&key, ReceiverStream::new(rx))).await.expect("sync").into_inner();
            let mut ready_tx = Some(ready_tx);
            while let Ok(Some(msg)) = stream.message().await {
                let version = match msg.message {
                    Some(Out::Snapshot(s)) => s.version,
                    Some(Out::Delta(d)) => d.to_version,
                    _ => continue,
                };
                let ack = pb::sync_request::Message::Ack(pb::Ack { version });
                if tx.send(pb::SyncRequest { message: Some(ack) }).await.is_err() {
                    return;
                }
                if let Some(r) = ready_tx.take() {
                    let _ = r.send(());
                } else if let Some(d) = &deliveries {
                    let _ = d.send((version, Instant::now()));
                }
            }
        });
    }
    for r in ready {
        r.await.expect("stream ready");
    }
    connections
}

/// The child process of `--client-process`.
async fn clients_only(args: &Args) {
    let rss_before = rss_kib(std::process::id());
    open_streams(&args.clients_for, &args.sdk_key, args.streams, args.streams_per_connection, None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("ready {}", rss_kib(std::process::id()).saturating_sub(rss_before));
    // The parent closes stdin when it is done (or dies).
    let _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await;
}

/// Starts the child process with the streams; returns it and its RSS growth once they are ready.
async fn spawn_clients(args: &Args, replicas: &[SocketAddr], key: &str) -> (Child, u64) {
    let replicas: Vec<String> = replicas.iter().map(ToString::to_string).collect();
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--clients-for", &replicas.join(","), "--sdk-key", key])
        .args(["--streams", &args.streams.to_string()])
        .args(["--streams-per-connection", &args.streams_per_connection.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the client process");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader")
    .expect("the client process's ready line");
    let rss = line.strip_prefix("ready ").and_then(|n| n.trim().parse().ok()).expect("ready <KiB>");
    (child, rss)
}

/// Loads and compiles an environment of 1,000 flags and experiments (its own environment, so
/// the streams measure an ordinary one).
async fn measure_load(db: &TestDb, admin_key: &str, at: SocketAddr) {
    let mut admin = ConfigServiceClient::connect(format!("http://{at}")).await.expect("connect");
    admin
        .create_environment(authed(
            admin_key,
            pb::CreateEnvironmentRequest { key: "large".into(), name: "Large".into(), ..Default::default() },
        ))
        .await
        .expect("environment");
    let started = Instant::now();
    for i in 0..500 {
        let exp = serde_json::json!({
            "key": format!("load-exp-{i}"),
            "variants": [{"key": "control", "weight_bp": 5000, "control": true}, {"key": "treatment", "weight_bp": 5000}],
            "targeting": {"op": "in", "attribute": "country", "values": ["NZ", "AU", "US"]},
        });
        for (kind, json) in [
            (pb::EntityKind::Flag, flag(&format!("load-flag-{i}"), 0)),
            (pb::EntityKind::Experiment, exp.to_string()),
        ] {
            admin
                .create_entity(authed(
                    admin_key,
                    pb::CreateEntityRequest {
                        environment: "large".into(),
                        kind: kind as i32,
                        definition: cohort_proto::convert::structured::text_struct(&json),
                        reason: String::new(),
                    },
                ))
                .await
                .expect("create");
        }
    }
    println!("created 1,000 entities one write at a time in {:?}", started.elapsed());
    // A fresh replica's first GetSnapshot loads the environment from PostgreSQL and compiles
    // it; later ones are served from memory.
    let mut loads = Vec::new();
    for _ in 0..10 {
        let (addr, stop, task) = replica(&db.url, "5s").await;
        let mut client = ConfigServiceClient::connect(format!("http://{addr}")).await.expect("connect");
        let started = Instant::now();
        let snapshot = client
            .get_snapshot(authed(admin_key, pb::GetSnapshotRequest { environment: "large".into() }))
            .await
            .expect("snapshot")
            .into_inner();
        loads.push(started.elapsed());
        let defs: cohort_core::Definitions = serde_json::from_value(
            cohort_proto::convert::structured::to_json(snapshot.definitions.as_ref()).expect("JSON"),
        )
        .expect("definitions");
        assert_eq!(cohort_core::compile(&defs).expect("compile").len(), 1000);
        stop.cancel();
        let _ = task.await;
    }
    loads.sort();
    println!(
        "first GetSnapshot (load + compile) of a 1,000-entry environment on a fresh replica: median {:?}, max {:?}",
        loads[5], loads[9]
    );
}

/// Creates the flag on the first call, then updates it; returns the version the write made.
async fn write(admin: &mut ConfigServiceClient<Channel>, key: &str, n: u64, revision: &mut i64) -> u64 {
    let definition = cohort_proto::convert::structured::text_struct(&flag("propagated", n));
    let (entity, version) = if *revision == 0 {
        let r = admin
            .create_entity(authed(
                key,
                pb::CreateEntityRequest {
                    environment: "production".into(),
                    kind: pb::EntityKind::Flag as i32,
                    definition,
                    reason: String::new(),
                },
            ))
            .await
            .expect("write")
            .into_inner();
        (r.entity, r.version)
    } else {
        let r = admin
            .update_entity(authed(
                key,
                pb::UpdateEntityRequest {
                    environment: "production".into(),
                    kind: pb::EntityKind::Flag as i32,
                    key: "propagated".into(),
                    definition,
                    expected_revision: *revision,
                    reason: String::new(),
                },
            ))
            .await
            .expect("write")
            .into_inner();
        (r.entity, r.version)
    };
    *revision = entity.expect("entity").revision;
    version
}

/// Polls `GetPropagation` until every stream acknowledged `version` (the replicas record an
/// acknowledgment's latency when it arrives, so polling does not change what is measured).
async fn propagation(
    admin: &mut ConfigServiceClient<Channel>,
    key: &str,
    version: u64,
    streams: usize,
) -> pb::GetPropagationResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = admin
            .get_propagation(authed(
                key,
                pb::GetPropagationRequest { environment: "production".into(), version },
            ))
            .await
            .expect("propagation")
            .into_inner();
        if p.acknowledged as usize >= streams || Instant::now() > deadline {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if !args.clients_for.is_empty() {
        clients_only(&args).await;
        return;
    }
    let db = TestDb::new().await;
    if args.scale {
        fill_at_scale(&db).await;
    }
    let tenant = db.seed_tenant("bench").await;
    let (a, stop_a, task_a) = replica(&db.url, &args.heartbeat).await;
    let (b, stop_b, task_b) = replica(&db.url, &args.heartbeat).await;
    if !args.skip_load {
        measure_load(&db, &tenant.admin_key, a).await;
    }

    // Open the streams.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let me = std::process::id();
    let rss_before = rss_kib(me);
    let (latency_tx, mut latency_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let started = Instant::now();
    let mut clients = None;
    if args.client_process {
        let (child, child_rss) = spawn_clients(&args, &[a, b], &tenant.sdk_key).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let server_rss = rss_kib(me).saturating_sub(rss_before);
        println!(
            "{} streams ready in {:?} (client process); RSS grew {server_rss} KiB in the replicas' process: {:.1} KiB per stream on the server; {:.1} KiB per stream in the client process",
            args.streams,
            started.elapsed(),
            server_rss as f64 / args.streams as f64,
            child_rss as f64 / args.streams as f64,
        );
        clients = Some(child);
    } else {
        let connections = open_streams(
            &[a, b],
            &tenant.sdk_key,
            args.streams,
            args.streams_per_connection,
            Some(latency_tx),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = rss_kib(me).saturating_sub(rss_before);
        println!(
            "{} streams on {connections} connections ready in {:?}; RSS grew {rss} KiB: {:.1} KiB per stream (client and server sides together)",
            args.streams,
            started.elapsed(),
            rss as f64 / args.streams as f64
        );
    }
    let client_pid = clients.as_ref().map(Child::id);

    // Writes, one at a time, each waiting until every stream has acknowledged it.
    let mut admin = ConfigServiceClient::connect(format!("http://{a}")).await.expect("connect");
    let mut p99s = Histogram::<u64>::new(3).expect("histogram");
    let mut client_side = Histogram::<u64>::new(3).expect("histogram");
    let mut server_cpu = Histogram::<u64>::new(3).expect("histogram");
    let mut client_cpu = Histogram::<u64>::new(3).expect("histogram");
    let received = Arc::new(AtomicU64::new(0));
    let mut revision = 0;
    for n in 0..args.writes {
        let cpu_before = (cpu_time(me), client_pid.map(cpu_time));
        let sent = Instant::now();
        let version = write(&mut admin, &tenant.admin_key, n, &mut revision).await;
        if client_pid.is_none() {
            let mut arrived = 0;
            while arrived < args.streams {
                let (v, at) = tokio::time::timeout(Duration::from_secs(30), latency_rx.recv())
                    .await
                    .expect("all streams within 30 s")
                    .expect("open");
                if v == version {
                    arrived += 1;
                    received.fetch_add(1, Ordering::Relaxed);
                    client_side.record(at.duration_since(sent).as_micros() as u64).expect("record");
                }
            }
        }
        let p = propagation(&mut admin, &tenant.admin_key, version, args.streams).await;
        let cpu = cpu_time(me).saturating_sub(cpu_before.0);
        server_cpu.record(cpu.as_micros() as u64).expect("record");
        let mut line = format!(
            "version {version}: {}/{} acknowledged, commit to ack p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; CPU {} ms",
            p.acknowledged,
            p.connected,
            p.p50_ms,
            p.p99_ms,
            p.max_ms,
            cpu.as_millis()
        );
        if let (Some(pid), Some(before)) = (client_pid, cpu_before.1) {
            let cpu = cpu_time(pid).saturating_sub(before);
            client_cpu.record(cpu.as_micros() as u64).expect("record");
            line += &format!(" in the replicas, {} ms in the clients", cpu.as_millis());
        }
        println!("{line}");
        p99s.record((p.p99_ms * 1000.0) as u64).expect("record");
    }
    let per_delivery = |h: &Histogram<u64>| h.value_at_quantile(0.5) as f64 / args.streams as f64;
    println!(
        "over {} writes: median of per-write p99 {:.1} ms, worst per-write p99 {:.1} ms",
        args.writes,
        ms(&p99s, 0.5),
        p99s.max() as f64 / 1000.0
    );
    if client_pid.is_some() {
        println!(
            "median CPU per write: replicas {:.1} ms ({:.1} µs per stream), clients {:.1} ms ({:.1} µs per stream)",
            ms(&server_cpu, 0.5),
            per_delivery(&server_cpu),
            ms(&client_cpu, 0.5),
            per_delivery(&client_cpu)
        );
    } else {
        println!(
            "median CPU per write, replicas and clients together: {:.1} ms ({:.1} µs per stream); client-side write-to-receive p50 {:.1} ms, p99 {:.1} ms ({} deliveries)",
            ms(&server_cpu, 0.5),
            per_delivery(&server_cpu),
            ms(&client_side, 0.5),
            ms(&client_side, 0.99),
            received.load(Ordering::Relaxed)
        );
    }
    if let Some(mut child) = clients {
        // Closing its stdin ends the client process.
        drop(child.stdin.take());
        let _ = child.wait();
    }
    stop_a.cancel();
    stop_b.cancel();
    let _ = task_a.await;
    let _ = task_b.await;
}
