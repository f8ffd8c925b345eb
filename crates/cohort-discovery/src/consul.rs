//! The Consul HTTP API endpoints Cohort uses, as Consul documents them:
//! `PUT /v1/agent/service/register`, `PUT /v1/agent/service/deregister/:service_id` and the
//! blocking `GET /v1/health/service/:service?passing&index=&wait=`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use crate::DiscoveryError;

/// A service registration (the agent endpoint's JSON body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Registration {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

/// A gRPC health check run by the agent against the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `host:port/service`: the agent calls grpc.health.v1.Health/Check for `service`.
    #[serde(rename = "GRPC")]
    pub grpc: String,
    #[serde(rename = "GRPCUseTLS", default)]
    pub grpc_use_tls: bool,
    /// The check learns only health, and the agent need not hold Cohort's CA.
    #[serde(rename = "TLSSkipVerify", default)]
    pub tls_skip_verify: bool,
    #[serde(rename = "Interval")]
    pub interval: String,
    #[serde(rename = "Timeout")]
    pub timeout: String,
    /// A critical instance is removed after this long, so crashed instances do not linger.
    #[serde(rename = "DeregisterCriticalServiceAfter")]
    pub deregister_critical_service_after: String,
}

/// One healthy instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instance {
    pub id: String,
    pub address: String,
    pub port: u16,
    /// Registered as serving TLS (`Meta.scheme` = `https`).
    pub tls: bool,
}

impl Instance {
    /// `http://address:port`, or `https://` for an instance serving TLS.
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        match self.address.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => format!("{scheme}://[{v6}]:{}", self.port),
            Err(_) => format!("{scheme}://{}:{}", self.address, self.port),
        }
    }
}

#[derive(Debug, Deserialize)]
struct HealthEntry {
    #[serde(rename = "Node")]
    node: NodeEntry,
    #[serde(rename = "Service")]
    service: ServiceEntry,
}

#[derive(Debug, Deserialize)]
struct NodeEntry {
    #[serde(rename = "Address", default)]
    address: String,
}

#[derive(Debug, Deserialize)]
struct ServiceEntry {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Address", default)]
    address: String,
    #[serde(rename = "Port")]
    port: u16,
    #[serde(rename = "Meta", default)]
    meta: Option<BTreeMap<String, String>>,
}

/// A client of the local Consul agent.
#[derive(Debug, Clone)]
pub struct ConsulClient {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// Formats a duration the way Consul parses them (`wait=30s`).
pub fn consul_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

impl ConsulClient {
    /// `addr` is the agent's HTTP address, e.g. `http://127.0.0.1:8500`.
    pub fn new(addr: &str, token: Option<String>) -> Result<Self, DiscoveryError> {
        let base = addr.trim_end_matches('/').to_owned();
        let uri: http::Uri = base
            .parse()
            .map_err(|e: http::uri::InvalidUri| DiscoveryError::Address(addr.into(), e.to_string()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(DiscoveryError::Address(addr.into(), "use http://host:port".into()));
        }
        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(ConsulClient { base, token: token.filter(|t| !t.is_empty()), http })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(http::HeaderMap, Bytes), DiscoveryError> {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| DiscoveryError::Address(self.base.clone(), e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|source| DiscoveryError::Http { path: path.into(), source })?;
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|source| DiscoveryError::Body { path: path.into(), source })?
            .to_bytes();
        if parts.status != StatusCode::OK {
            return Err(DiscoveryError::Status {
                path: path.into(),
                status: parts.status.as_u16(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        Ok((parts.headers, bytes))
    }

    pub async fn register(&self, registration: &Registration) -> Result<(), DiscoveryError> {
        let body = serde_json::to_vec(registration)
            .map_err(|source| DiscoveryError::Decode { path: "register".into(), source })?;
        self.call(Method::PUT, "/v1/agent/service/register", Some(body)).await.map(|_| ())
    }

    pub async fn deregister(&self, service_id: &str) -> Result<(), DiscoveryError> {
        self.call(Method::PUT, &format!("/v1/agent/service/deregister/{service_id}"), None).await.map(|_| ())
    }

    /// The passing instances of `service`. With `index` > 0 this blocks until the result may
    /// have changed since that index, or `wait` passes; returns the new `X-Consul-Index`.
    pub async fn healthy(
        &self,
        service: &str,
        index: u64,
        wait: Duration,
    ) -> Result<(Vec<Instance>, u64), DiscoveryError> {
        let mut path = format!("/v1/health/service/{service}?passing=true");
        if index > 0 {
            path.push_str(&format!("&index={index}&wait={}", consul_duration(wait)));
        }
        let (headers, body) = self.call(Method::GET, &path, None).await?;
        let new_index = headers
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let entries: Vec<HealthEntry> = serde_json::from_slice(&body)
            .map_err(|source| DiscoveryError::Decode { path: path.clone(), source })?;
        let mut instances: Vec<Instance> = entries
            .into_iter()
            .map(|e| Instance {
                id: e.service.id,
                // An empty service address means the node's address, per Consul's docs.
                address: if e.service.address.is_empty() { e.node.address } else { e.service.address },
                port: e.service.port,
                tls: e.service.meta.as_ref().and_then(|m| m.get("scheme")).is_some_and(|s| s == "https"),
            })
            .collect();
        instances.sort();
        Ok((instances, new_index))
    }
}
