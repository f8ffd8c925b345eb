//! Config propagation at scale: two config-service replicas in this process, N SDK streams
//! split between them, and a series of writes; for each write, the time from commit to every
//! stream's acknowledgment (as `GetPropagation` reports it), plus client-side receive latency,
//! the memory per idle stream, and how long a 1,000-entry environment takes to load and compile.
//!
//! `cargo bench -p cohort-config --bench propagation -- [--streams N] [--writes N] [--scale]`
//! (`--scale` first fills the database with 1,000 organizations and 10,000 running experiments).
//! Needs PostgreSQL (COHORT_TEST_DATABASE_URL, default the local server).

#![allow(clippy::print_stdout)]

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
    // `cargo bench` passes this to every bench binary.
    #[arg(long, hide = true)]
    bench: bool,
}

fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("ascii key"));
    r
}

async fn replica(url: &str) -> (std::net::SocketAddr, Shutdown, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let settings =
        Cli::try_parse_from(["cohort-config", "--database-url", url, "--database-max-connections", "8"])
            .expect("settings")
            .serve;
    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = grpc.local_addr().expect("addr");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(run(settings, Listeners { grpc, http, admin: None }, shutdown.clone()));
    (addr, shutdown, task)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
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

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let db = TestDb::new().await;
    if args.scale {
        fill_at_scale(&db).await;
    }
    let tenant = db.seed_tenant("bench").await;
    let (a, stop_a, task_a) = replica(&db.url).await;
    let (b, stop_b, task_b) = replica(&db.url).await;

    // Load and compile an environment of 1,000 flags and experiments (its own environment, so
    // the streams below measure an ordinary one).
    if !args.skip_load {
        let mut admin = ConfigServiceClient::connect(format!("http://{a}")).await.expect("connect");
        let large = admin
            .create_environment(authed(
                &tenant.admin_key,
                pb::CreateEnvironmentRequest { key: "large".into(), name: "Large".into() },
            ))
            .await
            .expect("environment")
            .into_inner();
        let large_id: uuid::Uuid = large.id.parse().expect("uuid");
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
                        &tenant.admin_key,
                        pb::CreateEntityRequest {
                            environment: "large".into(),
                            kind: kind as i32,
                            definition_json: json,
                        },
                    ))
                    .await
                    .expect("create");
            }
        }
        println!("created 1,000 entities one write at a time in {:?}", started.elapsed());
        let store = cohort_config::store::Store::new(db.pool.clone());
        let mut loads = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            let snapshot = store.snapshot(large_id).await.expect("snapshot");
            let entities = snapshot.entities.iter().map(|e| ((e.kind, e.key.as_str()), &e.definition));
            let (defs, _) = cohort_config::domain::assemble(snapshot.version, entities).expect("assemble");
            let compiled = cohort_core::compile(&defs).expect("compile");
            assert_eq!(compiled.len(), 1000);
            loads.push(started.elapsed());
        }
        loads.sort();
        println!("load + compile of a 1,000-entry environment: median {:?}, max {:?}", loads[5], loads[9]);
    }

    // Open the streams.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib();
    let received = Arc::new(AtomicU64::new(0));
    let (latency_tx, mut latency_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let connections = args.streams.div_ceil(args.streams_per_connection);
    let mut channels = Vec::new();
    for c in 0..connections {
        let addr = if c % 2 == 0 { a } else { b };
        let channel: Channel =
            Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
        channels.push(channel);
    }
    let started = Instant::now();
    let mut ready = Vec::new();
    for s in 0..args.streams {
        let channel = channels[s / args.streams_per_connection].clone();
        let key = tenant.sdk_key.clone();
        let received = received.clone();
        let latency_tx = latency_tx.clone();
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
                } else {
                    received.fetch_add(1, Ordering::Relaxed);
                    let _ = latency_tx.send((version, Instant::now()));
                }
            }
        });
    }
    for r in ready {
        r.await.expect("stream ready");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib();
    println!(
        "{} streams on {connections} connections ready in {:?}; RSS grew {} KiB: {:.1} KiB per stream (client and server sides together)",
        args.streams,
        started.elapsed(),
        rss_after.saturating_sub(rss_before),
        rss_after.saturating_sub(rss_before) as f64 / args.streams as f64
    );

    // Writes, one at a time, each waiting until every stream has acknowledged it.
    let mut admin = ConfigServiceClient::connect(format!("http://{a}")).await.expect("connect");
    let mut p99s = Histogram::<u64>::new(3).expect("histogram");
    let mut client_side = Histogram::<u64>::new(3).expect("histogram");
    let mut create = true;
    let mut revision = 0;
    for n in 0..args.writes {
        let json = flag("propagated", n);
        let sent = Instant::now();
        let written = if create {
            create = false;
            admin
                .create_entity(authed(
                    &tenant.admin_key,
                    pb::CreateEntityRequest {
                        environment: "production".into(),
                        kind: pb::EntityKind::Flag as i32,
                        definition_json: json,
                    },
                ))
                .await
        } else {
            admin
                .update_entity(authed(
                    &tenant.admin_key,
                    pb::UpdateEntityRequest {
                        environment: "production".into(),
                        kind: pb::EntityKind::Flag as i32,
                        key: "propagated".into(),
                        definition_json: json,
                        expected_revision: revision,
                    },
                ))
                .await
        }
        .expect("write")
        .into_inner();
        revision = written.entity.expect("entity").revision;
        let version = written.version;
        let mut arrived = 0;
        while arrived < args.streams {
            let (v, at) = tokio::time::timeout(Duration::from_secs(30), latency_rx.recv())
                .await
                .expect("all streams within 30 s")
                .expect("open");
            if v == version {
                arrived += 1;
                client_side.record(at.duration_since(sent).as_micros() as u64).expect("record");
            }
        }
        // The replicas flush acknowledgments every 250 ms.
        let mut p = pb::Propagation::default();
        for _ in 0..100 {
            p = admin
                .get_propagation(authed(
                    &tenant.admin_key,
                    pb::GetPropagationRequest { environment: "production".into(), version },
                ))
                .await
                .expect("propagation")
                .into_inner();
            if p.acknowledged as usize >= args.streams {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "version {version}: {}/{} acknowledged, commit to ack p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            p.acknowledged, p.connected, p.p50_ms, p.p99_ms, p.max_ms
        );
        p99s.record((p.p99_ms * 1000.0) as u64).expect("record");
    }
    println!(
        "over {} writes: median of per-write p99 {:.1} ms, worst per-write p99 {:.1} ms; client-side write-to-receive p50 {:.1} ms, p99 {:.1} ms ({} deliveries)",
        args.writes,
        p99s.value_at_quantile(0.5) as f64 / 1000.0,
        p99s.max() as f64 / 1000.0,
        client_side.value_at_quantile(0.5) as f64 / 1000.0,
        client_side.value_at_quantile(0.99) as f64 / 1000.0,
        received.load(Ordering::Relaxed)
    );
    stop_a.cancel();
    stop_b.cancel();
    let _ = task_a.await;
    let _ = task_b.await;
}
