//! `cohort-bench evaluate`: drives `EvaluationService.Evaluate` from `--concurrency` callers
//! over `--connections` HTTP/2 connections for `--duration` (or `--requests` calls), then
//! reports requests/s, decisions/s and latency percentiles.
//!
//! The keys asked for are the first `--keys` keys of the environment (read with one
//! all-keys Evaluate first); `0` asks for every key. Units cycle through `--units` distinct
//! targeting keys, so experiments enroll and exposures flow as in production.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use cohort_proto::common::v1 as common;
use cohort_proto::evaluation::v1 as pb;
use cohort_proto::evaluation::v1::evaluation_service_client::EvaluationServiceClient;
use cohort_runtime::parse_duration;
use hdrhistogram::Histogram;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::report;

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
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("listing the environment's keys: {0}")]
    Keys(tonic::Status),
}

/// One caller's counts.
#[derive(Debug)]
struct Tally {
    latency: Histogram<u64>,
    requests: u64,
    decisions: u64,
    errors: HashMap<tonic::Code, u64>,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            latency: report::latency_histogram(),
            requests: 0,
            decisions: 0,
            errors: HashMap::new(),
            first_error: None,
        }
    }
}

/// What every caller shares.
#[derive(Debug)]
struct Plan {
    auth: MetadataValue<Ascii>,
    keys: Vec<String>,
    units: Vec<String>,
    measure_from: Instant,
    deadline: Instant,
    /// Measured requests left when `--requests` is set.
    budget: Option<AtomicU64>,
}

/// Runs the benchmark and prints its report.
pub(crate) async fn run(args: EvaluateArgs) -> Result<(), EvaluateBenchError> {
    if args.connections == 0 || args.concurrency == 0 || args.units == 0 {
        return Err(EvaluateBenchError::Settings(
            "--connections, --concurrency and --units must be at least 1".to_owned(),
        ));
    }
    let auth: MetadataValue<Ascii> = format!("Bearer {}", args.sdk_key)
        .parse()
        .map_err(|_| EvaluateBenchError::Settings("--sdk-key is not a valid header value".to_owned()))?;
    let channels = crate::connect::connections(&args.endpoint, args.connections).await?;

    // The environment's keys, from one all-keys request (which also warms the environment).
    let mut probe = tonic::Request::new(pb::EvaluateRequest {
        context: Some(common::EvaluationContext { targeting_key: "bench".into(), ..Default::default() }),
        keys: Vec::new(),
    });
    probe.metadata_mut().insert("authorization", auth.clone());
    let all = EvaluationServiceClient::new(channels[0].clone())
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
    let units = (0..args.units.min(1 << 20)).map(|i| format!("user-{i}")).collect();

    let started = Instant::now();
    let plan = Arc::new(Plan {
        auth,
        keys,
        units,
        measure_from: started + args.warmup,
        deadline: started + args.warmup + args.duration,
        budget: args.requests.map(AtomicU64::new),
    });
    let mut tasks = Vec::new();
    for i in 0..args.concurrency {
        let channel = channels[i % channels.len()].clone();
        tasks.push(tokio::spawn(caller(channel, plan.clone(), i)));
    }
    let mut total = Tally::new();
    let mut last_done = plan.measure_from;
    for task in tasks {
        let Ok((t, done)) = task.await else { continue };
        let _ = total.latency.add(&t.latency);
        total.requests += t.requests;
        total.decisions += t.decisions;
        for (code, n) in t.errors {
            *total.errors.entry(code).or_default() += n;
        }
        total.first_error = total.first_error.or(t.first_error);
        last_done = last_done.max(done);
    }
    let measured = last_done.saturating_duration_since(plan.measure_from).max(Duration::from_millis(1));
    report::line(format!(
        "evaluate: {} connections, {} concurrent, {} keys per request, {} units, {:.1}s measured after {:?} warm-up",
        args.connections,
        args.concurrency,
        if args.keys == 0 { all.decisions.len() } else { args.keys },
        plan.units.len(),
        measured.as_secs_f64(),
        args.warmup
    ));
    report::line(format!(
        "throughput: {} requests = {:.0} requests/s, {} decisions = {:.0} decisions/s",
        total.requests,
        report::rate(total.requests, measured),
        total.decisions,
        report::rate(total.decisions, measured)
    ));
    report::line(format!("latency: {}", report::percentiles(&total.latency)));
    if !total.errors.is_empty() {
        report::line(format!(
            "errors: {:?} (first: {})",
            total.errors,
            total.first_error.unwrap_or_default()
        ));
    }
    Ok(())
}

/// One caller: Evaluate back to back until the deadline (or the request budget is spent);
/// returns its tally and when it stopped.
async fn caller(channel: Channel, plan: Arc<Plan>, index: usize) -> (Tally, Instant) {
    let mut client = EvaluationServiceClient::new(channel);
    let mut tally = Tally::new();
    let mut unit = index.wrapping_mul(7919);
    loop {
        let now = Instant::now();
        if now >= plan.deadline {
            return (tally, now);
        }
        if now >= plan.measure_from
            && let Some(budget) = &plan.budget
            && budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_err()
        {
            return (tally, now);
        }
        unit = (unit + 1) % plan.units.len();
        let mut request = tonic::Request::new(pb::EvaluateRequest {
            context: Some(common::EvaluationContext {
                targeting_key: plan.units[unit].clone(),
                attributes: Default::default(),
            }),
            keys: plan.keys.clone(),
        });
        request.metadata_mut().insert("authorization", plan.auth.clone());
        let sent = Instant::now();
        let result = client.evaluate(request).await;
        let done = Instant::now();
        if sent < plan.measure_from || done > plan.deadline {
            continue;
        }
        tally.requests += 1;
        match result {
            Ok(response) => {
                report::record(&mut tally.latency, done - sent);
                tally.decisions += response.into_inner().decisions.len() as u64;
            }
            Err(status) => {
                *tally.errors.entry(status.code()).or_default() += 1;
                if tally.first_error.is_none() {
                    tally.first_error = Some(format!("{:?}: {}", status.code(), status.message()));
                }
                if matches!(status.code(), tonic::Code::ResourceExhausted | tonic::Code::Unavailable) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}
