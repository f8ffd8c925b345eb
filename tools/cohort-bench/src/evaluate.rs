//! `cohort-bench evaluate`: keeps `--concurrency` `EvaluationService.Evaluate` calls in flight
//! over `--connections` HTTP/2 connections for `--duration` (or `--requests` calls), then
//! reports requests/s, decisions/s and latency percentiles.
//!
//! The keys asked for are the first `--keys` keys of the environment (read with one
//! all-keys Evaluate first); `0` asks for every key. Units cycle through `--units` distinct
//! targeting keys, so experiments enroll and exposures flow as in production.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use clap::Args;
use cohort_proto::common::v1 as common;
use cohort_proto::evaluation::v1 as pb;
use cohort_proto::evaluation::v1::evaluation_service_client::EvaluationServiceClient;
use cohort_runtime::parse_duration;
use prost::Message;
use tonic::metadata::{Ascii, MetadataValue};

use crate::report;
use crate::unary::{self, Load, Workload};

#[derive(Debug, Clone, Args)]
pub(crate) struct EvaluateArgs {
    /// The evaluation service's gRPC endpoint.
    #[arg(long, env = "COHORT_BENCH_ENDPOINT", default_value = "http://127.0.0.1:50052")]
    endpoint: String,

    /// An SDK key of the environment to evaluate.
    #[arg(long, env = "COHORT_BENCH_SDK_KEY")]
    sdk_key: String,

    /// HTTP/2 connections to open.
    #[arg(long, env = "COHORT_BENCH_CONNECTIONS", default_value_t = 2)]
    connections: usize,

    /// Requests in flight at once (spread over the connections).
    #[arg(long, env = "COHORT_BENCH_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,

    /// Keys per request: the environment's first N keys (0: every key, with an empty list).
    #[arg(long, env = "COHORT_BENCH_KEYS", default_value_t = 1)]
    keys: usize,

    /// Distinct targeting keys the requests cycle through.
    #[arg(long, env = "COHORT_BENCH_UNITS", default_value_t = 100_000)]
    units: u64,

    /// How long to measure (after the warm-up).
    #[arg(long, env = "COHORT_BENCH_DURATION", value_parser = parse_duration, default_value = "20s")]
    duration: Duration,

    /// Load before measuring, not counted.
    #[arg(long, env = "COHORT_BENCH_WARMUP", value_parser = parse_duration, default_value = "2s")]
    warmup: Duration,

    /// Stop after this many measured requests (the duration still bounds the run).
    #[arg(long, env = "COHORT_BENCH_REQUESTS")]
    requests: Option<u64>,
}

/// An evaluate benchmark failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EvaluateBenchError {
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    #[error(transparent)]
    Load(#[from] crate::unary::LoadError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("listing the environment's keys: {0}")]
    Keys(tonic::Status),
}

/// Every request the callers cycle through, encoded once up front so the load generator
/// spends its time on the calls, not on building them.
#[derive(Debug)]
struct Requests {
    encoded: Vec<Bytes>,
    /// Decisions in each answer.
    decisions: u64,
}

/// One connection's calls: the next unit's request, and a spot check of the answers.
#[derive(Debug)]
struct EvaluateWorkload {
    requests: Arc<Requests>,
    next: usize,
    answers: u64,
}

/// Every this many answers are decoded whole and their decision count checked.
const CHECK_EVERY: u64 = 64;

impl Workload for EvaluateWorkload {
    fn next_request(&mut self, buf: &mut BytesMut) {
        self.next = (self.next + 1) % self.requests.encoded.len();
        buf.put_slice(&self.requests.encoded[self.next]);
    }

    fn count(&mut self, response: &[u8]) -> Result<u64, String> {
        self.answers += 1;
        if self.answers % CHECK_EVERY == 1 {
            let answer =
                pb::EvaluateResponse::decode(response).map_err(|e| format!("undecodable answer: {e}"))?;
            if answer.decisions.len() as u64 != self.requests.decisions {
                return Err(format!(
                    "{} decisions in an answer, expected {}",
                    answer.decisions.len(),
                    self.requests.decisions
                ));
            }
        }
        Ok(self.requests.decisions)
    }
}

/// Runs the benchmark and prints its report.
pub(crate) async fn run(args: EvaluateArgs) -> Result<(), EvaluateBenchError> {
    if args.units == 0 {
        return Err(EvaluateBenchError::Settings("--units must be at least 1".to_owned()));
    }
    let authorization = format!("Bearer {}", args.sdk_key);
    let auth: MetadataValue<Ascii> = authorization
        .parse()
        .map_err(|_| EvaluateBenchError::Settings("--sdk-key is not a valid header value".to_owned()))?;
    let probe_channel = crate::connect::connections(&args.endpoint, 1).await?.remove(0);

    // The environment's keys, from one all-keys request (which also warms the environment).
    let mut probe = tonic::Request::new(pb::EvaluateRequest {
        context: Some(common::EvaluationContext { targeting_key: "bench".into(), ..Default::default() }),
        keys: Vec::new(),
    });
    probe.metadata_mut().insert("authorization", auth);
    let all = EvaluationServiceClient::new(probe_channel)
        .evaluate(probe)
        .await
        .map_err(EvaluateBenchError::Keys)?
        .into_inner();
    if args.keys > all.decisions.len() {
        return Err(EvaluateBenchError::Settings(format!(
            "--keys {} but the environment has {} keys",
            args.keys,
            all.decisions.len()
        )));
    }
    let keys: Vec<String> = all.decisions.iter().take(args.keys).map(|d| d.key.clone()).collect();
    let decisions = if args.keys == 0 { all.decisions.len() } else { args.keys } as u64;
    let encoded = (0..args.units.min(1 << 20))
        .map(|i| {
            let request = pb::EvaluateRequest {
                context: Some(common::EvaluationContext {
                    targeting_key: format!("user-{i}"),
                    attributes: Default::default(),
                }),
                keys: keys.clone(),
            };
            Bytes::from(request.encode_to_vec())
        })
        .collect();
    let requests = Arc::new(Requests { encoded, decisions });

    let load = Load {
        endpoint: args.endpoint.clone(),
        path: "/cohort.evaluation.v1.EvaluationService/Evaluate",
        authorization,
        connections: args.connections,
        concurrency: args.concurrency,
        warmup: args.warmup,
        duration: args.duration,
        requests: args.requests,
    };
    let outcome = unary::run(&load, |i| EvaluateWorkload {
        requests: requests.clone(),
        // Connections start at different units, as separate clients would.
        next: i.wrapping_mul(7919) % requests.encoded.len(),
        answers: 0,
    })
    .await?;
    report::line(format!(
        "evaluate: {} connections, {} concurrent, {} keys per request, {} units, {:.1}s measured after {:?} warm-up",
        args.connections,
        args.concurrency,
        decisions,
        requests.encoded.len(),
        outcome.measured.as_secs_f64(),
        args.warmup
    ));
    report::line(format!(
        "throughput: {} requests = {:.0} requests/s, {} decisions = {:.0} decisions/s",
        outcome.requests,
        report::rate(outcome.requests, outcome.measured),
        outcome.counted,
        report::rate(outcome.counted, outcome.measured)
    ));
    report::line(format!("latency: {}", report::percentiles(&outcome.latency)));
    if let Some(errors) = outcome.errors_line() {
        report::line(errors);
    }
    Ok(())
}
