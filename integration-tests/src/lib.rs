//! [`TestCluster`]: all four services in-process on 127.0.0.1:0 against a fresh PostgreSQL
//! database, started with cohort-dev's [`Stack`] (the code `make dev` runs), for tests that
//! walk Cohort end to end through its public APIs.
//!
//! # Layout
//! - [`TestCluster`]: start, clients for each service, kill or stop a service, stop all.
//! - [`authed`]: a request carrying an API key.

use std::net::SocketAddr;

use cohort_db::testing::{Tenant, TestDb};
use cohort_dev::stack::{Options, Stack};
use cohort_proto::analysis::v1::analysis_service_client::AnalysisServiceClient;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use cohort_proto::evaluation::v1::evaluation_service_client::EvaluationServiceClient;
use tempfile::TempDir;
use tonic::transport::Channel;

pub use cohort_dev::stack::Service;

/// A request carrying `authorization: Bearer <key>`.
pub fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {key}").parse().expect("an API key is a valid header value");
    request.metadata_mut().insert("authorization", value);
    request
}

/// Config, events, analysis and evaluation on any free ports of 127.0.0.1, an empty migrated
/// database of their own, a temporary spool directory, an analysis cycle every second.
///
/// Dropping it kills whatever still runs, then drops the database and the spool (fields drop
/// in declaration order); [`TestCluster::stop`] stops the services gracefully instead.
#[derive(Debug)]
pub struct TestCluster {
    stack: Stack,
    db: TestDb,
    _spool: TempDir,
}

impl TestCluster {
    pub async fn start() -> TestCluster {
        // Services' logs only when asked for: `RUST_LOG=info cargo test -p cohort-integration-tests`.
        if std::env::var_os("RUST_LOG").is_some() {
            cohort_runtime::init_tracing(cohort_runtime::settings::LogFormat::Text);
        }
        let db = TestDb::new().await;
        let spool = tempfile::tempdir().expect("a temporary spool directory");
        let stack = Stack::start(&db.url, &Options::test(spool.path().to_path_buf()))
            .await
            .unwrap_or_else(|e| panic!("starting the services: {e}"));
        TestCluster { stack, db, _spool: spool }
    }

    /// Another organization on the same installation (environment `production`, an admin and
    /// an SDK key), as an operator would create it.
    pub async fn seed_organization(&self, name: &str) -> Tenant {
        self.db.seed_tenant(name).await
    }

    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    pub fn config_url(&self) -> String {
        url(self.stack.config_grpc)
    }

    pub fn events_url(&self) -> String {
        url(self.stack.events_grpc)
    }

    pub async fn config(&self) -> ConfigServiceClient<Channel> {
        ConfigServiceClient::connect(self.config_url()).await.expect("connecting to the config service")
    }

    pub async fn analysis(&self) -> AnalysisServiceClient<Channel> {
        AnalysisServiceClient::connect(url(self.stack.analysis_grpc))
            .await
            .expect("connecting to the analysis service")
    }

    pub async fn evaluation(&self) -> EvaluationServiceClient<Channel> {
        EvaluationServiceClient::connect(url(self.stack.evaluation_grpc))
            .await
            .expect("connecting to the evaluation service")
    }

    /// Kills `service` like a crashed process: its connections drop with no goodbye.
    pub async fn kill(&mut self, service: Service) {
        self.stack.kill(service).await.unwrap_or_else(|e| panic!("killing {service}: {e}"));
    }

    /// Stops every service still running, gracefully; panics when one fails to stop cleanly.
    pub async fn stop(self) {
        let TestCluster { stack, db, _spool } = self;
        stack.stop().await.unwrap_or_else(|e| panic!("stopping the services: {e}"));
        drop(db);
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
