//! A local stack to measure the evaluation service against: a fresh PostgreSQL database (as
//! the tests make them, `COHORT_TEST_DATABASE_URL`), the config service, an event sink that
//! accepts every batch, and the evaluation service, all in this process. It seeds one
//! environment with 10 flags (a targeting rule and a percentage split each) and 10 running
//! experiments, prints its SDK key, and serves until Ctrl-C.
//!
//! ```text
//! cargo run --release -p cohort-evaluation --example stack
//! cohort-bench evaluate --endpoint http://127.0.0.1:50052 --sdk-key <printed key> --keys 1
//! ```

// The SDK key is this program's output.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;

// The allocator the service binary uses, so the numbers are the service's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use cohort_proto::config::v1 as cpb;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use cohort_proto::events::v1 as epb;
use cohort_proto::events::v1::event_service_server::{EventService, EventServiceServer};
use cohort_runtime::{Shutdown, wait_for_signal};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

#[derive(Debug, Parser)]
struct Args {
    /// The evaluation service's gRPC address.
    #[arg(long, env = "COHORT_STACK_GRPC_ADDR", default_value = "127.0.0.1:50052")]
    grpc_addr: SocketAddr,
    /// The evaluation service's HTTP address.
    #[arg(long, env = "COHORT_STACK_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    http_addr: SocketAddr,
    /// The evaluation service's admin address (`/metrics`).
    #[arg(long, env = "COHORT_STACK_ADMIN_ADDR", default_value = "127.0.0.1:9092")]
    admin_addr: SocketAddr,
}

/// Accepts and drops every batch: exposures cost the evaluation service what they cost in
/// production, without an event service in the measurement.
#[derive(Debug, Clone, Default)]
struct Sink;

#[tonic::async_trait]
impl EventService for Sink {
    async fn send_batch(
        &self,
        request: Request<epb::SendBatchRequest>,
    ) -> Result<Response<epb::SendBatchResponse>, Status> {
        let accepted = request.into_inner().events.len() as u32;
        Ok(Response::new(epb::SendBatchResponse { accepted, rejected: Vec::new() }))
    }

    async fn stream_batches(
        &self,
        _: Request<Streaming<epb::SendBatchRequest>>,
    ) -> Result<Response<epb::StreamBatchesResponse>, Status> {
        Err(Status::unimplemented("stream_batches"))
    }
}

fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("ascii key"));
    r
}

async fn seed(config: SocketAddr, admin_key: &str) -> anyhow::Result<()> {
    let mut c = ConfigServiceClient::connect(format!("http://{config}")).await?;
    let create = |kind: cpb::EntityKind, json: serde_json::Value| cpb::CreateEntityRequest {
        environment: "production".into(),
        kind: kind as i32,
        definition_json: json.to_string(),
    };
    for i in 0..10 {
        let flag = serde_json::json!({
            "key": format!("flag-{i}"), "type": "string", "salt": format!("flag-{i}"), "enabled": true,
            "variations": [
                {"key": "a", "value": "alpha"}, {"key": "b", "value": "beta"}, {"key": "c", "value": "gamma"},
            ],
            "off_variation": "a",
            "rules": [{
                "condition": {"op": "in", "attribute": "country", "values": ["NZ", "AU"]},
                "serve": {"variation": "c"},
            }],
            "default": {"split": [{"variation": "a", "weight_bp": 5000}, {"variation": "b", "weight_bp": 5000}]},
        });
        c.create_entity(authed(admin_key, create(cpb::EntityKind::Flag, flag))).await?;
    }
    for i in 0..10 {
        let experiment = serde_json::json!({
            "key": format!("experiment-{i}"),
            "variants": [
                {"key": "control", "weight_bp": 5000, "control": true, "payload": {"color": "grey"}},
                {"key": "treatment", "weight_bp": 5000, "payload": {"color": "green"}},
            ],
        });
        let written =
            c.create_entity(authed(admin_key, create(cpb::EntityKind::Experiment, experiment))).await?;
        let revision = written.into_inner().entity.map_or(0, |e| e.revision);
        c.transition_experiment(authed(
            admin_key,
            cpb::TransitionExperimentRequest {
                environment: "production".into(),
                key: format!("experiment-{i}"),
                action: cpb::ExperimentAction::Start as i32,
                expected_revision: revision,
                reason: "load test".into(),
            },
        ))
        .await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    cohort_runtime::init_tracing(cohort_runtime::settings::LogFormat::Text);
    let db = cohort_db::testing::TestDb::new().await;
    let tenant = db.seed_tenant("loadtest").await;

    let config_settings = cohort_config::settings::Cli::try_parse_from([
        "cohort-config",
        "--database-url",
        &db.url,
        "--shutdown-grace",
        "5s",
    ])?
    .serve;
    let (grpc, http) = (TcpListener::bind("127.0.0.1:0").await?, TcpListener::bind("127.0.0.1:0").await?);
    let config_addr = grpc.local_addr()?;
    let config_stop = Shutdown::new();
    let config = tokio::spawn(cohort_config::run(
        config_settings,
        cohort_config::Listeners { grpc, http, admin: None },
        config_stop.clone(),
    ));

    let sink = TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = sink.local_addr()?;
    let sink_stop = Shutdown::new();
    let stop = sink_stop.clone();
    let sink = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EventServiceServer::new(Sink))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(sink),
                async move { stop.cancelled().await },
            ),
    );

    seed(config_addr, &tenant.admin_key).await.context("seeding the environment")?;

    let settings = cohort_evaluation::Settings::try_parse_from([
        "cohort-evaluation".to_owned(),
        "--config-endpoint".to_owned(),
        format!("http://{config_addr}"),
        "--events-endpoint".to_owned(),
        format!("http://{sink_addr}"),
    ])?;
    settings.validate().map_err(anyhow::Error::msg)?;
    let listeners = cohort_evaluation::Listeners {
        grpc: TcpListener::bind(args.grpc_addr)
            .await
            .with_context(|| format!("binding {}", args.grpc_addr))?,
        http: TcpListener::bind(args.http_addr)
            .await
            .with_context(|| format!("binding {}", args.http_addr))?,
        admin: Some(
            TcpListener::bind(args.admin_addr)
                .await
                .with_context(|| format!("binding {}", args.admin_addr))?,
        ),
    };
    let eval_stop = Shutdown::new();
    let evaluation = tokio::spawn(cohort_evaluation::run(settings, listeners, eval_stop.clone()));
    println!("sdk key: {}", tenant.sdk_key);
    println!(
        "evaluation: grpc http://{} http http://{} metrics http://{}/metrics",
        args.grpc_addr, args.http_addr, args.admin_addr
    );

    wait_for_signal().await;
    eval_stop.cancel();
    evaluation.await??;
    sink_stop.cancel();
    sink.await??;
    config_stop.cancel();
    config.await??;
    drop(db);
    Ok(())
}
