//! `cohort-console`: the console's page and its JSON API.

use cohort_console::settings::Cli;
use cohort_console::{Listeners, run};
use cohort_runtime::{init_tracing, parse_settings, shutdown_on_signal, usage_error};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = parse_settings::<Cli>().settings;
    if let Err(reason) = settings.validate() {
        usage_error(reason);
    }
    init_tracing(settings.common.log_format);
    let listeners =
        Listeners::bind(settings.grpc_addr, settings.http_addr, settings.common.admin_addr).await?;
    run(settings, listeners, shutdown_on_signal()).await
}
