//! `cohort-bench events`: keeps `--concurrency` `EventService.SendBatch` calls in flight over
//! `--connections` HTTP/2 connections for `--duration`, then reports acknowledged events/s and
//! acknowledgement latency percentiles. With `--admin-url` it also reads the service's
//! `cohort_events_drained_rows_total` and reports the drain rate, waiting for the backlog.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use clap::Args;
use cohort_core::time::unix_ms;
use cohort_proto::events::v1 as pb;
use cohort_runtime::parse_duration;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::report;
use crate::unary::{self, Load, Workload};

#[derive(Debug, Clone, Args)]
pub(crate) struct EventsArgs {
    /// The event service's gRPC endpoint.
    #[arg(long, env = "COHORT_BENCH_ENDPOINT", default_value = "http://127.0.0.1:50053")]
    endpoint: String,

    /// An SDK key of the environment to send to.
    #[arg(long, env = "COHORT_BENCH_SDK_KEY")]
    sdk_key: String,

    /// HTTP/2 connections to open.
    #[arg(long, env = "COHORT_BENCH_CONNECTIONS", default_value_t = 2)]
    connections: usize,

    /// Requests in flight at once (spread over the connections).
    #[arg(long, env = "COHORT_BENCH_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,

    /// Events per SendBatch call.
    #[arg(long, env = "COHORT_BENCH_BATCH_SIZE", default_value_t = 100)]
    batch_size: usize,

    /// How long to measure (after the warm-up).
    #[arg(long, env = "COHORT_BENCH_DURATION", value_parser = parse_duration, default_value = "20s")]
    duration: Duration,

    /// Load before measuring, not counted.
    #[arg(long, env = "COHORT_BENCH_WARMUP", value_parser = parse_duration, default_value = "2s")]
    warmup: Duration,

    /// The service's admin server (e.g. `http://127.0.0.1:9093`): report the drain rate from
    /// its metrics and wait for the backlog to drain.
    #[arg(long, env = "COHORT_BENCH_ADMIN_URL")]
    admin_url: Option<String>,
}

/// A benchmark failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    #[error(transparent)]
    Load(#[from] unary::LoadError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("admin server {url}: {source}")]
    Admin {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

/// A batch template: three exposures for every metric event, like an SDK's traffic.
fn template(batch_size: usize) -> Vec<pb::Event> {
    let experiment = Uuid::new_v4().to_string();
    (0..batch_size)
        .map(|i| {
            let kind = if i % 4 == 3 {
                pb::event::Kind::Metric(pb::Metric {
                    unit: format!("user-{i:06}"),
                    name: "checkout".to_owned(),
                    value: Some(19.99),
                    properties: HashMap::from([("plan".to_owned(), "pro".to_owned())]),
                })
            } else {
                pb::event::Kind::Exposure(pb::Exposure {
                    unit: format!("user-{i:06}"),
                    experiment_id: experiment.clone(),
                    variant: if i % 2 == 0 { "control" } else { "treatment" }.to_owned(),
                    config_version: 42,
                    attributes: HashMap::from([
                        ("country".to_owned(), "NL".to_owned()),
                        ("platform".to_owned(), "ios".to_owned()),
                    ]),
                })
            };
            pb::Event { event_id: String::new(), timestamp_ms: 0, kind: Some(kind) }
        })
        .collect()
}

/// Runs the benchmark and prints its report.
pub(crate) async fn run(args: EventsArgs) -> Result<(), BenchError> {
    if args.connections == 0 || args.concurrency == 0 || args.batch_size == 0 || args.batch_size > 1000 {
        return Err(BenchError::Settings(
            "--connections and --concurrency must be at least 1, --batch-size 1 to 1000".to_owned(),
        ));
    }
    let drained_before = match &args.admin_url {
        Some(url) => Some(drained_rows(url).await?),
        None => None,
    };

    let started = Instant::now();
    let load = Load {
        endpoint: args.endpoint.clone(),
        path: "/cohort.events.v1.EventService/SendBatch",
        authorization: format!("Bearer {}", args.sdk_key),
        connections: args.connections,
        concurrency: args.concurrency,
        warmup: args.warmup,
        duration: args.duration,
        requests: None,
        server_pid: None,
    };
    let batch_size = args.batch_size;
    let outcome = unary::run(&load, |_| Batches::new(batch_size)).await?;
    let measured = outcome.measured;
    report::line(format!(
        "events: {} connections, {} concurrent, batches of {}, {:.1}s measured after {:?} warm-up",
        args.connections,
        args.concurrency,
        args.batch_size,
        measured.as_secs_f64(),
        args.warmup
    ));
    report::line(format!(
        "acknowledged: {} events in {} requests = {:.0} events/s ({:.0} requests/s)",
        outcome.counted,
        outcome.requests,
        report::rate(outcome.counted, measured),
        report::rate(outcome.requests, measured)
    ));
    report::line(format!("ack latency: {}", report::percentiles(&outcome.latency)));
    if let Some(errors) = outcome.errors_line() {
        report::line(errors);
    }

    if let (Some(url), Some(before)) = (&args.admin_url, drained_before) {
        let during = drained_rows(url).await? - before;
        report::line(format!(
            "drained during the load: {during:.0} rows = {:.0} rows/s",
            during / (args.warmup + measured).as_secs_f64()
        ));
        // Wait for the backlog: until the drained count stops moving for 3 s.
        let (mut last, mut last_change) = (during + before, Instant::now());
        let load_end = Instant::now();
        while last_change.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = drained_rows(url).await?;
            if now > last {
                (last, last_change) = (now, Instant::now());
            }
        }
        let total_drained = last - before;
        let catch_up = last_change.saturating_duration_since(load_end);
        report::line(format!(
            "drained in total: {total_drained:.0} rows in {:.1}s from the start = {:.0} rows/s; backlog cleared {:.1}s after the load",
            (last_change - started).as_secs_f64(),
            total_drained / (last_change - started).as_secs_f64(),
            catch_up.as_secs_f64()
        ));
    }
    Ok(())
}

/// One connection's batches: the template with fresh event ids and the current time.
#[derive(Debug)]
struct Batches {
    batch: pb::SendBatchRequest,
    /// Ids: a random prefix per connection and a counter, so they are unique without a
    /// random draw per event.
    prefix: u64,
    counter: u64,
}

impl Batches {
    fn new(batch_size: usize) -> Self {
        Batches {
            batch: pb::SendBatchRequest { events: template(batch_size) },
            prefix: rand::random(),
            counter: 0,
        }
    }
}

impl Workload for Batches {
    fn next_request(&mut self, buf: &mut BytesMut) {
        let ts = unix_ms(SystemTime::now());
        for e in &mut self.batch.events {
            self.counter += 1;
            e.event_id.clear();
            let _ = write!(e.event_id, "{}", Uuid::from_u64_pair(self.prefix, self.counter));
            e.timestamp_ms = ts;
        }
        // Encoding into a BytesMut cannot run out of room.
        let _ = self.batch.encode(buf);
    }

    fn count(&mut self, response: &[u8]) -> Result<u64, String> {
        let answer =
            pb::SendBatchResponse::decode(response).map_err(|e| format!("undecodable answer: {e}"))?;
        Ok(u64::from(answer.accepted))
    }
}

/// `cohort_events_drained_rows_total`, summed over tables, from the admin server.
async fn drained_rows(url: &str) -> Result<f64, BenchError> {
    let authority =
        url.trim_start_matches("http://").trim_end_matches('/').split('/').next().unwrap_or_default();
    let io = |source| BenchError::Admin { url: url.to_owned(), source };
    let mut stream = tokio::net::TcpStream::connect(authority).await.map_err(io)?;
    let request = format!("GET /metrics HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.map_err(io)?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("cohort_events_drained_rows_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}
