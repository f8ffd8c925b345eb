//! What every process exports besides its own metrics: build information, the process's
//! resources under Prometheus' standard `process_*` names, and a PostgreSQL pool's state.
//! All are read when `/metrics` is scraped, never by a background task.
//!
//! The process figures come from `/proc/self` (Linux, where the services run; elsewhere the
//! `process_*` series are absent). No maintained collector exists for prometheus-client:
//! `metrics-process` reports to the `metrics` facade, not to a prometheus-client registry.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The workspace's version: every binary is built from one workspace at one version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the binary was built from (`COHORT_GIT_COMMIT` at build time; the Dockerfile
/// passes its `GIT_COMMIT` build argument), or `unknown`.
pub const COMMIT: &str = match option_env!("COHORT_GIT_COMMIT") {
    Some(commit) if !commit.is_empty() => commit,
    _ => "unknown",
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    service: &'static str,
    version: &'static str,
    commit: &'static str,
}

/// Registers `cohort_build_info{service,version,commit} 1` and the process collector.
pub(crate) fn register_process(registry: &mut Registry, service: &'static str) {
    let labels = BuildLabels { service, version: VERSION, commit: COMMIT };
    // An info metric: the encoder appends `_info`.
    registry.sub_registry_with_prefix("cohort").register(
        "build",
        "The service, its version and the commit it was built from",
        Info::new(labels),
    );
    registry.register_collector(Box::new(ProcessCollector));
}

/// Registers `cohort_db_pool_*` gauges for `pool`, read from its status at each scrape.
pub fn register_pool(registry: &mut Registry, pool: cohort_db::Pool) {
    registry.register_collector(Box::new(PoolCollector { pool }));
}

#[derive(Debug)]
struct PoolCollector {
    pool: cohort_db::Pool,
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.pool.status();
        let gauges = [
            ("cohort_db_pool_max_connections", "Connections the pool may open", status.max_size),
            ("cohort_db_pool_connections", "Connections the pool holds, idle or in use", status.size),
            ("cohort_db_pool_available_connections", "Idle connections ready for use", status.available),
            (
                "cohort_db_pool_waiting",
                "Callers waiting for a connection, one being opened for them included",
                status.waiting,
            ),
        ];
        for (name, help, value) in gauges {
            gauge(&mut encoder, name, help, value as i64)?;
        }
        Ok(())
    }
}

fn gauge<N>(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A figure that cannot be read is left out rather than reported as 0.
        let Some(p) = Process::read() else { return Ok(()) };
        let cpu = ConstCounter::new(p.cpu_seconds);
        // The encoder appends `_total`.
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let memory = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", p.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", p.virtual_bytes),
            ("process_open_fds", "Number of open file descriptors", p.open_fds),
            ("process_threads", "Number of OS threads in the process", p.threads),
        ];
        for (name, help, value) in memory {
            gauge(&mut encoder, name, help, value as i64)?;
        }
        if let Some(max) = p.max_fds {
            gauge(&mut encoder, "process_max_fds", "Maximum number of open file descriptors", max as i64)?;
        }
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            p.start_time_seconds,
        )
    }
}

/// The process's resources, as `/proc` reports them now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    /// The soft limit; `None` when unlimited.
    pub max_fds: Option<u64>,
    pub threads: u64,
    pub start_time_seconds: f64,
}

/// `/proc`'s clock ticks per second. `USER_HZ` is part of Linux's user-space ABI and is 100 on
/// every architecture we build for; reading `sysconf` would need `libc` and unsafe code.
const TICKS_PER_SECOND: f64 = 100.0;

impl Process {
    fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Process::parse(&stat, &status, &limits, &boot, open_fds)
    }

    /// The figures from the texts of `/proc/self/stat`, `/proc/self/status`,
    /// `/proc/self/limits` and `/proc/stat`.
    pub(crate) fn parse(
        stat: &str,
        status: &str,
        limits: &str,
        boot: &str,
        open_fds: u64,
    ) -> Option<Process> {
        // The command name (field 2) may hold spaces and parentheses: fields count from the
        // last `)`. After it, field 3 is at index 0.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let (utime, stime, start_ticks) = (field(14)?, field(15)?, field(22)?);
        let kb = |key: &str| {
            let line = status.lines().find(|l| l.starts_with(key))?;
            line[key.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|v| v * 1024)
        };
        let threads = status.lines().find_map(|l| l.strip_prefix("Threads:"))?.trim().parse().ok()?;
        let boot_time: u64 = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
        let max_fds = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|soft| soft.parse().ok());
        Some(Process {
            cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
            resident_bytes: kb("VmRSS:")?,
            virtual_bytes: kb("VmSize:")?,
            open_fds,
            max_fds,
            threads,
            start_time_seconds: boot_time as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        })
    }
}

#[cfg(test)]
mod tests;
