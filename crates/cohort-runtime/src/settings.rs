//! Settings shared by every service, from flags or `COHORT_*` environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// `EX_USAGE` from sysexits: the service was started with settings it cannot use.
pub const EX_USAGE: i32 = 64;

/// Prints a one-line reason and exits with [`EX_USAGE`]. For `main` only, before binding.
pub fn usage_error(message: impl std::fmt::Display) -> ! {
    eprintln!("invalid settings: {message}");
    std::process::exit(EX_USAGE)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging, the admin server and shutdown.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Log line format.
    #[arg(long, env = "COHORT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Address of the admin HTTP server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "COHORT_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// How long shutdown may take before remaining work is abandoned (e.g. `20s`).
    /// Kubernetes' terminationGracePeriodSeconds must be longer.
    #[arg(long, env = "COHORT_SHUTDOWN_GRACE", value_parser = parse_duration, default_value = "20s")]
    pub shutdown_grace: Duration,
}

/// The PostgreSQL connection.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, e.g. `postgres://cohort@db:5432/cohort`.
    #[arg(long, env = "COHORT_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/cohort")]
    pub database_url: String,

    /// Most connections this process opens.
    #[arg(long, env = "COHORT_DATABASE_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
}

/// Parses `250ms`, `5s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("{text:?} is not a duration like 500ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?} has an unknown unit {unit:?}; use ms, s, m or h")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
