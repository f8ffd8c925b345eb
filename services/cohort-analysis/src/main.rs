//! `cohort-analysis`: the analysis service.

use anyhow::Context;
use clap::Parser;
use cohort_analysis::settings::Cli;
use cohort_analysis::{Listeners, run};
use cohort_runtime::{Shutdown, init_tracing, usage_error, wait_for_signal};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Cli::parse().settings;
    if let Err(reason) = settings.validate() {
        usage_error(reason);
    }
    init_tracing(settings.common.log_format);
    let bind = |addr| async move { TcpListener::bind(addr).await.with_context(|| format!("binding {addr}")) };
    let listeners = Listeners {
        grpc: bind(settings.grpc_addr).await?,
        http: bind(settings.http_addr).await?,
        admin: match settings.common.admin_addr {
            Some(a) => Some(bind(a).await?),
            None => None,
        },
    };
    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        trigger.cancel();
    });
    run(settings, listeners, shutdown).await
}
