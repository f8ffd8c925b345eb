//! `cohort-bench evaluate`: keeps `--concurrency` `EvaluationService.Evaluate` calls (with
//! `--batch N`, `EvaluateBatch` calls of N contexts) in flight over `--connections` HTTP/2
//! connections for `--duration` (or `--requests` calls), then reports requests/s, decisions/s
//! and latency percentiles, and with `--server-pid` the server's CPU time per request.
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

    /// Call EvaluateBatch with this many contexts (consecutive units) per call instead of
    /// Evaluate.
    #[arg(long, env = "COHORT_BENCH_BATCH")]
    batch: Option<usize>,

    /// The server's process id: report its CPU time (user + system, from `/proc`) per request
    /// over the measured window.
    #[arg(long, env = "COHORT_BENCH_SERVER_PID")]
    server_pid: Option<u32>,
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
    /// Decisions in each answer (for each context of a batch).
    decisions: u64,
    /// Contexts per EvaluateBatch call; `None` for Evaluate.
    batch: Option<usize>,
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
        let contexts = self.requests.batch.unwrap_or(1) as u64;
        if self.answers % CHECK_EVERY == 1 {
            let answers = match self.requests.batch {
                None => vec![
                    pb::EvaluateResponse::decode(response).map_err(|e| format!("undecodable answer: {e}"))?,
                ],
                Some(_) => {
                    pb::EvaluateBatchResponse::decode(response)
                        .map_err(|e| format!("undecodable answer: {e}"))?
                        .results
                }
            };
            if answers.len() as u64 != contexts {
                return Err(format!("{} results in an answer, expected {contexts}", answers.len()));
            }
            for answer in answers {
                if answer.decisions.len() as u64 != self.requests.decisions {
                    return Err(format!(
                        "{} decisions in an answer, expected {}",
                        answer.decisions.len(),
                        self.requests.decisions
                    ));
                }
            }
        }
        Ok(self.requests.decisions * contexts)
    }
}

/// Runs the benchmark and prints its report.
pub(crate) async fn run(args: EvaluateArgs) -> Result<(), EvaluateBenchError> {
    if args.units == 0 {
        return Err(EvaluateBenchError::Settings("--units must be at least 1".to_owned()));
    }
    if args.batch == Some(0) {
        return Err(EvaluateBenchError::Settings("--batch must be at least 1".to_owned()));
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
    let units = args.units.min(1 << 20);
    let encoded = (0..units)
        .map(|i| match args.batch {
            None => evaluate_request(i, &keys),
            Some(n) => batch_request((0..n as u64).map(|j| (i + j) % units), &keys),
        })
        .collect();
    let requests = Arc::new(Requests { encoded, decisions, batch: args.batch });

    let load = Load {
        endpoint: args.endpoint.clone(),
        path: match args.batch {
            None => "/cohort.evaluation.v1.EvaluationService/Evaluate",
            Some(_) => "/cohort.evaluation.v1.EvaluationService/EvaluateBatch",
        },
        authorization,
        connections: args.connections,
        concurrency: args.concurrency,
        warmup: args.warmup,
        duration: args.duration,
        requests: args.requests,
        server_pid: args.server_pid,
    };
    let outcome = unary::run(&load, |i| EvaluateWorkload {
        requests: requests.clone(),
        // Connections start at different units, as separate clients would.
        next: i.wrapping_mul(7919) % requests.encoded.len(),
        answers: 0,
    })
    .await?;
    let rpc = match args.batch {
        None => "evaluate".to_owned(),
        Some(n) => format!("evaluate-batch of {n} contexts"),
    };
    report::line(format!(
        "{rpc}: {} connections, {} concurrent, {} keys per context, {} units, {:.1}s measured after {:?} warm-up",
        args.connections,
        args.concurrency,
        decisions,
        requests.encoded.len(),
        outcome.measured.as_secs_f64(),
        args.warmup
    ));
    outcome.report();
    Ok(())
}

fn context(unit: u64) -> common::EvaluationContext {
    common::EvaluationContext { targeting_key: format!("user-{unit}"), attributes: Default::default() }
}

/// An encoded `EvaluateRequest` for one unit.
fn evaluate_request(unit: u64, keys: &[String]) -> Bytes {
    let request = pb::EvaluateRequest { context: Some(context(unit)), keys: keys.to_vec() };
    Bytes::from(request.encode_to_vec())
}

/// An encoded `EvaluateBatchRequest` with a context for each of `units`.
fn batch_request(units: impl Iterator<Item = u64>, keys: &[String]) -> Bytes {
    let request = pb::EvaluateBatchRequest { contexts: units.map(context).collect(), keys: keys.to_vec() };
    Bytes::from(request.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_a_context_per_unit_and_the_keys_once() {
        let keys = vec!["flag-0".to_owned()];
        let batch = pb::EvaluateBatchRequest::decode(batch_request([4, 5, 0].into_iter(), &keys)).unwrap();
        let units: Vec<&str> = batch.contexts.iter().map(|c| c.targeting_key.as_str()).collect();
        assert_eq!(units, ["user-4", "user-5", "user-0"]);
        assert_eq!(batch.keys, keys);
        let single = pb::EvaluateRequest::decode(evaluate_request(7, &[])).unwrap();
        assert_eq!(single.context.unwrap().targeting_key, "user-7");
        assert!(single.keys.is_empty());
    }
}
