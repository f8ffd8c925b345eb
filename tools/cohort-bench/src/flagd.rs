//! `cohort-bench flagd`: keeps `--concurrency` calls of flagd's evaluation API
//! (`flagd.evaluation.v1.Service`, as OpenFeature's flagd providers call it in RPC mode) in
//! flight over `--connections` HTTP/2 connections for `--duration`, through the raw HTTP/2
//! driver `evaluate` uses ([`crate::unary`]), then reports requests/s, decisions/s and
//! latency percentiles, and with `--server-pid` the server's CPU time per request.
//!
//! `--rpc boolean` resolves one boolean flag (`--flag`) per call with `ResolveBoolean`;
//! `--rpc all` resolves everything with `ResolveAll`. Each context is a
//! `google.protobuf.Struct` holding only `targetingKey`, cycling through `--units` units; the
//! requests are encoded once up front, as `evaluate`'s are.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use clap::{Args, ValueEnum};
use cohort_proto::convert::flagd::{Kind, Struct, Value};
use cohort_proto::flagd::evaluation::v1 as pb;
use cohort_proto::flagd::evaluation::v1::service_client::ServiceClient;
use prost::Message;
use tonic::metadata::{Ascii, MetadataValue};

use crate::outcome::LoadArgs;
use crate::report;
use crate::unary::{self, Load, Workload};

/// Which flagd call to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Rpc {
    /// `ResolveBoolean` of `--flag`.
    Boolean,
    /// `ResolveAll`.
    All,
}

impl Rpc {
    fn path(self) -> &'static str {
        match self {
            Rpc::Boolean => "/flagd.evaluation.v1.Service/ResolveBoolean",
            Rpc::All => "/flagd.evaluation.v1.Service/ResolveAll",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct FlagdArgs {
    /// The evaluation service's gRPC endpoint (flagd's API is served beside Cohort's).
    #[arg(long, env = "COHORT_BENCH_ENDPOINT", default_value = "http://127.0.0.1:50052")]
    endpoint: String,

    /// An SDK key of the environment to evaluate, sent as `authorization: Bearer`.
    #[arg(long, env = "COHORT_BENCH_SDK_KEY")]
    sdk_key: String,

    /// The call: `boolean` (ResolveBoolean of `--flag`) or `all` (ResolveAll).
    #[arg(long, env = "COHORT_BENCH_RPC", value_enum, default_value = "boolean")]
    rpc: Rpc,

    /// The boolean flag ResolveBoolean asks for (the stack's `--toggles` seeds `toggle-N`).
    #[arg(long, env = "COHORT_BENCH_FLAG", default_value = "toggle-0")]
    flag: String,

    /// HTTP/2 connections to open.
    #[arg(long, env = "COHORT_BENCH_CONNECTIONS", default_value_t = 2)]
    connections: usize,

    #[command(flatten)]
    load: LoadArgs,
}

/// A flagd benchmark failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FlagdBenchError {
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    #[error(transparent)]
    Load(#[from] unary::LoadError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("the first call failed: {0}")]
    Probe(tonic::Status),
}

/// A context of only a targeting key, as flagd providers send it.
pub(crate) fn context(unit: u64) -> Struct {
    let key = Value { kind: Some(Kind::StringValue(format!("user-{unit}"))) };
    Struct { fields: BTreeMap::from([("targetingKey".to_owned(), key)]) }
}

/// An encoded `ResolveBooleanRequest` of `flag` for one unit.
pub(crate) fn boolean_request(flag: &str, unit: u64) -> Bytes {
    let request = pb::ResolveBooleanRequest { flag_key: flag.to_owned(), context: Some(context(unit)) };
    Bytes::from(request.encode_to_vec())
}

/// An encoded `ResolveAllRequest` for one unit.
pub(crate) fn all_request(unit: u64) -> Bytes {
    Bytes::from(pb::ResolveAllRequest { context: Some(context(unit)) }.encode_to_vec())
}

/// Every request the callers cycle through, encoded once up front.
#[derive(Debug)]
struct Requests {
    encoded: Vec<Bytes>,
    rpc: Rpc,
    /// Decisions in each answer: 1, or the flags ResolveAll answers.
    decisions: u64,
}

/// One connection's calls: the next unit's request, and a spot check of the answers.
#[derive(Debug)]
struct FlagdWorkload {
    requests: Arc<Requests>,
    next: usize,
    answers: u64,
}

/// Every this many answers are decoded whole and checked.
const CHECK_EVERY: u64 = 64;

impl Workload for FlagdWorkload {
    fn next_request(&mut self, buf: &mut BytesMut) {
        self.next = (self.next + 1) % self.requests.encoded.len();
        buf.put_slice(&self.requests.encoded[self.next]);
    }

    fn count(&mut self, response: &[u8]) -> Result<u64, String> {
        self.answers += 1;
        if self.answers % CHECK_EVERY == 1 {
            let undecodable = |e: prost::DecodeError| format!("undecodable answer: {e}");
            match self.requests.rpc {
                Rpc::Boolean => {
                    let answer = pb::ResolveBooleanResponse::decode(response).map_err(undecodable)?;
                    if answer.reason.is_empty() || answer.reason == "ERROR" {
                        return Err(format!("an answer with reason {:?}", answer.reason));
                    }
                }
                Rpc::All => {
                    let answer = pb::ResolveAllResponse::decode(response).map_err(undecodable)?;
                    if answer.flags.len() as u64 != self.requests.decisions {
                        return Err(format!(
                            "{} flags in an answer, expected {}",
                            answer.flags.len(),
                            self.requests.decisions
                        ));
                    }
                }
            }
        }
        Ok(self.requests.decisions)
    }
}

/// Runs the benchmark and prints its report.
pub(crate) async fn run(args: FlagdArgs) -> Result<(), FlagdBenchError> {
    if args.load.units == 0 {
        return Err(FlagdBenchError::Settings("--units must be at least 1".to_owned()));
    }
    let authorization = format!("Bearer {}", args.sdk_key);
    let auth: MetadataValue<Ascii> = authorization
        .parse()
        .map_err(|_| FlagdBenchError::Settings("--sdk-key is not a valid header value".to_owned()))?;

    // One call first: a wrong key or flag fails here with the service's message, and the
    // environment is loaded before the clock starts.
    let channel = crate::connect::connections(&args.endpoint, 1).await?.remove(0);
    let mut client = ServiceClient::new(channel);
    let decisions = match args.rpc {
        Rpc::Boolean => {
            let mut probe = tonic::Request::new(pb::ResolveBooleanRequest {
                flag_key: args.flag.clone(),
                context: Some(context(0)),
            });
            probe.metadata_mut().insert("authorization", auth);
            client.resolve_boolean(probe).await.map_err(FlagdBenchError::Probe)?;
            1
        }
        Rpc::All => {
            let mut probe = tonic::Request::new(pb::ResolveAllRequest { context: Some(context(0)) });
            probe.metadata_mut().insert("authorization", auth);
            let all = client.resolve_all(probe).await.map_err(FlagdBenchError::Probe)?.into_inner();
            all.flags.len() as u64
        }
    };
    let encoded = (0..args.load.units.min(1 << 20))
        .map(|i| match args.rpc {
            Rpc::Boolean => boolean_request(&args.flag, i),
            Rpc::All => all_request(i),
        })
        .collect();
    let requests = Arc::new(Requests { encoded, rpc: args.rpc, decisions });

    let load = Load {
        endpoint: args.endpoint.clone(),
        path: args.rpc.path(),
        authorization,
        connections: args.connections,
        concurrency: args.load.concurrency,
        warmup: args.load.warmup,
        duration: args.load.duration,
        requests: args.load.requests,
        server_pid: args.load.server_pid,
    };
    let outcome = unary::run(&load, |i| FlagdWorkload {
        requests: requests.clone(),
        // Connections start at different units, as separate clients would.
        next: i.wrapping_mul(7919) % requests.encoded.len(),
        answers: 0,
    })
    .await?;
    let call = match args.rpc {
        Rpc::Boolean => format!("flagd ResolveBoolean of {}", args.flag),
        Rpc::All => format!("flagd ResolveAll ({decisions} flags)"),
    };
    report::line(format!(
        "{call}: {} connections, {} concurrent, {} units, {:.1}s measured after {:?} warm-up",
        args.connections,
        args.load.concurrency,
        requests.encoded.len(),
        outcome.measured.as_secs_f64(),
        args.load.warmup
    ));
    outcome.report();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_unit_as_targeting_key() {
        let boolean = pb::ResolveBooleanRequest::decode(boolean_request("toggle-0", 42)).unwrap();
        assert_eq!(boolean.flag_key, "toggle-0");
        assert_eq!(boolean.context, Some(context(42)));
        let all = pb::ResolveAllRequest::decode(all_request(7)).unwrap();
        assert_eq!(all.context, Some(context(7)));
    }

    #[test]
    fn the_context_is_what_the_service_reads_as_a_targeting_key() {
        // The evaluation service's own conversion of flagd contexts.
        let converted = cohort_proto::convert::flagd::context(Some(context(42))).unwrap();
        assert_eq!(converted.key(), Some("user-42"));
        assert_eq!(converted.attributes.len(), 0);
    }

    #[test]
    fn arguments_parse() {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: FlagdArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from([
            "flagd",
            "--sdk-key",
            "sdk_x",
            "--rpc",
            "all",
            "--concurrency",
            "48",
            "--duration",
            "10s",
        ])
        .unwrap();
        assert_eq!(cli.args.rpc, Rpc::All);
        assert_eq!(cli.args.load.concurrency, 48);
        assert_eq!(cli.args.load.duration, std::time::Duration::from_secs(10));
        assert_eq!(cli.args.flag, "toggle-0");
        assert!(
            <Cli as clap::Parser>::try_parse_from(["flagd", "--sdk-key", "k", "--rpc", "string"]).is_err()
        );
    }
}
