//! What the load drivers ([`crate::unary`], [`crate::http1`]) share: when calls may start and
//! which of them count ([`Schedule`]), and the run's results ([`Outcome`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use cohort_runtime::parse_duration;

use crate::report;

/// A run's clock: a warm-up whose calls are not counted, then the measured window, and
/// optionally a budget of measured calls.
#[derive(Debug)]
pub(crate) struct Schedule {
    pub(crate) measure_from: Instant,
    pub(crate) deadline: Instant,
    budget: Option<AtomicU64>,
}

impl Schedule {
    /// Starting now.
    pub(crate) fn new(warmup: Duration, duration: Duration, requests: Option<u64>) -> Schedule {
        let started = Instant::now();
        Schedule {
            measure_from: started + warmup,
            deadline: started + warmup + duration,
            budget: requests.map(AtomicU64::new),
        }
    }

    /// Whether another call may start now.
    pub(crate) fn may_start(&self, now: Instant) -> bool {
        if now >= self.deadline {
            return false;
        }
        match &self.budget {
            Some(budget) if now >= self.measure_from => {
                budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
            }
            _ => true,
        }
    }

    /// Whether a call sent at `sent` and answered at `done` is measured: sent after the
    /// warm-up and answered before the deadline.
    pub(crate) fn measures(&self, sent: Instant, done: Instant) -> bool {
        sent >= self.measure_from && done <= self.deadline
    }
}

/// The whole run's results.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) latency: Histogram<u64>,
    /// Measured calls, successful or not.
    pub(crate) requests: u64,
    /// What the successful measured calls counted for (decisions, events accepted).
    pub(crate) counted: u64,
    /// Failed measured calls by code (a gRPC code name, an HTTP status, `transport`).
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) first_error: Option<String>,
    /// From the end of the warm-up to the last measured call.
    pub(crate) measured: Duration,
    /// The server process's CPU time (user + system) over the measured window, when asked
    /// for (`--server-pid`).
    pub(crate) server_cpu: Option<Duration>,
}

impl Outcome {
    pub(crate) fn new() -> Self {
        Outcome {
            latency: report::latency_histogram(),
            requests: 0,
            counted: 0,
            errors: BTreeMap::new(),
            first_error: None,
            measured: Duration::ZERO,
            server_cpu: None,
        }
    }

    /// Throughput, latency, the server's CPU and errors, a line each.
    pub(crate) fn report(&self) {
        report::line(format!(
            "throughput: {} requests = {:.0} requests/s, {} decisions = {:.0} decisions/s",
            self.requests,
            report::rate(self.requests, self.measured),
            self.counted,
            report::rate(self.counted, self.measured)
        ));
        report::line(format!("latency: {}", report::percentiles(&self.latency)));
        if let Some(cpu) = self.server_cpu_line() {
            report::line(cpu);
        }
        if let Some(errors) = self.errors_line() {
            report::line(errors);
        }
    }

    pub(crate) fn merge(&mut self, other: Outcome) {
        let _ = self.latency.add(&other.latency);
        self.requests += other.requests;
        self.counted += other.counted;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        self.first_error = self.first_error.take().or(other.first_error);
        self.measured = self.measured.max(other.measured);
        self.server_cpu = self.server_cpu.or(other.server_cpu);
    }

    /// A measured call that succeeded: its latency and what it counted for.
    pub(crate) fn success(&mut self, schedule: &Schedule, done: Instant, latency: Duration, counted: u64) {
        self.requests += 1;
        self.measured = self.measured.max(done - schedule.measure_from);
        report::record(&mut self.latency, latency);
        self.counted += counted;
    }

    /// A measured call that failed.
    pub(crate) fn failure(&mut self, schedule: &Schedule, done: Instant, code: String, message: String) {
        self.requests += 1;
        self.measured = self.measured.max(done.saturating_duration_since(schedule.measure_from));
        self.error(code, message);
    }

    /// An error outside any one measured call (a broken connection, a panicked task).
    pub(crate) fn error(&mut self, code: String, message: String) {
        *self.errors.entry(code).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }

    /// The errors line of a report, if there were any.
    pub(crate) fn errors_line(&self) -> Option<String> {
        (!self.errors.is_empty()).then(|| {
            format!("errors: {:?} (first: {})", self.errors, self.first_error.as_deref().unwrap_or(""))
        })
    }

    /// The server CPU line of a report, if it was measured.
    pub(crate) fn server_cpu_line(&self) -> Option<String> {
        let cpu = self.server_cpu?;
        let per_request = cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64;
        Some(format!(
            "server CPU: {:.2} s = {per_request:.1} µs per request, {:.2} cores",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / self.measured.as_secs_f64().max(1e-9)
        ))
    }
}

/// How long and how hard a benchmark loads the service, shared by its commands.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// Requests in flight at once (spread over the connections).
    #[arg(long, env = "COHORT_BENCH_CONCURRENCY", default_value_t = 32)]
    pub(crate) concurrency: usize,

    /// Distinct targeting keys the requests cycle through.
    #[arg(long, env = "COHORT_BENCH_UNITS", default_value_t = 100_000)]
    pub(crate) units: u64,

    /// How long to measure (after the warm-up).
    #[arg(long, env = "COHORT_BENCH_DURATION", value_parser = parse_duration, default_value = "20s")]
    pub(crate) duration: Duration,

    /// Load before measuring, not counted.
    #[arg(long, env = "COHORT_BENCH_WARMUP", value_parser = parse_duration, default_value = "2s")]
    pub(crate) warmup: Duration,

    /// Stop after this many measured requests (the duration still bounds the run).
    #[arg(long, env = "COHORT_BENCH_REQUESTS")]
    pub(crate) requests: Option<u64>,

    /// The server's process id: report its CPU time (user + system, from `/proc`) per request
    /// over the measured window.
    #[arg(long, env = "COHORT_BENCH_SERVER_PID")]
    pub(crate) server_pid: Option<u32>,
}
