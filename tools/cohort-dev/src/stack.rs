//! The four services started in this process, with migrations applied first: config, events,
//! analysis and evaluation (pointed at the first two). Each runs on a runtime and thread of
//! its own, so one can be stopped gracefully or killed like a crashed process: every task,
//! connection and database session it has goes at once, with no goodbye to its peers.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use cohort_runtime::{Listeners, Shutdown};
use tokio::sync::oneshot;

/// Where the services listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// The services' usual ports on 127.0.0.1 (config 50051/8081, evaluation 50052/8082,
    /// events 50053/8083, analysis 50054/8084), or any free port when one is taken.
    Usual,
    /// Any free port on 127.0.0.1, for tests.
    Any,
}

/// How to start a [`Stack`].
#[derive(Debug, Clone)]
pub struct Options {
    pub ports: Ports,
    /// The event service's spool; the caller owns (and removes) the directory.
    pub spool_dir: PathBuf,
    /// Time between analysis cycles.
    pub analysis_interval: Duration,
    /// How often the config stream sends heartbeats to SDKs.
    pub heartbeat_interval: Duration,
    /// How long each service may take to stop gracefully.
    pub shutdown_grace: Duration,
}

impl Options {
    /// `make dev`: the usual ports, a cycle every 2 s.
    pub fn dev(spool_dir: PathBuf) -> Options {
        Options {
            ports: Ports::Usual,
            spool_dir,
            analysis_interval: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
        }
    }

    /// Tests: any free ports, a cycle every second, quick heartbeats.
    pub fn test(spool_dir: PathBuf) -> Options {
        Options {
            ports: Ports::Any,
            spool_dir,
            analysis_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// One of the services of a [`Stack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Config,
    Events,
    Analysis,
    Evaluation,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Config => "config",
            Service::Events => "events",
            Service::Analysis => "analysis",
            Service::Evaluation => "evaluation",
        }
    }

    /// (gRPC, HTTP) ports tried first with [`Ports::Usual`].
    fn usual_ports(self) -> (u16, u16) {
        match self {
            Service::Config => (50051, 8081),
            Service::Evaluation => (50052, 8082),
            Service::Events => (50053, 8083),
            Service::Analysis => (50054, 8084),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the stack, or one of its services, could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("connecting to the database: {0}")]
    Database(String),
    #[error("migrating the database: {0}")]
    Migrate(String),
    #[error("{service} settings: {message}")]
    Settings { service: Service, message: String },
    #[error("{service}: binding 127.0.0.1:{port}: {source}")]
    Bind { service: Service, port: u16, source: std::io::Error },
    #[error("{service}: starting its runtime: {source}")]
    Runtime { service: Service, source: std::io::Error },
    #[error("{service} stopped with an error: {message}")]
    Failed { service: Service, message: String },
    #[error("{service} ended without saying how (its thread panicked)")]
    Lost { service: Service },
    #[error("{service} is not running")]
    NotRunning { service: Service },
}

/// The running services and their addresses.
#[derive(Debug)]
pub struct Stack {
    pub config_grpc: SocketAddr,
    pub config_http: SocketAddr,
    pub events_grpc: SocketAddr,
    pub events_http: SocketAddr,
    pub analysis_grpc: SocketAddr,
    pub analysis_http: SocketAddr,
    pub evaluation_grpc: SocketAddr,
    pub evaluation_http: SocketAddr,
    /// In start order; stopped in reverse.
    running: Vec<Running>,
}

impl Stack {
    /// Migrates the database, then starts config, events, analysis and evaluation. On an
    /// error, the services already started are killed.
    pub async fn start(database_url: &str, options: &Options) -> Result<Stack, StackError> {
        let pool = cohort_db::connect(database_url, &cohort_db::PoolOptions::default())
            .map_err(|e| StackError::Database(e.to_string()))?;
        for schema in cohort_db::migrate::ALL {
            cohort_db::migrate(&pool, schema).await.map_err(|e| StackError::Migrate(e.to_string()))?;
        }
        pool.close();

        // Keys for the services that call the config service; it learns their hashes only.
        let keys = ServiceKeys::generate();
        let config = start_config(database_url, &keys, options).await?;
        let events = start_events(database_url, config.grpc, &keys, options).await?;
        let analysis = start_analysis(database_url, config.grpc, &keys, options).await?;
        let evaluation = start_evaluation(config.grpc, events.grpc, options).await?;
        Ok(Stack {
            config_grpc: config.grpc,
            config_http: config.http,
            events_grpc: events.grpc,
            events_http: events.http,
            analysis_grpc: analysis.grpc,
            analysis_http: analysis.http,
            evaluation_grpc: evaluation.grpc,
            evaluation_http: evaluation.http,
            running: vec![config.running, events.running, analysis.running, evaluation.running],
        })
    }

    /// Where everything listens, one line per service.
    pub fn describe(&self) -> String {
        [
            format!(
                "config       gRPC http://{}   HTTP http://{}/api/v1/config",
                self.config_grpc, self.config_http
            ),
            format!(
                "evaluation   gRPC http://{}   HTTP http://{}/api/v1/evaluate",
                self.evaluation_grpc, self.evaluation_http
            ),
            format!(
                "events       gRPC http://{}   HTTP http://{}/api/v1/events/batch",
                self.events_grpc, self.events_http
            ),
            format!(
                "analysis     gRPC http://{}   HTTP http://{}/api/v1/experiments/{{id}}/results",
                self.analysis_grpc, self.analysis_http
            ),
        ]
        .join("\n")
    }

    /// Whether `service` is still running (not stopped or killed through this stack).
    pub fn is_running(&self, service: Service) -> bool {
        self.running.iter().any(|r| r.service == service)
    }

    /// Kills `service` like a crash: its runtime is dropped with everything on it, so its
    /// connections close without a GoAway and its ports stop answering. Returns once it is gone.
    pub async fn kill(&mut self, service: Service) -> Result<(), StackError> {
        let running = self.take(service)?;
        running.kill().await;
        Ok(())
    }

    /// Stops `service` gracefully, as SIGTERM would.
    pub async fn stop_service(&mut self, service: Service) -> Result<(), StackError> {
        self.take(service)?.stop().await
    }

    /// Stops every service still running, callers before the services they call (the
    /// evaluation service's SDK clients flush exposures to the event service first). Every
    /// service is stopped; the first failure is returned.
    pub async fn stop(mut self) -> Result<(), StackError> {
        let mut first_error = None;
        while let Some(running) = self.running.pop() {
            if let Err(e) = running.stop().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn take(&mut self, service: Service) -> Result<Running, StackError> {
        let at = self
            .running
            .iter()
            .position(|r| r.service == service)
            .ok_or(StackError::NotRunning { service })?;
        Ok(self.running.remove(at))
    }
}

/// A started service and where it listens.
#[derive(Debug)]
struct Started {
    running: Running,
    grpc: SocketAddr,
    http: SocketAddr,
}

impl Started {
    async fn spawn<F, Fut>(service: Service, ports: Ports, run: F) -> Result<Started, StackError>
    where
        F: FnOnce(Listeners, Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let (sockets, grpc, http) = Sockets::bind(service, ports)?;
        let running = Running::spawn(service, sockets, run).await?;
        Ok(Started { running, grpc, http })
    }
}

/// The secrets of the services' keys for the config service, made anew for each stack.
struct ServiceKeys {
    analysis: cohort_db::keys::NewKey,
    events: cohort_db::keys::NewKey,
}

impl ServiceKeys {
    fn generate() -> ServiceKeys {
        use cohort_db::keys::{KeyKind, generate};
        ServiceKeys { analysis: generate(KeyKind::Service), events: generate(KeyKind::Service) }
    }

    /// The config service's `--service-keys`: names and hashes, never the secrets.
    fn setting(&self) -> String {
        format!(
            "cohort-analysis={},cohort-events={}",
            hex::encode(&self.analysis.hash),
            hex::encode(&self.events.hash)
        )
    }
}

async fn start_config(
    database_url: &str,
    keys: &ServiceKeys,
    options: &Options,
) -> Result<Started, StackError> {
    let settings = parse::<cohort_config::settings::Cli>(
        Service::Config,
        options,
        &[
            "--database-url",
            database_url,
            "--heartbeat-interval",
            &millis(options.heartbeat_interval),
            "--service-keys",
            &keys.setting(),
        ],
    )?
    .serve;
    settings.validate().map_err(|message| StackError::Settings { service: Service::Config, message })?;
    Started::spawn(Service::Config, options.ports, move |l, s| cohort_config::run(settings, l, s)).await
}

async fn start_events(
    database_url: &str,
    config: SocketAddr,
    keys: &ServiceKeys,
    options: &Options,
) -> Result<Started, StackError> {
    let spool = options.spool_dir.display().to_string();
    let config = format!("http://{config}");
    let settings = parse::<cohort_events::Settings>(
        Service::Events,
        options,
        &[
            "--database-url",
            database_url,
            "--spool-dir",
            &spool,
            // A failed drain retries soon: results should not lag a passing database hiccup.
            "--drain-max-backoff",
            "1s",
            "--config-endpoint",
            &config,
            "--service-key",
            &keys.events.secret,
        ],
    )?;
    settings.validate().map_err(|message| StackError::Settings { service: Service::Events, message })?;
    Started::spawn(Service::Events, options.ports, move |l, s| async move {
        cohort_events::run(settings, l, s).await.map_err(anyhow::Error::from)
    })
    .await
}

async fn start_analysis(
    database_url: &str,
    config: SocketAddr,
    keys: &ServiceKeys,
    options: &Options,
) -> Result<Started, StackError> {
    let config = format!("http://{config}");
    let settings = parse::<cohort_analysis::settings::Cli>(
        Service::Analysis,
        options,
        &[
            "--database-url",
            database_url,
            "--interval",
            &millis(options.analysis_interval),
            "--config-endpoint",
            &config,
            "--service-key",
            &keys.analysis.secret,
        ],
    )?
    .settings;
    settings.validate().map_err(|message| StackError::Settings { service: Service::Analysis, message })?;
    Started::spawn(Service::Analysis, options.ports, move |l, s| cohort_analysis::run(settings, l, s)).await
}

async fn start_evaluation(
    config: SocketAddr,
    events: SocketAddr,
    options: &Options,
) -> Result<Started, StackError> {
    let (config, events) = (format!("http://{config}"), format!("http://{events}"));
    let settings = parse::<cohort_evaluation::Settings>(
        Service::Evaluation,
        options,
        // The first request for a key waits for its environment rather than failing.
        &[
            "--config-endpoint",
            &config,
            "--events-endpoint",
            &events,
            "--init-timeout",
            "5s",
            "--request-timeout",
            "10s",
        ],
    )?;
    settings.validate().map_err(|message| StackError::Settings { service: Service::Evaluation, message })?;
    Started::spawn(Service::Evaluation, options.ports, move |l, s| cohort_evaluation::run(settings, l, s))
        .await
}

/// A service's settings from flags, as its binary would parse them (so defaults and
/// validation are the binary's), with the stack's shutdown grace.
fn parse<T: Parser>(service: Service, options: &Options, args: &[&str]) -> Result<T, StackError> {
    let name = format!("cohort-{service}");
    let grace = millis(options.shutdown_grace);
    let argv = [name.as_str()].into_iter().chain(args.iter().copied()).chain(["--shutdown-grace", &grace]);
    T::try_parse_from(argv)
        .map_err(|e| StackError::Settings { service, message: e.to_string().trim().to_owned() })
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// A service's sockets, bound before it starts so their addresses are known (and printed)
/// up front. Standard-library sockets: tokio's are tied to the runtime that made them, and
/// each service gets its own.
#[derive(Debug)]
struct Sockets {
    grpc: std::net::TcpListener,
    http: std::net::TcpListener,
}

impl Sockets {
    fn bind(service: Service, ports: Ports) -> Result<(Sockets, SocketAddr, SocketAddr), StackError> {
        let (grpc_port, http_port) = match ports {
            Ports::Usual => service.usual_ports(),
            Ports::Any => (0, 0),
        };
        let (grpc, grpc_addr) = bind(service, grpc_port)?;
        let (http, http_addr) = bind(service, http_port)?;
        Ok((Sockets { grpc, http }, grpc_addr, http_addr))
    }

    /// Must run inside the service's runtime.
    fn into_listeners(self) -> std::io::Result<Listeners> {
        Ok(Listeners {
            grpc: tokio::net::TcpListener::from_std(self.grpc)?,
            http: tokio::net::TcpListener::from_std(self.http)?,
            admin: None,
        })
    }
}

/// Binds `127.0.0.1:port`, or any free port when it is taken.
fn bind(service: Service, port: u16) -> Result<(std::net::TcpListener, SocketAddr), StackError> {
    let error = |source| StackError::Bind { service, port, source };
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .or_else(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .map_err(error)?;
    listener.set_nonblocking(true).map_err(error)?;
    let addr = listener.local_addr().map_err(error)?;
    Ok((listener, addr))
}

/// How a service's thread ended.
#[derive(Debug)]
enum Exit {
    Stopped(anyhow::Result<()>),
    Killed,
}

/// One service on its own thread and single-threaded runtime.
#[derive(Debug)]
struct Running {
    service: Service,
    shutdown: Shutdown,
    /// Sending (or dropping, when the stack is dropped) kills the service.
    kill: oneshot::Sender<()>,
    exited: oneshot::Receiver<Exit>,
}

impl Running {
    /// Starts `run` on a new thread with its own runtime, built there so that no runtime is
    /// ever dropped inside another (which tokio forbids).
    async fn spawn<F, Fut>(service: Service, sockets: Sockets, run: F) -> Result<Running, StackError>
    where
        F: FnOnce(Listeners, Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let runtime_error = |source| StackError::Runtime { service, source };
        let shutdown = Shutdown::new();
        let (kill, killed) = oneshot::channel::<()>();
        let (built_tx, built) = oneshot::channel::<std::io::Result<()>>();
        let (exit_tx, exited) = oneshot::channel();
        let token = shutdown.clone();
        std::thread::Builder::new()
            .name(format!("cohort-{service}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name(format!("cohort-{service}-blocking"))
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = built_tx.send(Err(e));
                        return;
                    }
                };
                let _ = built_tx.send(Ok(()));
                let exit = runtime.block_on(async move {
                    let listeners = match sockets.into_listeners() {
                        Ok(l) => l,
                        Err(e) => return Exit::Stopped(Err(e.into())),
                    };
                    tokio::select! {
                        result = run(listeners, token) => Exit::Stopped(result),
                        _ = killed => Exit::Killed,
                    }
                });
                match exit {
                    // Every task goes now, mid-request or not: that is the crash.
                    Exit::Killed => runtime.shutdown_background(),
                    // Stragglers (a blocking read, a task that ignored shutdown) get a moment.
                    Exit::Stopped(_) => runtime.shutdown_timeout(Duration::from_secs(2)),
                }
                let _ = exit_tx.send(exit);
            })
            .map_err(runtime_error)?;
        match built.await {
            Ok(Ok(())) => Ok(Running { service, shutdown, kill, exited }),
            Ok(Err(e)) => Err(runtime_error(e)),
            Err(_) => Err(StackError::Lost { service }),
        }
    }

    async fn stop(self) -> Result<(), StackError> {
        let Running { service, shutdown, kill, exited } = self;
        // Held until the thread reports: dropping it would turn the stop into a kill.
        let _kill = kill;
        shutdown.cancel();
        match exited.await {
            Ok(Exit::Stopped(Ok(()))) | Ok(Exit::Killed) => Ok(()),
            Ok(Exit::Stopped(Err(e))) => Err(StackError::Failed { service, message: format!("{e:#}") }),
            Err(_) => Err(StackError::Lost { service }),
        }
    }

    async fn kill(self) {
        let _ = self.kill.send(());
        // A dropped sender means the thread is gone already, which is what was asked.
        let _ = self.exited.await;
    }
}
