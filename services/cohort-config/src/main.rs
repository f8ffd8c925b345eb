//! `cohort-config`: serve the config API, migrate the database, or bootstrap a tenant.

// `bootstrap` prints the new admin key for the operator; that is its output.
#![allow(clippy::print_stdout)]

use anyhow::Context;
use cohort_config::settings::{Cli, Command};
use cohort_config::{Listeners, run};
use cohort_runtime::{init_tracing, parse_settings, shutdown_on_signal, usage_error};

// mimalloc: the services allocate per request (messages, strings); it is markedly cheaper
// than the system allocator under load (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = parse_settings();
    if let Err(reason) = cli.validate() {
        usage_error(reason);
    }
    let settings = cli.serve;
    init_tracing(settings.common.log_format);
    let pool = || {
        let options = cohort_db::PoolOptions {
            search_path: vec![cohort_db::migrate::CONFIG.name.into()],
            ..Default::default()
        };
        cohort_db::connect(&settings.database.database_url, &options).context("database url")
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate { schema } => {
            let schema = match schema.as_str() {
                "events" => &cohort_db::migrate::EVENTS,
                "analysis" => &cohort_db::migrate::ANALYSIS,
                _ => &cohort_db::migrate::CONFIG,
            };
            let applied = cohort_db::migrate(&pool()?, schema).await.context("migrating")?;
            tracing::info!(applied = ?applied, "database is up to date");
            Ok(())
        }
        Command::Bootstrap { organization, environment } => {
            println!("{}", cohort_config::bootstrap(pool()?, &organization, &environment).await?);
            Ok(())
        }
        Command::Serve => {
            let listeners =
                Listeners::bind(settings.grpc_addr, settings.http_addr, settings.common.admin_addr).await?;
            run(settings, listeners, shutdown_on_signal()).await
        }
    }
}
