//! The gRPC `InternalService`: what Cohort's own services (analysis, events) ask of the
//! config service, authenticated with a service key. Thin: authorize, call the store, encode.

use std::sync::Arc;

use cohort_db::keys::KeyKind;
use cohort_proto::config::v1 as pb;
use pb::internal_service_server::InternalService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::{Authenticator, require_service};
use crate::error::ServiceError;
use crate::store::Store;

#[derive(Debug, Clone)]
pub(crate) struct Internal {
    pub auth: Arc<Authenticator>,
    pub store: Store,
}

impl Internal {
    async fn authorize<T>(&self, request: &Request<T>) -> Result<(), ServiceError> {
        let p = self.auth.principal_from_metadata(request.metadata()).await?;
        require_service(&p)
    }
}

#[tonic::async_trait]
impl InternalService for Internal {
    async fn verify_key(
        &self,
        request: Request<pb::VerifyKeyRequest>,
    ) -> Result<Response<pb::VerifyKeyResponse>, Status> {
        self.authorize(&request).await?;
        let hash = request.into_inner().key_hash;
        if hash.len() != 32 {
            return Err(ServiceError::invalid("key_hash", "must be the 32 bytes of a SHA-256").into());
        }
        // A service key is known by its hash too: the caller then refuses it for its kind.
        let p = match self.auth.service_principal(&hash) {
            Some(p) => p,
            None => self
                .store
                .verify_key_hash(&hash)
                .await?
                .ok_or_else(|| ServiceError::NotFound("no such key, or revoked".into()))?,
        };
        let cors_origins = match p.environment_id {
            Some(env) => self.store.environment_by_id(env).await?.map(|e| e.cors_origins).unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(Response::new(pb::VerifyKeyResponse {
            key_id: p.key_id.to_string(),
            name: p.key_name,
            kind: match p.kind {
                KeyKind::Admin => pb::KeyKind::Admin,
                KeyKind::Sdk => pb::KeyKind::Sdk,
                KeyKind::Client => pb::KeyKind::Client,
                KeyKind::Service => pb::KeyKind::Service,
            } as i32,
            organization_id: p.organization_id.to_string(),
            environment_id: p.environment_id.map(|e| e.to_string()).unwrap_or_default(),
            cors_origins,
        }))
    }

    async fn list_running(
        &self,
        request: Request<pb::ListRunningRequest>,
    ) -> Result<Response<pb::ListRunningResponse>, Status> {
        self.authorize(&request).await?;
        let running = self.store.running().await?;
        Ok(Response::new(pb::ListRunningResponse {
            experiments: running
                .experiments
                .into_iter()
                .map(|r| pb::RunningExperiment {
                    environment_id: r.environment_id.to_string(),
                    organization_id: r.organization_id.to_string(),
                    revision: r.revision,
                    definition_json: r.definition.to_string(),
                })
                .collect(),
            metrics: running
                .metrics
                .into_iter()
                .map(|(environment, definition)| pb::EnvironmentMetric {
                    environment_id: environment.to_string(),
                    definition_json: definition.to_string(),
                })
                .collect(),
            holdouts: running
                .holdouts
                .into_iter()
                .map(|r| pb::RunningHoldout {
                    environment_id: r.environment_id.to_string(),
                    organization_id: r.organization_id.to_string(),
                    revision: r.revision,
                    definition_json: r.definition.to_string(),
                })
                .collect(),
        }))
    }

    async fn find_experiments(
        &self,
        request: Request<pb::FindExperimentsRequest>,
    ) -> Result<Response<pb::FindExperimentsResponse>, Status> {
        self.authorize(&request).await?;
        let r = request.into_inner();
        let organization = Uuid::parse_str(&r.organization_id)
            .map_err(|_| ServiceError::invalid("organization_id", "must be a UUID"))?;
        for (field, value) in [("environment", &r.environment), ("experiment", &r.experiment)] {
            if value.len() > 256 || value.chars().any(char::is_control) {
                return Err(ServiceError::invalid(field, "must be a key or an id").into());
            }
        }
        let found = self.store.find_experiments(organization, &r.environment, &r.experiment).await?;
        Ok(Response::new(pb::FindExperimentsResponse {
            experiments: found
                .into_iter()
                .map(|f| pb::FoundExperiment {
                    environment_id: f.environment_id.to_string(),
                    experiment_id: f.experiment_id.to_string(),
                    key: f.key,
                })
                .collect(),
        }))
    }
}
