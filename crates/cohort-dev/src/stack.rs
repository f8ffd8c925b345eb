//! The services, started in this process on their usual ports (any free port when one is
//! taken), with migrations applied first, and stopped in reverse order.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use cohort_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Task = JoinHandle<anyhow::Result<()>>;

#[derive(Debug)]
pub(crate) struct Stack {
    pub(crate) config_grpc: SocketAddr,
    pub(crate) config_http: SocketAddr,
    pub(crate) events_grpc: SocketAddr,
    pub(crate) events_http: SocketAddr,
    pub(crate) analysis_grpc: SocketAddr,
    pub(crate) analysis_http: SocketAddr,
    spool: PathBuf,
    services: Vec<(&'static str, Shutdown, Task)>,
}

/// Binds `127.0.0.1:port`, or any free port when it is taken.
async fn bind(port: u16) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind("127.0.0.1:0").await?,
    };
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

impl Stack {
    pub(crate) async fn start(database_url: &str) -> anyhow::Result<Stack> {
        let pool = cohort_db::connect(database_url, &cohort_db::PoolOptions::default())?;
        cohort_db::migrate(&pool).await.context("migrating")?;
        let mut services = Vec::new();

        let (grpc, config_grpc) = bind(50051).await?;
        let (http, config_http) = bind(8081).await?;
        let settings =
            cohort_config::settings::Cli::try_parse_from(["cohort-config", "--database-url", database_url])?
                .serve;
        let shutdown = Shutdown::new();
        let listeners = cohort_config::Listeners { grpc, http, admin: None };
        services.push((
            "config",
            shutdown.clone(),
            tokio::spawn(cohort_config::run(settings, listeners, shutdown)),
        ));

        let spool = std::env::temp_dir().join(format!("cohort-dev-spool-{}", std::process::id()));
        let (grpc, events_grpc) = bind(50053).await?;
        let (http, events_http) = bind(8083).await?;
        let spool_arg = spool.display().to_string();
        let settings = cohort_events::Settings::try_parse_from([
            "cohort-events",
            "--database-url",
            database_url,
            "--spool-dir",
            &spool_arg,
        ])?;
        let shutdown = Shutdown::new();
        let listeners = cohort_events::Listeners { grpc, http, admin: None };
        let task = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                cohort_events::run(settings, listeners, shutdown).await.map_err(anyhow::Error::from)
            })
        };
        services.push(("events", shutdown, task));

        let (grpc, analysis_grpc) = bind(50054).await?;
        let (http, analysis_http) = bind(8084).await?;
        let settings = cohort_analysis::settings::Cli::try_parse_from([
            "cohort-analysis",
            "--database-url",
            database_url,
            "--interval",
            "2s",
        ])?
        .settings;
        let shutdown = Shutdown::new();
        let listeners = cohort_analysis::Listeners { grpc, http, admin: None };
        services.push((
            "analysis",
            shutdown.clone(),
            tokio::spawn(cohort_analysis::run(settings, listeners, shutdown)),
        ));

        Ok(Stack {
            config_grpc,
            config_http,
            events_grpc,
            events_http,
            analysis_grpc,
            analysis_http,
            spool,
            services,
        })
    }

    pub(crate) fn print(&self) {
        println!(
            "config       gRPC http://{}   HTTP http://{}/api/v1/config",
            self.config_grpc, self.config_http
        );
        println!(
            "events       gRPC http://{}   HTTP http://{}/api/v1/events/batch",
            self.events_grpc, self.events_http
        );
        println!(
            "analysis     gRPC http://{}   HTTP http://{}/api/v1/experiments/{{id}}/results",
            self.analysis_grpc, self.analysis_http
        );
    }

    /// Stops the services, callers before the services they call.
    pub(crate) async fn stop(mut self) {
        while let Some((name, shutdown, task)) = self.services.pop() {
            shutdown.cancel();
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => println!("{name} stopped with an error: {e:#}"),
                Err(e) => println!("{name} panicked: {e}"),
            }
        }
        let _ = std::fs::remove_dir_all(&self.spool);
    }
}
