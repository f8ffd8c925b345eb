//! `cohort-dev`: everything locally, in one process, until Ctrl-C.

// This binary's job is to print where things are and a live results table.
#![allow(clippy::print_stdout)]

mod database;
mod demo;
mod table;
mod traffic;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use cohort_dev::stack::{Options, Service, Stack};
use cohort_runtime::{parse_duration, wait_for_signal};

/// Runs PostgreSQL (found or started), the config, evaluation, events and analysis services, a
/// demo experiment with simulated traffic through the SDK, and prints live results.
#[derive(Debug, Parser)]
#[command(name = "cohort-dev", version)]
struct Args {
    /// PostgreSQL to use (its database is used as is). Default: the local server on
    /// 127.0.0.1:5432 (database `cohort_dev`, recreated), else a throwaway cluster.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,

    /// Simulated users per second.
    #[arg(long, env = "COHORT_DEV_USERS_PER_SECOND", default_value_t = 400)]
    users_per_second: u32,

    /// The planted relative effect of the green button on purchases.
    #[arg(long, env = "COHORT_DEV_EFFECT", default_value_t = 0.2)]
    effect: f64,

    /// How often the results table refreshes.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    refresh: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(args.effect > -0.9 && args.effect < 5.0) {
        cohort_runtime::usage_error("--effect must be between -0.9 and 5");
    }
    // Quiet by default: the table is the output. RUST_LOG=info shows the services' logs.
    cohort_runtime::telemetry::init_tracing_with_default(cohort_runtime::settings::LogFormat::Text, "warn");

    let db =
        database::Database::prepare(args.database_url.as_deref()).await.context("preparing PostgreSQL")?;
    println!("PostgreSQL   {}", db.url);
    let spool = std::env::temp_dir().join(format!("cohort-dev-spool-{}", std::process::id()));
    let mut stack =
        Stack::start(&db.url, &Options::dev(spool.clone())).await.context("starting the services")?;
    // `make dev` builds the page first; without it the rest still runs.
    if let Err(e) = stack.add(Service::Console, &[]).await {
        eprintln!(
            "console not started ({e}); build it with: npm ci --prefix console && npm run build --prefix console"
        );
    }
    println!("{}", stack.describe());
    let (config, evaluation) = match (stack.addrs(Service::Config), stack.addrs(Service::Evaluation)) {
        (Some(c), Some(e)) => (c, e),
        _ => anyhow::bail!("the stack started without config or evaluation"),
    };
    let demo = demo::apply(&stack).await.context("applying the demo")?;
    if let Some(console) = stack.addrs(Service::Console) {
        println!("\nconsole      {}  (sign in with the admin key)", console.http_url());
    }
    println!("\nadmin key    {}", demo.admin_key);
    println!("sdk key      {}", demo.sdk_key);
    println!(
        "\ntry:  COHORT_ENDPOINT={} COHORT_API_KEY={} cargo run -q -p cohort-ctl -- list\n",
        config.grpc_url(),
        demo.admin_key
    );
    println!(
        "      curl -s -H 'authorization: Bearer {}' -d '{{\"context\": {{\"targeting_key\": \"user-1\"}}}}' http://{}/api/v1/evaluate\n",
        demo.sdk_key, evaluation.http
    );

    let traffic = traffic::Traffic::start(&stack, &demo, args.users_per_second, args.effect).await?;
    let mut ticker = tokio::time::interval(args.refresh);
    let stop = wait_for_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => table::print(&stack, &demo, &traffic).await,
        }
    }
    println!("\nstopping: flushing events, draining services…");
    traffic.stop().await;
    if let Err(e) = stack.stop().await {
        println!("{e}");
    }
    let _ = std::fs::remove_dir_all(&spool);
    db.stop().await;
    println!("stopped.");
    Ok(())
}
