//! Consul for Cohort's services: each service registers itself with the local agent (with a
//! gRPC health check) and deregisters on shutdown; callers find the services they use through
//! Consul's health API with blocking queries, feeding a load-balanced tonic channel that
//! follows membership changes. Without Consul, endpoints are static (or Kubernetes DNS).
//!
//! # Layout
//! - [`consul`]: a small client for the three Consul HTTP endpoints used.
//! - [`settings`]: the `--consul-*` flags and self-registration.
//! - [`watch`]: a balanced channel that follows a service's healthy instances.
//! - `testing` (feature): an in-process fake of those endpoints, faithful to Consul's API.

pub mod consul;
pub mod settings;
#[cfg(feature = "testing")]
pub mod testing;
pub mod watch;

pub use consul::{Check, ConsulClient, Instance, Registration};
pub use settings::{ConsulArgs, Registered, RegistrationTask};
pub use watch::{Upstream, balanced_channel};

/// A failure talking to Consul.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("invalid consul address {0:?}: {1}")]
    Address(String, String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("consul request {path}: {source}")]
    Http {
        path: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("consul request {path}: reading the body: {source}")]
    Body {
        path: String,
        #[source]
        source: hyper::Error,
    },
    #[error("consul answered {status} to {path}: {body}")]
    Status { path: String, status: u16, body: String },
    #[error("consul response to {path} does not parse: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid endpoint {0:?}: {1}")]
    Endpoint(String, String),
}
