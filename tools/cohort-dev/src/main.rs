//! `cohort-dev`: everything locally, in one process, until Ctrl-C.

// This binary's job is to print where things are and a live results table.
#![allow(clippy::print_stdout)]

mod database;
mod table;
mod traffic;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use cohort_dev::dev::{self, Setup};
use cohort_dev::stack::{Options, Service};
use cohort_runtime::{parse_duration, wait_for_signal};

/// Runs PostgreSQL (found or started), the config, evaluation, events and analysis services, a
/// demo experiment with simulated traffic through the SDK, and prints live results.
#[derive(Debug, Parser)]
#[command(name = "cohort-dev", version)]
struct Args {
    /// PostgreSQL to use (its database is used as is). Default: the local server on
    /// 127.0.0.1:5432 (database `cohort_dev`, kept between runs), else a throwaway cluster.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,

    /// Simulated users per second.
    #[arg(long, env = "COHORT_DEV_USERS_PER_SECOND", default_value_t = 400)]
    users_per_second: u32,

    /// The planted relative effect of the green button on purchases.
    #[arg(long, env = "COHORT_DEV_EFFECT", default_value_t = 0.2)]
    effect: f64,

    /// Start over: drop and recreate `cohort_dev` (on the local server) and forget the saved
    /// keys (target/cohort-dev/state.json). As a variable, 1/true/yes/on (0/false/no/off to keep).
    #[arg(long, env = "COHORT_DEV_FRESH", value_parser = clap::builder::BoolishValueParser::new())]
    fresh: bool,

    /// Where the admin and SDK keys are kept between runs (owner-only). Default:
    /// target/cohort-dev/state.json of this checkout.
    #[arg(long, env = "COHORT_DEV_STATE_FILE")]
    state_file: Option<std::path::PathBuf>,

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

    // Listening from the start: a SIGTERM or Ctrl-C during start-up (whose default would kill the
    // process, leaving a throwaway cluster behind) stops the stack as soon as it is up.
    let mut stop = std::pin::pin!(wait_for_signal());
    std::future::poll_fn(|cx| {
        let _ = stop.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
    let db = database::Database::prepare(args.database_url.as_deref(), args.fresh)
        .await
        .context("preparing PostgreSQL")?;
    println!("PostgreSQL   {}", db.url);
    if !db.persists() {
        println!("             (a throwaway cluster: nothing made in this run survives it)");
    }
    let spool = std::env::temp_dir().join(format!("cohort-dev-spool-{}", std::process::id()));
    let setup = Setup {
        database_url: db.url.clone(),
        options: Options::dev(spool.clone()),
        state_file: db.persists().then(|| args.state_file.clone().unwrap_or_else(dev::default_state_file)),
        fresh: args.fresh,
    };
    let started = match dev::start(&setup).await {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&spool);
            db.stop().await;
            return Err(e.context("starting the services"));
        }
    };
    let (mut stack, demo) = (started.stack, started.demo);
    // `make dev` builds the page first; without it the rest still runs.
    if let Err(e) = stack.add(Service::Console, &[]).await {
        eprintln!(
            "console not started ({e}); build it with: npm ci --prefix console && npm run build --prefix console"
        );
    }
    println!("{}", stack.describe());
    for note in &started.notes {
        println!("note: {note}");
    }
    if started.reused {
        println!(
            "\nkept from the last run: organization {}, its keys and definitions (--fresh starts over)",
            started.organization
        );
    }
    let (config, evaluation) = match (stack.addrs(Service::Config), stack.addrs(Service::Evaluation)) {
        (Some(c), Some(e)) => (c, e),
        _ => anyhow::bail!("the stack started without config or evaluation"),
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `COHORT_DEV_FRESH=1 make dev`, as the README has it: the variable goes through the
    /// argument's value parser, tried here as an explicit value.
    #[test]
    fn fresh_takes_the_usual_spellings_of_yes_and_no() {
        let fresh = Args::command().get_arguments().find(|a| a.get_id() == "fresh").expect("--fresh").clone();
        let probe = clap::Command::new("probe").arg(fresh.action(clap::ArgAction::Set));
        for (value, yes) in
            [("1", true), ("true", true), ("yes", true), ("on", true), ("0", false), ("no", false)]
        {
            let m = probe
                .clone()
                .try_get_matches_from(["probe", "--fresh", value])
                .unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(m.get_one::<bool>("fresh"), Some(&yes), "{value}");
        }
        assert!(Args::try_parse_from(["cohort-dev", "--fresh"]).expect("a bare flag").fresh);
        assert!(!Args::try_parse_from(["cohort-dev"]).expect("no flag").fresh);
    }
}
