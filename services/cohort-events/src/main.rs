//! `cohort-events`: parses settings, binds the listeners, and runs the event service until
//! SIGTERM or SIGINT.

use anyhow::Context;
use cohort_events::{Listeners, Settings, run};
use cohort_runtime::{init_tracing, parse_settings, shutdown_on_signal, usage_error};

// mimalloc: the services allocate per request (messages, strings); it is markedly cheaper
// than the system allocator under load (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = parse_settings();
    if let Err(reason) = settings.validate() {
        usage_error(reason);
    }
    init_tracing(settings.common.log_format);
    let listeners =
        Listeners::bind(settings.grpc_addr, settings.http_addr, settings.common.admin_addr).await?;
    run(settings, listeners, shutdown_on_signal()).await.context("cohort-events")
}
