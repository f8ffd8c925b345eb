//! `cohort-bench events`: drives `EventService.SendBatch` from `--concurrency` senders over
//! `--connections` HTTP/2 connections for `--duration`, then reports acknowledged events/s and
//! acknowledgement latency percentiles. With `--admin-url` it also reads the service's
//! `cohort_events_drained_rows_total` and reports the drain rate, waiting for the backlog.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use cohort_proto::events::v1 as pb;
use cohort_proto::events::v1::event_service_client::EventServiceClient;
use cohort_runtime::parse_duration;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::report;

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
    Connect(#[from] crate::connect::ConnectError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("admin server {url}: {source}")]
    Admin {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

/// What one sender saw while measuring.
struct Tally {
    latency: Histogram<u64>,
    acked_events: u64,
    requests: u64,
    errors: HashMap<tonic::Code, u64>,
    first_error: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
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
    let channels = crate::connect::connections(&args.endpoint, args.connections).await?;
    let drained_before = match &args.admin_url {
        Some(url) => Some(drained_rows(url).await?),
        None => None,
    };

    let started = Instant::now();
    let measure_from = started + args.warmup;
    let deadline = measure_from + args.duration;
    let key: Arc<str> = format!("Bearer {}", args.sdk_key).into();
    let mut tasks = Vec::new();
    for i in 0..args.concurrency {
        let channel = channels[i % channels.len()].clone();
        let (key, batch_size) = (key.clone(), args.batch_size);
        tasks.push(tokio::spawn(sender(channel, key, batch_size, measure_from, deadline)));
    }
    let mut total = Tally {
        latency: report::latency_histogram(),
        acked_events: 0,
        requests: 0,
        errors: HashMap::new(),
        first_error: None,
    };
    for task in tasks {
        let Ok(t) = task.await else { continue };
        let _ = total.latency.add(&t.latency);
        total.acked_events += t.acked_events;
        total.requests += t.requests;
        for (code, n) in t.errors {
            *total.errors.entry(code).or_default() += n;
        }
        total.first_error = total.first_error.or(t.first_error);
    }
    let measured = args.duration;
    report::line(format!(
        "events: {} connections, {} concurrent, batches of {}, {:?} measured after {:?} warm-up",
        args.connections, args.concurrency, args.batch_size, measured, args.warmup
    ));
    report::line(format!(
        "acknowledged: {} events in {} requests = {:.0} events/s ({:.0} requests/s)",
        total.acked_events,
        total.requests,
        report::rate(total.acked_events, measured),
        report::rate(total.requests, measured)
    ));
    report::line(format!("ack latency: {}", report::percentiles(&total.latency)));
    if !total.errors.is_empty() {
        report::line(format!(
            "errors: {:?} (first: {})",
            total.errors,
            total.first_error.unwrap_or_default()
        ));
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

/// One sender: SendBatch back to back until `deadline`, counting from `measure_from`.
async fn sender(
    channel: Channel,
    key: Arc<str>,
    batch_size: usize,
    measure_from: Instant,
    deadline: Instant,
) -> Tally {
    let mut client = EventServiceClient::new(channel).max_decoding_message_size(16 << 20);
    let template = template(batch_size);
    // Ids: a random prefix per sender and a counter, so they are unique without a random
    // draw per event.
    let prefix: u64 = rand::random();
    let mut counter: u64 = 0;
    let mut tally = Tally {
        latency: report::latency_histogram(),
        acked_events: 0,
        requests: 0,
        errors: HashMap::new(),
        first_error: None,
    };
    let auth: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = match key.parse() {
        Ok(v) => v,
        Err(_) => return tally,
    };
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let ts = now_ms();
        let mut events = template.clone();
        for e in &mut events {
            counter += 1;
            e.event_id = Uuid::from_u64_pair(prefix, counter).to_string();
            e.timestamp_ms = ts;
        }
        let mut request = tonic::Request::new(pb::SendBatchRequest { events });
        request.metadata_mut().insert("authorization", auth.clone());
        let sent = Instant::now();
        let result = client.send_batch(request).await;
        let done = Instant::now();
        if sent < measure_from || done > deadline {
            continue;
        }
        tally.requests += 1;
        match result {
            Ok(response) => {
                report::record(&mut tally.latency, done - sent);
                tally.acked_events += u64::from(response.into_inner().accepted);
            }
            Err(status) => {
                *tally.errors.entry(status.code()).or_default() += 1;
                if tally.first_error.is_none() {
                    tally.first_error = Some(format!("{:?}: {}", status.code(), status.message()));
                }
                if status.code() == tonic::Code::ResourceExhausted {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    tally
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
