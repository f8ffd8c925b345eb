//! The `--consul-*` flags every service flattens in, and self-registration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use cohort_backoff::{Backoff, BackoffPolicy};
use cohort_runtime::parse_duration;
use tracing::{info, warn};

use crate::DiscoveryError;
use crate::consul::{Check, ConsulClient, Registration, consul_duration};
use crate::watch::Upstream;

#[derive(Debug, Clone, Args)]
pub struct ConsulArgs {
    /// Consul agent HTTP address (e.g. http://127.0.0.1:8500). Unset: no Consul.
    #[arg(long, env = "COHORT_CONSUL_HTTP_ADDR")]
    pub consul_http_addr: Option<String>,

    /// ACL token for the agent.
    #[arg(long, env = "COHORT_CONSUL_TOKEN", hide_env_values = true)]
    pub consul_token: Option<String>,

    /// Name to register this service under (defaults to the binary's name).
    #[arg(long, env = "COHORT_CONSUL_SERVICE_NAME")]
    pub consul_service_name: Option<String>,

    /// Address other services reach this instance at (defaults to the gRPC listen address
    /// when that is a specific IP).
    #[arg(long, env = "COHORT_CONSUL_SERVICE_ADDRESS")]
    pub consul_service_address: Option<String>,

    /// How often the agent checks this instance's gRPC health.
    #[arg(long, env = "COHORT_CONSUL_CHECK_INTERVAL", value_parser = parse_duration, default_value = "10s")]
    pub consul_check_interval: Duration,
}

impl ConsulArgs {
    pub fn client(&self) -> Result<Option<ConsulClient>, DiscoveryError> {
        self.consul_http_addr.as_deref().map(|a| ConsulClient::new(a, self.consul_token.clone())).transpose()
    }

    /// Checks the flags without contacting Consul.
    pub fn validate(&self) -> Result<(), String> {
        self.client().map(|_| ()).map_err(|e| format!("--consul-http-addr: {e}"))
    }

    /// Where to find `service`: Consul when configured, else the static endpoints.
    pub fn upstream(&self, service: &str, static_endpoints: &[String]) -> Result<Upstream, DiscoveryError> {
        match self.client()? {
            Some(client) => Ok(Upstream::Consul { client: Box::new(client), service: service.to_owned() }),
            None => Ok(Upstream::Static(static_endpoints.to_vec())),
        }
    }

    /// Registers this instance, with a gRPC health check of `health_service`, if Consul is
    /// configured; `tls` when it serves TLS (clients then connect with `https`). Returns the
    /// registration to undo at shutdown.
    pub async fn register(
        &self,
        default_name: &str,
        grpc: SocketAddr,
        health_service: &str,
        tls: bool,
    ) -> Result<Option<Registered>, DiscoveryError> {
        let Some(client) = self.client()? else { return Ok(None) };
        let name = self.consul_service_name.clone().unwrap_or_else(|| default_name.to_owned());
        let address = match &self.consul_service_address {
            Some(a) => a.clone(),
            None if !grpc.ip().is_unspecified() => grpc.ip().to_string(),
            None => {
                return Err(DiscoveryError::Address(
                    grpc.to_string(),
                    "listening on all interfaces: set --consul-service-address".into(),
                ));
            }
        };
        let id = format!("{name}-{address}-{}", grpc.port());
        let registration = Registration {
            id: id.clone(),
            name,
            tags: vec!["cohort".into(), "grpc".into()],
            address: address.clone(),
            port: grpc.port(),
            meta: BTreeMap::from([
                ("version".into(), env!("CARGO_PKG_VERSION").into()),
                ("scheme".into(), if tls { "https" } else { "http" }.into()),
            ]),
            check: Some(Check {
                grpc: format!("{address}:{}/{health_service}", grpc.port()),
                grpc_use_tls: tls,
                tls_skip_verify: tls,
                interval: consul_duration(self.consul_check_interval),
                timeout: "5s".into(),
                deregister_critical_service_after: "1m".into(),
            }),
        };
        client.register(&registration).await?;
        info!(id, "registered with consul");
        Ok(Some(Registered { client, id }))
    }
}

/// A registration to remove at shutdown.
#[derive(Debug, Clone)]
pub struct Registered {
    client: ConsulClient,
    id: String,
}

impl Registered {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Deregisters; failures are logged (the agent removes a critical instance after a minute).
    pub async fn deregister(self) {
        match self.client.deregister(&self.id).await {
            Ok(()) => info!(id = self.id, "deregistered from consul"),
            Err(e) => warn!(id = self.id, error = %e, "could not deregister from consul"),
        }
    }
}

/// Registration kept up in the background: retried with backoff until it succeeds, so a
/// service starts and serves while its agent is unreachable.
/// Without Consul it does nothing.
#[derive(Debug)]
pub struct RegistrationTask {
    running: Option<(tokio_util::sync::CancellationToken, tokio::task::JoinHandle<Option<Registered>>)>,
}

impl ConsulArgs {
    /// Starts registering this instance when Consul is configured.
    pub fn spawn_registration(
        &self,
        default_name: &str,
        grpc: SocketAddr,
        health_service: &str,
        tls: bool,
    ) -> RegistrationTask {
        if self.consul_http_addr.is_none() {
            return RegistrationTask { running: None };
        }
        let (args, name, health) = (self.clone(), default_name.to_owned(), health_service.to_owned());
        let stop = tokio_util::sync::CancellationToken::new();
        let cancelled = stop.clone();
        let task = tokio::spawn(async move {
            let policy = BackoffPolicy { initial: Duration::from_millis(200), max: Duration::from_secs(30) };
            let mut backoff = Backoff::new(policy);
            loop {
                let delay = backoff.next_delay();
                match args.register(&name, grpc, &health, tls).await {
                    Ok(registered) => return registered,
                    Err(e) => warn!(error = %e, retry_in = ?delay, "consul registration failed"),
                }
                tokio::select! {
                    _ = cancelled.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        });
        RegistrationTask { running: Some((stop, task)) }
    }
}

impl RegistrationTask {
    /// Stops retrying and deregisters if registered. Call first thing at shutdown, so callers
    /// stop routing here while the service drains.
    pub async fn finish(self) {
        let Some((stop, task)) = self.running else { return };
        stop.cancel();
        if let Ok(Some(registered)) = task.await {
            registered.deregister().await;
        }
    }
}
