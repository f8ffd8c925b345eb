//! `cohort-bench http`: keeps `--concurrency` JSON requests to the evaluation service's HTTP
//! API in flight over `--connections` HTTP/1.1 keep-alive connections (by default one per
//! request in flight) for `--duration`, through the raw driver [`crate::http1`], then reports
//! requests/s, decisions/s and latency percentiles, and with `--server-pid` the server's CPU
//! time per request.
//!
//! `--path` picks the API:
//! - `ofrep-flag`: OFREP's `POST /ofrep/v1/evaluate/flags/{--flag}`, body
//!   `{"context":{"targetingKey":"user-N"}}`;
//! - `ofrep-bulk`: OFREP's `POST /ofrep/v1/evaluate/flags` (every flag and running
//!   experiment), the same body, no `If-None-Match`: every answer is evaluated;
//! - `evaluate`: `POST /api/v1/evaluate`, body
//!   `{"context":{"targeting_key":"user-N"},"keys":["<--flag>"]}` (`--all-keys`: `"keys":[]`,
//!   every key).
//!
//! The key goes in `Authorization: Bearer`. Units cycle through `--units` targeting keys.

use clap::{Args, ValueEnum};

use crate::http1::{self, Load, Workload};
use crate::outcome::LoadArgs;
use crate::report;

/// Which HTTP API to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Api {
    /// OFREP, one flag (`--flag`).
    OfrepFlag,
    /// OFREP, bulk: every flag and running experiment.
    OfrepBulk,
    /// `/api/v1/evaluate`, `--flag` (or every key with `--all-keys`).
    Evaluate,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct HttpArgs {
    /// The evaluation service's HTTP endpoint.
    #[arg(long, env = "COHORT_BENCH_HTTP_ENDPOINT", default_value = "http://127.0.0.1:8082")]
    endpoint: String,

    /// The API to call.
    #[arg(long = "path", env = "COHORT_BENCH_PATH", value_enum)]
    api: Api,

    /// An SDK key of the environment to evaluate, sent as `Authorization: Bearer`.
    #[arg(long, env = "COHORT_BENCH_SDK_KEY")]
    sdk_key: String,

    /// The flag `ofrep-flag` and `evaluate` ask for.
    #[arg(long, env = "COHORT_BENCH_FLAG", default_value = "flag-0")]
    flag: String,

    /// `evaluate` asks for every key (an empty `keys`) instead of `--flag`.
    #[arg(long, env = "COHORT_BENCH_ALL_KEYS")]
    all_keys: bool,

    /// HTTP/1.1 connections to open (default: `--concurrency`, one request in flight on each;
    /// fewer pipeline the requests).
    #[arg(long, env = "COHORT_BENCH_CONNECTIONS")]
    connections: Option<usize>,

    #[command(flatten)]
    load: LoadArgs,
}

/// An HTTP benchmark failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpBenchError {
    #[error(transparent)]
    Load(#[from] http1::LoadError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("the first request failed: {0}")]
    Probe(String),
}

/// Every request of a run but for its unit: the head up to the content length's value, and
/// the body around the unit's number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    head: Vec<u8>,
    body_prefix: Vec<u8>,
    body_suffix: Vec<u8>,
}

impl Template {
    /// The run's requests to `authority`.
    pub(crate) fn new(
        api: Api,
        authority: &str,
        authorization: &str,
        flag: &str,
        all_keys: bool,
    ) -> Template {
        let json = |s: &str| serde_json::to_string(s).expect("a string serializes");
        let (path, body_prefix, body_suffix) = match api {
            Api::OfrepFlag => (
                format!("/ofrep/v1/evaluate/flags/{}", percent_encode(flag)),
                r#"{"context":{"targetingKey":"user-"#.to_owned(),
                r#""}}"#.to_owned(),
            ),
            Api::OfrepBulk => (
                "/ofrep/v1/evaluate/flags".to_owned(),
                r#"{"context":{"targetingKey":"user-"#.to_owned(),
                r#""}}"#.to_owned(),
            ),
            Api::Evaluate => (
                "/api/v1/evaluate".to_owned(),
                r#"{"context":{"targeting_key":"user-"#.to_owned(),
                if all_keys {
                    r#""},"keys":[]}"#.to_owned()
                } else {
                    format!(r#""}},"keys":[{}]}}"#, json(flag))
                },
            ),
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {authority}\r\nauthorization: {authorization}\r\n\
             content-type: application/json\r\ncontent-length: "
        );
        Template {
            head: head.into_bytes(),
            body_prefix: body_prefix.into_bytes(),
            body_suffix: body_suffix.into_bytes(),
        }
    }

    /// Appends the request for `unit` to `buf`.
    pub(crate) fn write(&self, unit: u64, buf: &mut Vec<u8>) {
        let mut digits = [0u8; 20];
        let unit = decimal(unit, &mut digits);
        let length = self.body_prefix.len() + unit.len() + self.body_suffix.len();
        buf.extend_from_slice(&self.head);
        buf.extend_from_slice(decimal(length as u64, &mut [0u8; 20]));
        buf.extend_from_slice(b"\r\n\r\n");
        buf.extend_from_slice(&self.body_prefix);
        buf.extend_from_slice(unit);
        buf.extend_from_slice(&self.body_suffix);
    }
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// A flag key as one path segment: everything but unreserved characters percent-encoded.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The decisions in a 200 answer's body: 1 for one OFREP flag (which must be `flag`), the
/// `flags` of an OFREP bulk answer, the `decisions` of `/api/v1/evaluate`.
pub(crate) fn decisions_in(api: Api, flag: &str, body: &[u8]) -> Result<u64, String> {
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("an answer that is not JSON: {e}"))?;
    let count = match api {
        Api::OfrepFlag => {
            let key = answer.get("key").and_then(|k| k.as_str());
            if key != Some(flag) {
                return Err(format!("an answer for {key:?}, expected {flag:?}"));
            }
            Some(1)
        }
        Api::OfrepBulk => answer.get("flags").and_then(|f| f.as_array()).map(|f| f.len() as u64),
        Api::Evaluate => answer.get("decisions").and_then(|d| d.as_object()).map(|d| d.len() as u64),
    };
    count.ok_or_else(|| format!("an answer without its decisions: {answer}"))
}

/// One connection's requests: the next unit's, and a spot check of the answers.
#[derive(Debug)]
struct JsonWorkload {
    template: std::sync::Arc<Template>,
    api: Api,
    flag: String,
    units: u64,
    next: u64,
    answers: u64,
    /// Decisions in each answer, from the first request.
    decisions: u64,
}

/// Every this many answers are parsed whole and their decisions counted.
const CHECK_EVERY: u64 = 64;

impl Workload for JsonWorkload {
    fn next_request(&mut self, buf: &mut Vec<u8>) {
        self.next = (self.next + 1) % self.units;
        self.template.write(self.next, buf);
    }

    fn count(&mut self, body: &[u8]) -> Result<u64, String> {
        self.answers += 1;
        if self.answers % CHECK_EVERY == 1 {
            let n = decisions_in(self.api, &self.flag, body)?;
            if n != self.decisions {
                return Err(format!("{n} decisions in an answer, expected {}", self.decisions));
            }
        }
        Ok(self.decisions)
    }
}

/// Runs the benchmark and prints its report.
pub(crate) async fn run(args: HttpArgs) -> Result<(), HttpBenchError> {
    if args.load.units == 0 {
        return Err(HttpBenchError::Settings("--units must be at least 1".to_owned()));
    }
    let authorization = format!("Bearer {}", args.sdk_key);
    if authorization.bytes().any(|b| b.is_ascii_control()) {
        return Err(HttpBenchError::Settings("--sdk-key is not a valid header value".to_owned()));
    }
    let authority = http1::authority(&args.endpoint)?.to_owned();
    let template =
        std::sync::Arc::new(Template::new(args.api, &authority, &authorization, &args.flag, args.all_keys));

    // One request first: a wrong key or flag fails here with the service's answer, the
    // environment is loaded before the clock starts, and the answer says how many decisions
    // each one holds.
    let mut first = Vec::new();
    template.write(0, &mut first);
    let (status, body) = http1::once(&authority, &first).await?;
    if status != 200 {
        return Err(HttpBenchError::Probe(format!("{status}: {}", String::from_utf8_lossy(&body))));
    }
    let decisions = decisions_in(args.api, &args.flag, &body).map_err(HttpBenchError::Probe)?;

    let connections = args.connections.unwrap_or(args.load.concurrency);
    let load = Load {
        authority,
        connections,
        concurrency: args.load.concurrency,
        warmup: args.load.warmup,
        duration: args.load.duration,
        requests: args.load.requests,
        server_pid: args.load.server_pid,
    };
    let outcome = http1::run(&load, |i| JsonWorkload {
        template: template.clone(),
        api: args.api,
        flag: args.flag.clone(),
        units: args.load.units,
        // Connections start at different units, as separate clients would.
        next: (i as u64).wrapping_mul(7919) % args.load.units,
        answers: 0,
        decisions,
    })
    .await?;
    let api = match args.api {
        Api::OfrepFlag => format!("OFREP flag {}", args.flag),
        Api::OfrepBulk => "OFREP bulk".to_owned(),
        Api::Evaluate if args.all_keys => "/api/v1/evaluate, every key".to_owned(),
        Api::Evaluate => format!("/api/v1/evaluate of {}", args.flag),
    };
    report::line(format!(
        "http {api}: {connections} connections, {} concurrent, {decisions} decisions per request, {} units, {:.1}s measured after {:?} warm-up",
        args.load.concurrency,
        args.load.units,
        outcome.measured.as_secs_f64(),
        args.load.warmup
    ));
    outcome.report();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request's head lines and its body, checking the content length against the body.
    fn split(request: &[u8]) -> (String, serde_json::Value) {
        let text = std::str::from_utf8(request).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a content-length")
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        (head.to_owned(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn ofrep_requests_carry_the_targeting_key() {
        let template = Template::new(Api::OfrepFlag, "127.0.0.1:8082", "Bearer sdk_x", "flag-0", false);
        let mut buf = Vec::new();
        template.write(1234567, &mut buf);
        let (head, body) = split(&buf);
        assert!(
            head.starts_with("POST /ofrep/v1/evaluate/flags/flag-0 HTTP/1.1\r\nhost: 127.0.0.1:8082\r\n")
        );
        assert!(head.contains("\r\nauthorization: Bearer sdk_x\r\n"));
        assert_eq!(body, serde_json::json!({"context": {"targetingKey": "user-1234567"}}));

        let bulk = Template::new(Api::OfrepBulk, "h:1", "Bearer k", "ignored", false);
        let mut buf = Vec::new();
        bulk.write(0, &mut buf);
        let (head, body) = split(&buf);
        assert!(head.starts_with("POST /ofrep/v1/evaluate/flags HTTP/1.1\r\n"));
        assert_eq!(body, serde_json::json!({"context": {"targetingKey": "user-0"}}));
    }

    #[test]
    fn evaluate_requests_are_what_the_service_reads() {
        let template = Template::new(Api::Evaluate, "h:1", "Bearer k", "flag-\"0\"", false);
        let mut buf = Vec::new();
        template.write(42, &mut buf);
        // Requests follow each other in one buffer.
        template.write(u64::MAX, &mut buf);
        let second = buf.windows(4).rposition(|w| w == b"POST").unwrap();
        let (head, body) = split(&buf[..second]);
        assert!(head.starts_with("POST /api/v1/evaluate HTTP/1.1\r\n"));
        assert_eq!(body["keys"], serde_json::json!(["flag-\"0\""]));
        // The context is cohort-core's, as the service deserializes it.
        let context: cohort_core::Context = serde_json::from_value(body["context"].clone()).unwrap();
        assert_eq!(context.key(), Some("user-42"));
        let (_, body) = split(&buf[second..]);
        assert_eq!(body["context"]["targeting_key"], format!("user-{}", u64::MAX));

        let all = Template::new(Api::Evaluate, "h:1", "Bearer k", "flag-0", true);
        let mut buf = Vec::new();
        all.write(3, &mut buf);
        assert_eq!(split(&buf).1["keys"], serde_json::json!([]));
    }

    #[test]
    fn flag_keys_are_one_path_segment() {
        assert_eq!(percent_encode("flag-0_x.y~z"), "flag-0_x.y~z");
        assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn decisions_are_counted_per_api() {
        let flag = br#"{"key":"flag-0","value":"beta","variant":"b","reason":"SPLIT","metadata":{}}"#;
        assert_eq!(decisions_in(Api::OfrepFlag, "flag-0", flag), Ok(1));
        assert!(decisions_in(Api::OfrepFlag, "flag-1", flag).is_err());
        let bulk = br#"{"flags":[{"key":"flag-0","value":"a"},{"key":"x","errorCode":"GENERAL"}]}"#;
        assert_eq!(decisions_in(Api::OfrepBulk, "", bulk), Ok(2));
        let evaluate = br#"{"config_version":3,"decisions":{"flag-0":{"variant":"a"},"flag-1":{}}}"#;
        assert_eq!(decisions_in(Api::Evaluate, "", evaluate), Ok(2));
        assert!(decisions_in(Api::Evaluate, "", b"{}").is_err());
        assert!(decisions_in(Api::OfrepBulk, "", b"not json").is_err());
    }

    #[test]
    fn arguments_parse() {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: HttpArgs,
        }
        let parse = |args: &[&str]| <Cli as clap::Parser>::try_parse_from(args).map(|c| c.args);
        let args = parse(&["http", "--path", "ofrep-bulk", "--sdk-key", "k", "--concurrency", "16"]).unwrap();
        assert_eq!(args.api, Api::OfrepBulk);
        assert_eq!(args.load.concurrency, 16);
        assert_eq!(args.connections, None);
        assert_eq!(args.flag, "flag-0");
        let args =
            parse(&["http", "--path", "evaluate", "--sdk-key", "k", "--all-keys", "--connections", "2"])
                .unwrap();
        assert_eq!(args.api, Api::Evaluate);
        assert!(args.all_keys);
        assert_eq!(args.connections, Some(2));
        assert!(parse(&["http", "--sdk-key", "k"]).is_err(), "--path is required");
        assert!(parse(&["http", "--path", "ofrep", "--sdk-key", "k"]).is_err());
    }
}
