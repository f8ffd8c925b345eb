//! The connections to the config service (and, for `results`, the analysis service):
//! endpoint, timeout, the API key on every call, and the few reads that need more than one
//! call (pagination, read-then-write).

use std::time::Duration;

use cohort_proto::analysis::v1::analysis_service_client::AnalysisServiceClient;
use cohort_proto::config::v1 as pb;
use cohort_transport::ClientTls;
use pb::config_service_client::ConfigServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::definition::Kind;
use crate::error::CtlError;

/// Entities fetched per ListEntities page (the server's maximum).
const PAGE: u32 = 1000;

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Debug, Clone)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Rpc = ConfigServiceClient<InterceptedService<Channel, Auth>>;

/// A connected client. `rpc` is the generated client for calls used once.
#[derive(Debug, Clone)]
pub struct Client {
    pub rpc: Rpc,
    has_key: bool,
}

/// `authorization: Bearer <key>` for the key given, if any.
fn auth(api_key: Option<&str>) -> Result<Auth, CtlError> {
    match api_key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(key) => format!("Bearer {key}")
            .parse::<MetadataValue<Ascii>>()
            .map(|v| Auth(Some(v)))
            .map_err(|_| CtlError::Usage("the API key has characters a header cannot carry".into())),
        None => Ok(Auth(None)),
    }
}

/// A channel to `endpoint`, connected now. `option` names the flag the endpoint came from.
async fn channel(
    option: &str,
    endpoint: &str,
    timeout: Duration,
    tls: &ClientTls,
) -> Result<Channel, CtlError> {
    let tls = tls.load().map_err(|e| CtlError::Usage(e.to_string()))?;
    cohort_transport::endpoint(endpoint, &tls)
        .map_err(|e| CtlError::Usage(format!("{option}: {e}")))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| CtlError::Connect {
            endpoint: endpoint.to_owned(),
            reason: cohort_core::error::chain(&e),
        })
}

pub type AnalysisRpc = AnalysisServiceClient<InterceptedService<Channel, Auth>>;

/// The analysis service's client, with the same key and TLS settings as the config service's.
pub async fn connect_analysis(
    endpoint: &str,
    api_key: Option<&str>,
    timeout: Duration,
    tls: &ClientTls,
) -> Result<AnalysisRpc, CtlError> {
    let auth = auth(api_key)?;
    if auth.0.is_none() {
        return Err(CtlError::NoApiKey);
    }
    let channel = channel("--analysis-endpoint", endpoint, timeout, tls).await?;
    Ok(AnalysisServiceClient::with_interceptor(channel, auth))
}

impl Client {
    /// Connects now, so a wrong endpoint fails before any work starts.
    pub async fn connect(
        endpoint: &str,
        api_key: Option<&str>,
        timeout: Duration,
        tls: &ClientTls,
    ) -> Result<Client, CtlError> {
        let auth = auth(api_key)?;
        let channel = channel("--endpoint", endpoint, timeout, tls).await?;
        let has_key = auth.0.is_some();
        Ok(Client { rpc: ConfigServiceClient::with_interceptor(channel, auth), has_key })
    }

    /// Refuses early, with a useful message, when a command needs a key and none was given.
    pub fn require_key(&self) -> Result<(), CtlError> {
        if self.has_key { Ok(()) } else { Err(CtlError::NoApiKey) }
    }

    /// One entity, or `None` when it does not exist.
    pub async fn get_entity(
        &mut self,
        env: &str,
        kind: Kind,
        key: &str,
    ) -> Result<Option<pb::Entity>, CtlError> {
        let request = pb::GetEntityRequest {
            environment: env.into(),
            kind: pb::EntityKind::from(kind) as i32,
            key: key.into(),
        };
        match self.rpc.get_entity(request).await {
            Ok(r) => Ok(r.into_inner().entity),
            Err(s) if s.code() == Code::NotFound && s.message().starts_with(kind.as_str()) => Ok(None),
            Err(s) => Err(CtlError::rpc(format!("get {kind} {key}"), s)),
        }
    }

    /// One entity that must exist.
    pub async fn entity(&mut self, env: &str, kind: Kind, key: &str) -> Result<pb::Entity, CtlError> {
        self.get_entity(env, kind, key)
            .await?
            .ok_or_else(|| CtlError::NotFound(format!("{kind} {key:?} does not exist in {env:?}")))
    }

    /// Every entity of a kind (or of every kind), through every page.
    pub async fn list_entities(
        &mut self,
        env: &str,
        kind: Option<Kind>,
    ) -> Result<Vec<pb::Entity>, CtlError> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListEntitiesRequest {
                environment: env.into(),
                kind: kind.map_or(pb::EntityKind::Unspecified, pb::EntityKind::from) as i32,
                page_size: PAGE,
                page_token,
            };
            let page = self
                .rpc
                .list_entities(request)
                .await
                .map_err(|s| CtlError::rpc("list entities", s))?
                .into_inner();
            all.extend(page.entities);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// The environment named by key (or id), with its current version.
    pub async fn environment(&mut self, env: &str) -> Result<pb::Environment, CtlError> {
        let list = self
            .rpc
            .list_environments(pb::ListEnvironmentsRequest {})
            .await
            .map_err(|s| CtlError::rpc("list environments", s))?
            .into_inner();
        list.environments
            .into_iter()
            .find(|e| e.key == env || e.id == env)
            .ok_or_else(|| CtlError::NotFound(format!("environment {env:?} does not exist")))
    }
}
