//! `cohort-bench`: load generators for Cohort's services, one subcommand per service.
//!
//! # Layout
//! - `connect`: the load generators' connections.
//! - [`evaluate`]: `cohort-bench evaluate`, Evaluate and EvaluateBatch load against the
//!   evaluation service.
//! - [`flagd`]: `cohort-bench flagd`, flagd's ResolveBoolean and ResolveAll against the
//!   evaluation service.
//! - [`http_json`]: `cohort-bench http`, the evaluation service's HTTP APIs (OFREP and
//!   `/api/v1/evaluate`).
//! - [`events`]: `cohort-bench events`, SendBatch load against the event service.
//! - [`report`]: HDR-histogram reporting shared by every subcommand.
//! - [`unary`]: the lean HTTP/2 driver the gRPC subcommands' calls go through; [`http1`]: its
//!   HTTP/1.1 keep-alive counterpart. [`outcome`]: what both share. [`cpu`]: the server's
//!   CPU time from `/proc`.

mod connect;
mod cpu;
mod evaluate;
mod events;
mod flagd;
mod http1;
mod http_json;
mod outcome;
mod report;
mod unary;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cohort-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Acknowledged events/s and ack latency of the event service, and its drain rate.
    Events(events::EventsArgs),
    /// Evaluate requests/s, decisions/s and latency of the evaluation service.
    Evaluate(evaluate::EvaluateArgs),
    /// flagd ResolveBoolean or ResolveAll requests/s and latency of the evaluation service.
    Flagd(flagd::FlagdArgs),
    /// HTTP/1.1 requests/s and latency of the evaluation service's OFREP and JSON APIs.
    Http(http_json::HttpArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Events(args) => events::run(args).await?,
        Command::Evaluate(args) => evaluate::run(args).await?,
        Command::Flagd(args) => flagd::run(args).await?,
        Command::Http(args) => http_json::run(args).await?,
    }
    Ok(())
}
