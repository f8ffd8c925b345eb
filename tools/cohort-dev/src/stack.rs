//! The four services started in this process, with migrations applied first: config, events,
//! analysis and evaluation (pointed at the first two). Each runs on a runtime and thread of
//! its own, so one can be stopped gracefully or killed like a crashed process: every task,
//! connection and database session it has goes at once, with no goodbye to its peers.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// TLS on every listener, and mutual TLS between the services; plaintext when `None`.
    pub tls: Option<StackTls>,
    /// The console's built page (`console/dist`).
    pub console_assets: PathBuf,
}

/// `console/dist` of this checkout, where `npm run build` in `console/` writes the page.
pub fn console_assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../console/dist")
}

/// The files of a stack served over TLS: one CA, and one certificate (for `127.0.0.1`, usable
/// by servers and clients) that every service serves and presents to its peers, which
/// require a certificate of that CA.
#[derive(Debug, Clone)]
pub struct StackTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl StackTls {
    /// What a client of the stack trusts and presents.
    pub fn client(&self) -> cohort_transport::ClientTls {
        cohort_transport::ClientTls {
            ca_file: Some(self.ca.clone()),
            identity: Some((self.cert.clone(), self.key.clone())),
            server_name: None,
        }
    }

    fn flags(&self) -> Vec<(String, String)> {
        let path = |p: &PathBuf| p.display().to_string();
        vec![
            ("--tls-cert".into(), path(&self.cert)),
            ("--tls-key".into(), path(&self.key)),
            ("--tls-client-ca".into(), path(&self.ca)),
            ("--tls-ca".into(), path(&self.ca)),
        ]
    }
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
            tls: None,
            console_assets: console_assets(),
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
            tls: None,
            console_assets: console_assets(),
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
    /// The web console: its page and JSON API over config and analysis.
    Console,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Config => "config",
            Service::Events => "events",
            Service::Analysis => "analysis",
            Service::Evaluation => "evaluation",
            Service::Console => "console",
        }
    }

    /// (gRPC, HTTP) ports tried first with [`Ports::Usual`].
    fn usual_ports(self) -> (u16, u16) {
        match self {
            Service::Config => (50051, 8081),
            Service::Evaluation => (50052, 8082),
            Service::Events => (50053, 8083),
            Service::Analysis => (50054, 8084),
            Service::Console => (50056, 8086),
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
    #[error("{service} is running already")]
    AlreadyRunning { service: Service },
    #[error("{service} was not stopped, so it cannot be restarted")]
    NotStopped { service: Service },
}

/// Where a service listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: SocketAddr,
    /// Served over TLS.
    pub tls: bool,
}

impl Addrs {
    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The gRPC endpoint as clients name it.
    pub fn grpc_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.grpc)
    }

    pub fn http_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.http)
    }

    pub fn admin_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.admin)
    }
}

/// Flags for one service, as `(flag, value)`; an empty value is a flag without one. They
/// replace the stack's own flag of the same name, or are added to them.
pub type Flags<'a> = &'a [(&'a str, &'a str)];

/// Flags as a service was started with, owned.
type OwnedFlags = Vec<(String, String)>;

/// The services of one installation, started in this process against one database: all four
/// ([`Stack::start`]), or those a test needs ([`Stack::new`], then [`Stack::add`]).
#[derive(Debug)]
pub struct Stack {
    database_url: String,
    options: Options,
    keys: ServiceKeys,
    /// In start order; stopped in reverse.
    running: Vec<Instance>,
    /// Services stopped or killed, with what they need to start again where they were.
    gone: Vec<(Service, OwnedFlags, Addrs)>,
}

impl Stack {
    /// Migrates the database, then starts config, events, analysis and evaluation. On an
    /// error, the services already started are killed.
    pub async fn start(database_url: &str, options: &Options) -> Result<Stack, StackError> {
        let mut stack = Stack::new(database_url, options).await?;
        for service in [Service::Config, Service::Events, Service::Analysis, Service::Evaluation] {
            stack.add(service, &[]).await?;
        }
        Ok(stack)
    }

    /// Migrates the database and makes the services' keys; starts nothing.
    pub async fn new(database_url: &str, options: &Options) -> Result<Stack, StackError> {
        let pool = cohort_db::connect(database_url, &cohort_db::PoolOptions::default())
            .map_err(|e| StackError::Database(e.to_string()))?;
        for schema in cohort_db::migrate::ALL {
            cohort_db::migrate(&pool, schema).await.map_err(|e| StackError::Migrate(e.to_string()))?;
        }
        pool.close();
        Ok(Stack {
            database_url: database_url.to_owned(),
            options: options.clone(),
            // Keys for the services that call the config service; it learns their hashes only.
            keys: ServiceKeys::generate(),
            running: Vec::new(),
            gone: Vec::new(),
        })
    }

    /// Starts `service` with the stack's flags for it (its database, its peers' endpoints,
    /// its service key), changed by `flags`. Peers it calls must be running, unless `flags`
    /// name their endpoints.
    pub async fn add(&mut self, service: Service, flags: Flags<'_>) -> Result<Addrs, StackError> {
        if self.is_running(service) {
            return Err(StackError::AlreadyRunning { service });
        }
        let mut all = self.flags(service, flags)?;
        for (name, value) in flags {
            match all.iter_mut().find(|(n, _)| n == name) {
                Some(existing) => existing.1 = (*value).to_owned(),
                None => all.push(((*name).to_owned(), (*value).to_owned())),
            }
        }
        let sockets = Sockets::bind(service, self.options.ports)?;
        self.launch(service, all, sockets).await
    }

    /// Starts a stopped or killed `service` again, with the same flags, on the same ports.
    pub async fn restart(&mut self, service: Service) -> Result<Addrs, StackError> {
        let at = self
            .gone
            .iter()
            .rposition(|(s, _, _)| *s == service)
            .ok_or(StackError::NotStopped { service })?;
        let (_, flags, addrs) = self.gone.remove(at);
        let sockets = Sockets::bind_exact(service, addrs)?;
        self.launch(service, flags, sockets).await
    }

    async fn launch(
        &mut self,
        service: Service,
        flags: Vec<(String, String)>,
        sockets: Sockets,
    ) -> Result<Addrs, StackError> {
        let instance = Instance::launch(service, flags, sockets).await?;
        let addrs = instance.addrs;
        self.running.push(instance);
        Ok(addrs)
    }

    /// The stack's own flags for `service`. A peer's endpoint is needed only when `overrides`
    /// do not name it.
    fn flags(&self, service: Service, overrides: Flags<'_>) -> Result<Vec<(String, String)>, StackError> {
        let named = |flag: &str| overrides.iter().any(|(n, _)| *n == flag);
        let peer = |flag: &str, peer: Service| -> Result<Option<(String, String)>, StackError> {
            if named(flag) {
                return Ok(None);
            }
            let addrs = self.running_addrs(peer).ok_or(StackError::NotRunning { service: peer })?;
            Ok(Some((flag.to_owned(), addrs.grpc_url())))
        };
        let pair = |n: &str, v: String| (n.to_owned(), v);
        let database = pair("--database-url", self.database_url.clone());
        let mut flags = match service {
            Service::Config => vec![
                database,
                pair("--heartbeat-interval", millis(self.options.heartbeat_interval)),
                pair("--service-keys", self.keys.setting()),
            ],
            Service::Events => vec![
                database,
                pair("--spool-dir", self.options.spool_dir.display().to_string()),
                // A failed drain retries soon: results should not lag a passing database hiccup.
                pair("--drain-max-backoff", "1s".into()),
                pair("--service-key", self.keys.events.secret.clone()),
            ],
            Service::Analysis => vec![
                database,
                pair("--interval", millis(self.options.analysis_interval)),
                pair("--service-key", self.keys.analysis.secret.clone()),
            ],
            // The first request for a key waits for its environment rather than failing.
            Service::Evaluation => vec![
                pair("--init-timeout", "5s".into()),
                pair("--request-timeout", "10s".into()),
                pair("--service-key", self.keys.evaluation.secret.clone()),
            ],
            Service::Console => vec![pair("--assets-dir", self.options.console_assets.display().to_string())],
        };
        if matches!(service, Service::Events | Service::Analysis | Service::Evaluation | Service::Console) {
            flags.extend(peer("--config-endpoint", Service::Config)?);
        }
        if service == Service::Console {
            flags.extend(peer("--analysis-endpoint", Service::Analysis)?);
        }
        if service == Service::Evaluation {
            flags.extend(peer("--events-endpoint", Service::Events)?);
        }
        flags.push(pair("--shutdown-grace", millis(self.options.shutdown_grace)));
        if let Some(tls) = &self.options.tls {
            flags.extend(tls.flags());
        }
        Ok(flags)
    }

    /// Where `service` listens, or listened last when it was stopped or killed (its
    /// clients still point there); `None` when it was never started.
    pub fn addrs(&self, service: Service) -> Option<Addrs> {
        self.running_addrs(service)
            .or_else(|| self.gone.iter().rev().find(|(s, _, _)| *s == service).map(|(_, _, a)| *a))
    }

    fn running_addrs(&self, service: Service) -> Option<Addrs> {
        self.running.iter().find(|r| r.service == service).map(|r| r.addrs)
    }

    /// The secret key `service` (events, analysis or evaluation) uses with the config service.
    pub fn service_key(&self, service: Service) -> Option<&str> {
        match service {
            Service::Events => Some(&self.keys.events.secret),
            Service::Analysis => Some(&self.keys.analysis.secret),
            Service::Evaluation => Some(&self.keys.evaluation.secret),
            Service::Config | Service::Console => None,
        }
    }

    /// The config service's `--service-keys` for this stack's keys (hashes only).
    pub fn service_keys_setting(&self) -> String {
        self.keys.setting()
    }

    /// Where everything listens, one line per running service.
    pub fn describe(&self) -> String {
        let path = |service| match service {
            Service::Config => "/api/v1/config",
            Service::Evaluation => "/api/v1/evaluate",
            Service::Events => "/api/v1/events/batch",
            Service::Analysis => "/api/v1/experiments/{id}/results",
            Service::Console => "/",
        };
        self.running
            .iter()
            .map(|r| {
                format!(
                    "{:<12} gRPC {}   HTTP {}{}   admin {}",
                    r.service.as_str(),
                    r.addrs.grpc_url(),
                    r.addrs.http_url(),
                    path(r.service),
                    r.addrs.admin_url()
                )
            })
            .collect::<Vec<_>>()
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

    fn take(&mut self, service: Service) -> Result<Instance, StackError> {
        let at = self
            .running
            .iter()
            .position(|r| r.service == service)
            .ok_or(StackError::NotRunning { service })?;
        let running = self.running.remove(at);
        self.gone.push((service, running.flags.clone(), running.addrs));
        Ok(running)
    }
}

/// The secrets of the services' keys for the config service, made anew for each stack.
struct ServiceKeys {
    analysis: cohort_db::keys::NewKey,
    events: cohort_db::keys::NewKey,
    evaluation: cohort_db::keys::NewKey,
}

impl fmt::Debug for ServiceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceKeys { .. }")
    }
}

impl ServiceKeys {
    fn generate() -> ServiceKeys {
        use cohort_db::keys::{KeyKind, generate};
        ServiceKeys {
            analysis: generate(KeyKind::Service),
            events: generate(KeyKind::Service),
            evaluation: generate(KeyKind::Service),
        }
    }

    /// The config service's `--service-keys`: names and hashes, never the secrets.
    fn setting(&self) -> String {
        format!(
            "cohort-analysis={},cohort-events={},cohort-evaluation={}",
            hex::encode(&self.analysis.hash),
            hex::encode(&self.events.hash),
            hex::encode(&self.evaluation.hash)
        )
    }
}

/// A service's settings from its command line, as its binary would parse them (so defaults
/// and validation are the binary's).
fn parse<T: Parser>(service: Service, argv: &[String]) -> Result<T, StackError> {
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
    admin: std::net::TcpListener,
    addrs: Addrs,
}

impl Sockets {
    fn bind(service: Service, ports: Ports) -> Result<Sockets, StackError> {
        let (grpc_port, http_port) = match ports {
            Ports::Usual => service.usual_ports(),
            Ports::Any => (0, 0),
        };
        let (grpc, grpc_addr) = bind(service, grpc_port, true)?;
        let (http, http_addr) = bind(service, http_port, true)?;
        let (admin, admin_addr) = bind(service, 0, true)?;
        Ok(Sockets {
            grpc,
            http,
            admin,
            addrs: Addrs { grpc: grpc_addr, http: http_addr, admin: admin_addr, tls: false },
        })
    }

    /// The ports a service had before, for a restart where its clients expect it.
    fn bind_exact(service: Service, addrs: Addrs) -> Result<Sockets, StackError> {
        let (grpc, _) = bind(service, addrs.grpc.port(), false)?;
        let (http, _) = bind(service, addrs.http.port(), false)?;
        let (admin, _) = bind(service, addrs.admin.port(), false)?;
        Ok(Sockets { grpc, http, admin, addrs })
    }

    /// Must run inside the service's runtime.
    fn into_listeners(self) -> std::io::Result<Listeners> {
        Ok(Listeners {
            grpc: tokio::net::TcpListener::from_std(self.grpc)?,
            http: tokio::net::TcpListener::from_std(self.http)?,
            admin: Some(tokio::net::TcpListener::from_std(self.admin)?),
        })
    }
}

/// Binds `127.0.0.1:port`, or (when `fallback`) any free port when it is taken.
fn bind(
    service: Service,
    port: u16,
    fallback: bool,
) -> Result<(std::net::TcpListener, SocketAddr), StackError> {
    let error = |source| StackError::Bind { service, port, source };
    let listener = std::net::TcpListener::bind(("127.0.0.1", port));
    let listener = match listener {
        Err(_) if fallback => std::net::TcpListener::bind(("127.0.0.1", 0)),
        other => other,
    }
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

/// One service on its own thread and single-threaded runtime, as its binary would run: a
/// [`Stack`] is made of these; tests that run several replicas of one service start them
/// directly.
#[derive(Debug)]
pub struct Instance {
    service: Service,
    addrs: Addrs,
    /// Its flags, for a restart.
    flags: Vec<(String, String)>,
    shutdown: Shutdown,
    /// Sending (or dropping, when the stack is dropped) kills the service.
    kill: oneshot::Sender<()>,
    exited: oneshot::Receiver<Exit>,
}

impl Instance {
    /// Starts `service` with exactly `flags` (its command line without the program name) on
    /// `ports`.
    pub async fn start(service: Service, flags: Flags<'_>, ports: Ports) -> Result<Instance, StackError> {
        let flags = flags.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        Instance::launch(service, flags, Sockets::bind(service, ports)?).await
    }

    async fn launch(
        service: Service,
        flags: Vec<(String, String)>,
        mut sockets: Sockets,
    ) -> Result<Instance, StackError> {
        sockets.addrs.tls = flags.iter().any(|(name, _)| name == "--tls-cert");
        let mut argv = vec![format!("cohort-{service}")];
        for (name, value) in &flags {
            argv.push(name.clone());
            if !value.is_empty() {
                argv.push(value.clone());
            }
        }
        let instance = match service {
            Service::Config => {
                let settings = parse::<cohort_config::settings::Cli>(service, &argv)?.serve;
                settings.validate().map_err(|message| StackError::Settings { service, message })?;
                Instance::spawn(service, sockets, move |l, s| cohort_config::run(settings, l, s)).await?
            }
            Service::Events => {
                let settings = parse::<cohort_events::Settings>(service, &argv)?;
                settings.validate().map_err(|message| StackError::Settings { service, message })?;
                Instance::spawn(service, sockets, move |l, s| async move {
                    cohort_events::run(settings, l, s).await.map_err(anyhow::Error::from)
                })
                .await?
            }
            Service::Analysis => {
                let settings = parse::<cohort_analysis::settings::Cli>(service, &argv)?.settings;
                settings.validate().map_err(|message| StackError::Settings { service, message })?;
                Instance::spawn(service, sockets, move |l, s| cohort_analysis::run(settings, l, s)).await?
            }
            Service::Evaluation => {
                let settings = parse::<cohort_evaluation::Settings>(service, &argv)?;
                settings.validate().map_err(|message| StackError::Settings { service, message })?;
                Instance::spawn(service, sockets, move |l, s| cohort_evaluation::run(settings, l, s)).await?
            }
            Service::Console => {
                let settings = parse::<cohort_console::settings::Cli>(service, &argv)?.settings;
                settings.validate().map_err(|message| StackError::Settings { service, message })?;
                Instance::spawn(service, sockets, move |l, s| cohort_console::run(settings, l, s)).await?
            }
        };
        Ok(Instance { flags, ..instance })
    }

    /// Where it listens.
    pub fn addrs(&self) -> Addrs {
        self.addrs
    }

    pub fn service(&self) -> Service {
        self.service
    }

    /// Starts `run` on a new thread with its own runtime, built there so that no runtime is
    /// ever dropped inside another (which tokio forbids).
    async fn spawn<F, Fut>(service: Service, sockets: Sockets, run: F) -> Result<Instance, StackError>
    where
        F: FnOnce(Listeners, Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let runtime_error = |source| StackError::Runtime { service, source };
        let addrs = sockets.addrs;
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
            Ok(Ok(())) => Ok(Instance { service, addrs, flags: Vec::new(), shutdown, kill, exited }),
            Ok(Err(e)) => Err(runtime_error(e)),
            Err(_) => Err(StackError::Lost { service }),
        }
    }

    /// Stops it gracefully, as SIGTERM would; the error is how `run` ended, if not cleanly.
    pub async fn stop(self) -> Result<(), StackError> {
        let Instance { service, shutdown, kill, exited, .. } = self;
        // Held until the thread reports: dropping it would turn the stop into a kill.
        let _kill = kill;
        shutdown.cancel();
        match exited.await {
            Ok(Exit::Stopped(Ok(()))) | Ok(Exit::Killed) => Ok(()),
            Ok(Exit::Stopped(Err(e))) => Err(StackError::Failed { service, message: format!("{e:#}") }),
            Err(_) => Err(StackError::Lost { service }),
        }
    }

    /// Kills it like a crash. Returns once it is gone.
    pub async fn kill(self) {
        let _ = self.kill.send(());
        // A dropped sender means the thread is gone already, which is what was asked.
        let _ = self.exited.await;
    }
}
