//! `cohort-bench`: load generators for Cohort's services, one subcommand per service.
//!
//! # Layout
//! - `connect`: the load generators' connections.
//! - [`evaluate`]: `cohort-bench evaluate`, Evaluate load against the evaluation service.
//! - [`events`]: `cohort-bench events`, SendBatch load against the event service.
//! - [`report`]: HDR-histogram reporting shared by every subcommand.
//! - [`unary`]: the lean HTTP/2 driver the subcommands' calls go through.

mod connect;
mod evaluate;
mod events;
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Events(args) => events::run(args).await?,
        Command::Evaluate(args) => evaluate::run(args).await?,
    }
    Ok(())
}
