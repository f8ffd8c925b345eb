//! Settings shared by every service, from flags or `COHORT_*` environment variables, and the
//! one way a bad setting ends a process: exit code 64 and one line naming it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser, ValueEnum};

/// `EX_USAGE` from sysexits: the service was started with settings it cannot use.
pub const EX_USAGE: i32 = 64;

/// Longest duration any setting accepts; more is a typo, and would overflow deadlines.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Prints a one-line reason and exits with [`EX_USAGE`]. For `main` only, before binding.
pub fn usage_error(message: impl std::fmt::Display) -> ! {
    eprintln!("invalid settings: {}", one_line(&message.to_string()));
    std::process::exit(EX_USAGE)
}

/// Parses the command line and environment of a binary: `--help` and `--version` print and
/// exit 0; anything clap refuses (a bad value, an unknown flag, a missing argument, in a
/// subcommand too) is a [`usage_error`] naming the argument, not clap's multi-line help.
pub fn parse_settings<P: Parser>() -> P {
    P::try_parse().unwrap_or_else(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
        _ => usage_error(clap_reason(&e)),
    })
}

/// Clap's message without its `error:` prefix, usage and `--help` hint, on one line, e.g.
/// `invalid value 'x' for '--grpc-addr <GRPC_ADDR>': invalid socket address syntax`.
pub fn clap_reason(error: &clap::Error) -> String {
    // Display renders without colours.
    let text = error.to_string();
    let mut joined = String::new();
    let lines = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty());
    for line in lines {
        // A line ending in `:` introduces a list (`required arguments were not provided:`).
        if !joined.is_empty() {
            joined.push_str(if joined.ends_with(':') { " " } else { "; " });
        }
        joined.push_str(line);
    }
    joined.strip_prefix("error: ").unwrap_or(&joined).to_owned()
}

/// `text` with its lines joined, so a reason is always one line.
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
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

    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
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

impl DatabaseArgs {
    /// Checks the URL the way the pool will read it; the message names the setting and does
    /// not repeat the URL (it may hold a password).
    /// `sslmode` and `sslrootcert` included: the CA file is read now, so a missing one is a
    /// bad setting rather than a failure at the first connection.
    pub fn validate(&self) -> Result<(), String> {
        let url = cohort_db::DatabaseUrl::parse(&self.database_url).map_err(|e| {
            // The chain says which part is wrong; the error alone only that something is.
            format!("--database-url is not a valid PostgreSQL URL: {}", cohort_core::error::chain(&e))
        })?;
        url.tls().map_err(|e| format!("--database-url: {e}"))?;
        let config = url.config();
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err("--database-url names no host".into());
        }
        Ok(())
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h` (a bare number is seconds, fractions are allowed), up to
/// [`MAX_DURATION`].
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
    // Compared as seconds first: `Duration::from_secs_f64` panics past u64::MAX seconds.
    if seconds > MAX_DURATION.as_secs_f64() {
        return Err(format!("{text:?} is longer than the longest allowed, 365 days"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
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
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn oversized_durations_are_errors_not_panics() {
        for text in ["99999999999999999999s", "99999999999999999999", "1e400", "8761h", "31622400001ms"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        let long = format!("{}s", "9".repeat(400));
        assert!(parse_duration(&long).is_err());
    }

    #[derive(Debug, Parser)]
    struct Test {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    }

    fn reason(args: &[&str]) -> String {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        clap_reason(&Test::try_parse_from(all).unwrap_err())
    }

    #[test]
    fn clap_errors_become_one_line_naming_the_argument() {
        let r = reason(&["--shutdown-grace", "99999999999999999999s"]);
        assert!(r.starts_with("invalid value '99999999999999999999s' for '--shutdown-grace"), "{r}");
        assert!(r.contains("365 days"), "{r}");
        let r = reason(&["--admin-addr", "nowhere"]);
        assert!(r.contains("--admin-addr") && !r.contains('\n'), "{r}");
        let r = reason(&["--log-format", "xml"]);
        assert!(r.contains("--log-format") && !r.contains('\n'), "{r}");
        let r = reason(&["--no-such-flag"]);
        assert!(r.contains("--no-such-flag") && !r.contains('\n') && !r.contains("Usage"), "{r}");
    }

    #[test]
    fn database_urls_are_checked_without_repeating_them() {
        let args = |url: &str| DatabaseArgs { database_url: url.to_owned(), database_max_connections: 4 };
        args("postgres://cohort:secret@db:5432/cohort").validate().unwrap();
        args("host=db user=cohort dbname=cohort").validate().unwrap();
        for bad in
            ["postgres://cohort:secret@db:notaport/cohort", "mysql://cohort:secret@db/x", "postgres://"]
        {
            let e = args(bad).validate().unwrap_err();
            assert!(e.starts_with("--database-url"), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(one_line("a\n\n  b \n"), "a; b");
    }
}
