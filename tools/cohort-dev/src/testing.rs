//! [`TestCluster`]: Cohort's services in-process on 127.0.0.1:0 against a fresh PostgreSQL
//! database, started by the same [`Stack`] as `make dev`. Every service's tests and the
//! end-to-end test use it, with all four services or only those a test needs.

use std::path::Path;

use cohort_db::testing::{Tenant, TestDb};
use cohort_proto::analysis::v1::analysis_service_client::AnalysisServiceClient;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use cohort_proto::evaluation::v1::evaluation_service_client::EvaluationServiceClient;
use cohort_proto::events::v1::event_service_client::EventServiceClient;
use tempfile::TempDir;
use tonic::transport::Channel;

use cohort_transport::ClientTls;

use crate::stack::{Addrs, Flags, Options, Service, Stack, StackTls};

mod binary;
pub mod http;
pub mod operator;
mod proxy;

pub use binary::{Binary, Case, HUGE_DURATION, Process, free_addr};
pub use proxy::Proxy;

/// A request carrying `authorization: Bearer <key>`.
pub fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {key}").parse().expect("an API key is a valid header value");
    request.metadata_mut().insert("authorization", value);
    request
}

/// Services on any free ports of 127.0.0.1, an empty migrated database of their own, a
/// temporary spool directory, an analysis cycle every second.
///
/// Dropping it kills whatever still runs, then drops the database and the spool (fields drop
/// in declaration order); [`TestCluster::stop`] stops the services gracefully instead.
#[derive(Debug)]
pub struct TestCluster {
    stack: Stack,
    db: TestDb,
    spool: TempDir,
    /// With TLS: the certificates' directory, and what clients trust and present.
    tls: Option<(TempDir, ClientTls)>,
}

impl TestCluster {
    /// Config, events, analysis and evaluation.
    pub async fn start() -> TestCluster {
        TestCluster::with(&[Service::Config, Service::Events, Service::Analysis, Service::Evaluation]).await
    }

    /// Only `services`, in the order given (a service's peers first), with the stack's flags.
    pub async fn with(services: &[Service]) -> TestCluster {
        let mut cluster = TestCluster::empty().await;
        for service in services {
            cluster.add(*service, &[]).await;
        }
        cluster
    }

    /// All four services over TLS, with mutual TLS between them: a CA of the test's own, one
    /// certificate for `127.0.0.1` that every service serves and presents, client
    /// certificates required everywhere (the clients of [`TestCluster::client_tls`] present
    /// it too).
    pub async fn start_tls() -> TestCluster {
        let mut cluster = TestCluster::empty_with(true).await;
        for service in [Service::Config, Service::Events, Service::Analysis, Service::Evaluation] {
            cluster.add(service, &[]).await;
        }
        cluster
    }

    /// A migrated database and the services' keys; no service yet (see [`TestCluster::add`]).
    pub async fn empty() -> TestCluster {
        TestCluster::empty_with(false).await
    }

    async fn empty_with(tls: bool) -> TestCluster {
        // Services' logs only when asked for: `RUST_LOG=info cargo test ...`.
        if std::env::var_os("RUST_LOG").is_some() {
            cohort_runtime::init_tracing(cohort_runtime::settings::LogFormat::Text);
        }
        let db = TestDb::new().await;
        let spool = tempfile::tempdir().expect("a temporary spool directory");
        let mut options = Options::test(spool.path().to_path_buf());
        let tls = tls.then(|| {
            let dir = tempfile::tempdir().expect("a certificates directory");
            let pki = cohort_transport::testing::Pki::new("Cohort test CA");
            let leaf = pki.leaf(&["127.0.0.1", "localhost"]).write(dir.path(), "service");
            let files = StackTls { ca: pki.write_ca(dir.path(), "ca"), cert: leaf.cert, key: leaf.key };
            let client = files.client();
            options.tls = Some(files);
            (dir, client)
        });
        let stack =
            Stack::new(&db.url, &options).await.unwrap_or_else(|e| panic!("preparing the stack: {e}"));
        TestCluster { stack, db, spool, tls }
    }

    /// What a client of this cluster trusts and presents: nothing special in plaintext.
    pub fn client_tls(&self) -> ClientTls {
        self.tls.as_ref().map(|(_, c)| c.clone()).unwrap_or_default()
    }

    /// A channel to `service`'s gRPC listener, over TLS when the cluster serves it.
    pub async fn channel(&self, service: Service) -> Channel {
        let url = self.addrs(service).grpc_url();
        let tls = self.client_tls().load().expect("the cluster's certificates load");
        cohort_transport::endpoint(&url, &tls)
            .expect("a valid endpoint")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {service} at {url}: {}", cohort_core::error::chain(&e)))
    }

    /// Starts `service` with the stack's flags changed by `flags`; panics when it cannot.
    pub async fn add(&mut self, service: Service, flags: Flags<'_>) -> Addrs {
        self.stack.add(service, flags).await.unwrap_or_else(|e| panic!("starting {service}: {e}"))
    }

    /// Starts a stopped or killed `service` again where it was, with the same flags.
    pub async fn restart(&mut self, service: Service) -> Addrs {
        self.stack.restart(service).await.unwrap_or_else(|e| panic!("restarting {service}: {e}"))
    }

    /// The cluster's database (its URL, tenants, direct checks).
    pub fn db(&self) -> &TestDb {
        &self.db
    }

    /// The event service's default spool directory.
    pub fn spool_dir(&self) -> &Path {
        self.spool.path()
    }

    /// Another organization on the same installation (environment `production`, an admin and
    /// an SDK key), as an operator would create it.
    pub async fn seed_organization(&self, name: &str) -> Tenant {
        self.db.seed_tenant(name).await
    }

    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// Where `service` listens (or listened last, once stopped or killed); panics when it
    /// was never started.
    pub fn addrs(&self, service: Service) -> Addrs {
        self.stack.addrs(service).unwrap_or_else(|| panic!("{service} was never started"))
    }

    /// The secret key `service` (events or analysis) uses with the config service.
    pub fn service_key(&self, service: Service) -> String {
        self.stack.service_key(service).unwrap_or_else(|| panic!("{service} has no service key")).to_owned()
    }

    pub fn config_url(&self) -> String {
        self.addrs(Service::Config).grpc_url()
    }

    pub fn events_url(&self) -> String {
        self.addrs(Service::Events).grpc_url()
    }

    pub async fn config(&self) -> ConfigServiceClient<Channel> {
        ConfigServiceClient::new(self.channel(Service::Config).await)
    }

    pub async fn events(&self) -> EventServiceClient<Channel> {
        EventServiceClient::new(self.channel(Service::Events).await)
    }

    pub async fn analysis(&self) -> AnalysisServiceClient<Channel> {
        AnalysisServiceClient::new(self.channel(Service::Analysis).await)
    }

    pub async fn evaluation(&self) -> EvaluationServiceClient<Channel> {
        EvaluationServiceClient::new(self.channel(Service::Evaluation).await)
    }

    /// Kills `service` like a crashed process: its connections drop with no goodbye.
    pub async fn kill(&mut self, service: Service) {
        self.stack.kill(service).await.unwrap_or_else(|e| panic!("killing {service}: {e}"));
    }

    /// Stops `service` gracefully, as SIGTERM would; panics when it fails to stop cleanly.
    pub async fn stop_service(&mut self, service: Service) {
        self.stack.stop_service(service).await.unwrap_or_else(|e| panic!("stopping {service}: {e}"));
    }

    /// Like [`TestCluster::stop_service`], returning how the service ended.
    pub async fn try_stop_service(&mut self, service: Service) -> Result<(), crate::stack::StackError> {
        self.stack.stop_service(service).await
    }

    /// Stops every service still running, gracefully; panics when one fails to stop cleanly.
    pub async fn stop(self) {
        let TestCluster { stack, db, spool, tls } = self;
        stack.stop().await.unwrap_or_else(|e| panic!("stopping the services: {e}"));
        drop(db);
        drop(spool);
        drop(tls);
    }
}
