//! `cohort-events`: parses settings, binds the listeners, and runs the event service until
//! SIGTERM or SIGINT.

use anyhow::Context;
use clap::Parser;
use cohort_events::{Listeners, Settings, run};
use cohort_runtime::{Shutdown, init_tracing, usage_error, wait_for_signal};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    if let Err(reason) = settings.validate() {
        usage_error(reason);
    }
    init_tracing(settings.common.log_format);

    let grpc = TcpListener::bind(settings.grpc_addr)
        .await
        .with_context(|| format!("bind {}", settings.grpc_addr))?;
    let http = TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("bind {}", settings.http_addr))?;
    let admin = match settings.common.admin_addr {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("bind {addr}"))?),
        None => None,
    };

    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        trigger.cancel();
    });
    run(settings, Listeners { grpc, http, admin }, shutdown).await.context("cohort-events")
}
