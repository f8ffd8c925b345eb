//! A local stack to measure the evaluation service against: a fresh PostgreSQL database (as
//! the tests make them, `COHORT_TEST_DATABASE_URL`), the config service, an event sink that
//! accepts every batch, and the evaluation service, all in this process. It seeds one
//! environment with 10 string flags `flag-N` (a targeting rule and a percentage split each)
//! and 10 running experiments `experiment-N` (`--flags`, `--experiments`; `--toggles` adds
//! boolean flags `toggle-N` of the same shape, for flagd's `ResolveBoolean`), prints its SDK
//! key, and serves until Ctrl-C.
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
use cohort_runtime::{Shutdown, wait_for_signal};
use futures::future::BoxFuture;
use prost::encoding::{DecodeContext, WireType};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

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
    /// String flags `flag-0`, `flag-1`, ... to seed.
    #[arg(long, env = "COHORT_STACK_FLAGS", default_value_t = 10)]
    flags: usize,
    /// Boolean flags `toggle-0`, `toggle-1`, ... to seed (after the string flags).
    #[arg(long, env = "COHORT_STACK_TOGGLES", default_value_t = 0)]
    toggles: usize,
    /// Running experiments `experiment-0`, `experiment-1`, ... to seed.
    #[arg(long, env = "COHORT_STACK_EXPERIMENTS", default_value_t = 10)]
    experiments: usize,
}

/// The event sink: counts the events of each `SendBatch` and accepts them all, without
/// decoding them. An event service runs elsewhere in production; decoding here would charge
/// its work to the evaluation service this stack measures. The SDK's side (building,
/// encoding and sending each batch) is still counted, as it is the evaluation service's.
#[derive(Debug, Clone, Default)]
struct Sink;

impl NamedService for Sink {
    const NAME: &'static str = "cohort.events.v1.EventService";
}

impl tower::Service<http::Request<tonic::body::Body>> for Sink {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            if request.uri().path() != "/cohort.events.v1.EventService/SendBatch" {
                return Ok(Status::unimplemented("the sink takes SendBatch only").into_http());
            }
            let codec = ProstCodec::<epb::SendBatchResponse, EventCount>::default();
            Ok(tonic::server::Grpc::new(codec).unary(CountEvents, request).await)
        })
    }
}

/// A `SendBatchRequest` read only as far as counting its `events` (field 1).
#[derive(Debug, Clone, Default)]
struct EventCount(u32);

impl prost::Message for EventCount {
    fn encode_raw(&self, _: &mut impl bytes::BufMut) {
        unreachable!("the sink only decodes requests")
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        self.0 += u32::from(tag == 1);
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {
        self.0 = 0;
    }
}

#[derive(Debug, Clone, Copy)]
struct CountEvents;

impl UnaryService<EventCount> for CountEvents {
    type Response = epb::SendBatchResponse;
    type Future = std::future::Ready<Result<Response<Self::Response>, Status>>;

    fn call(&mut self, request: Request<EventCount>) -> Self::Future {
        let accepted = request.into_inner().0;
        std::future::ready(Ok(Response::new(epb::SendBatchResponse { accepted, rejected: Vec::new() })))
    }
}

fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("ascii key"));
    r
}

async fn seed(config: SocketAddr, admin_key: &str, args: &Args) -> anyhow::Result<()> {
    let mut c = ConfigServiceClient::connect(format!("http://{config}")).await?;
    let create = |kind: cpb::EntityKind, json: serde_json::Value| cpb::CreateEntityRequest {
        environment: "production".into(),
        kind: kind as i32,
        definition: cohort_proto::convert::structured::json_struct(&json),
        reason: String::new(),
    };
    for i in 0..args.flags {
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
    for i in 0..args.toggles {
        let toggle = serde_json::json!({
            "key": format!("toggle-{i}"), "type": "boolean", "salt": format!("toggle-{i}"), "enabled": true,
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "off_variation": "off",
            "rules": [{
                "condition": {"op": "in", "attribute": "country", "values": ["NZ", "AU"]},
                "serve": {"variation": "on"},
            }],
            "default": {"split": [{"variation": "on", "weight_bp": 5000}, {"variation": "off", "weight_bp": 5000}]},
        });
        c.create_entity(authed(admin_key, create(cpb::EntityKind::Flag, toggle))).await?;
    }
    for i in 0..args.experiments {
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

    // The config service is off the measured path: started as in every test.
    let config = cohort_dev::stack::Instance::start(
        cohort_dev::stack::Service::Config,
        &[("--database-url", &db.url), ("--shutdown-grace", "5s")],
        cohort_dev::stack::Ports::Any,
    )
    .await?;
    let config_addr = config.addrs().grpc;

    let sink = TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = sink.local_addr()?;
    let sink_stop = Shutdown::new();
    let stop = sink_stop.clone();
    let sink =
        tokio::spawn(tonic::transport::Server::builder().add_service(Sink).serve_with_incoming_shutdown(
            TcpListenerStream::new(sink),
            async move { stop.cancelled().await },
        ));

    seed(config_addr, &tenant.admin_key, &args).await.context("seeding the environment")?;

    let settings = cohort_evaluation::Settings::try_parse_from([
        "cohort-evaluation".to_owned(),
        "--config-endpoint".to_owned(),
        format!("http://{config_addr}"),
        "--events-endpoint".to_owned(),
        format!("http://{sink_addr}"),
        // The load generator is one key: a limit it never reaches, checked on every request.
        "--key-rate-limit".to_owned(),
        "100000000".to_owned(),
        "--key-rate-burst".to_owned(),
        "100000000".to_owned(),
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
    config.stop().await?;
    drop(db);
    Ok(())
}
