//! The config service, as analysis sees it: over gRPC with a service key, never its tables.
//! Running experiments and their metrics (`InternalService.ListRunning`), who a caller's key
//! is (`VerifyKey`, by the SHA-256 of the secret), which experiment a name means
//! (`FindExperiments`), and guardrail pauses (`ConfigService.TransitionExperiment`, audited
//! under the service key's name).

use std::collections::HashMap;
use std::time::Duration;

use cohort_core::model::{ExperimentDef, HoldoutDef, MetricDef};
use cohort_proto::config::v1 as pb;
use cohort_transport::ClientTls;
use pb::config_service_client::ConfigServiceClient;
use pb::internal_service_client::InternalServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::store::{ExperimentRef, Running};

/// A config service call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config service: {}", .0.message())]
    Status(#[from] tonic::Status),
    #[error("config service answered {what}")]
    Malformed { what: String },
}

impl ConfigError {
    /// Whether the config service could not be reached or could not answer now.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ConfigError::Status(s) if matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled | tonic::Code::Unknown
        ))
    }

    fn malformed(what: impl std::fmt::Display) -> ConfigError {
        ConfigError::Malformed { what: what.to_string() }
    }
}

/// A caller's key, as the config service verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub organization_id: Uuid,
    pub admin: bool,
}

#[derive(Debug, Clone)]
pub struct ConfigClient {
    internal: InternalServiceClient<Channel>,
    config: ConfigServiceClient<Channel>,
    authorization: MetadataValue<Ascii>,
}

impl ConfigClient {
    /// Connects lazily: the analysis service starts while the config service is down.
    pub fn new(endpoint: &str, service_key: &str, tls: &ClientTls) -> Result<ConfigClient, String> {
        let tls = tls.load().map_err(|e| e.to_string())?;
        let channel = cohort_transport::endpoint(endpoint, &tls)
            .map_err(|e| format!("--config-endpoint: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        let authorization = format!("Bearer {service_key}")
            .parse()
            .map_err(|_| "--service-key: not a valid header value".to_owned())?;
        Ok(ConfigClient {
            internal: InternalServiceClient::new(channel.clone()),
            config: ConfigServiceClient::new(channel),
            authorization,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.metadata_mut().insert("authorization", self.authorization.clone());
        r
    }

    /// Every running experiment and enabled holdout, with each environment's metrics.
    pub async fn running(&self) -> Result<(Vec<Running>, HashMap<Uuid, Vec<MetricDef>>), ConfigError> {
        let r =
            self.internal.clone().list_running(self.request(pb::ListRunningRequest {})).await?.into_inner();
        let mut running = Vec::with_capacity(r.experiments.len());
        for e in r.experiments {
            let definition: ExperimentDef = serde_json::from_str(&e.definition_json)
                .map_err(|err| ConfigError::malformed(format!("an experiment that does not parse: {err}")))?;
            running.push(Running {
                environment_id: uuid(&e.environment_id)?,
                revision: e.revision,
                definition,
                holdout: false,
            });
        }
        for h in r.holdouts {
            let holdout: HoldoutDef = serde_json::from_str(&h.definition_json)
                .map_err(|err| ConfigError::malformed(format!("a holdout that does not parse: {err}")))?;
            running.push(Running {
                environment_id: uuid(&h.environment_id)?,
                revision: h.revision,
                definition: crate::analyze::holdout_experiment(&holdout),
                holdout: true,
            });
        }
        let mut metrics: HashMap<Uuid, Vec<MetricDef>> = HashMap::new();
        for m in r.metrics {
            let definition: MetricDef = serde_json::from_str(&m.definition_json)
                .map_err(|err| ConfigError::malformed(format!("a metric that does not parse: {err}")))?;
            metrics.entry(uuid(&m.environment_id)?).or_default().push(definition);
        }
        Ok((running, metrics))
    }

    /// The key whose secret is `secret`; `None` when unknown or revoked.
    pub async fn verify(&self, secret: &str) -> Result<Option<Caller>, ConfigError> {
        let request = self.request(pb::VerifyKeyRequest { key_hash: cohort_db::keys::hash(secret).into() });
        match self.internal.clone().verify_key(request).await {
            Ok(k) => {
                let k = k.into_inner();
                Ok(Some(Caller {
                    organization_id: uuid(&k.organization_id)?,
                    admin: k.kind == pb::KeyKind::Admin as i32,
                }))
            }
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(s.into()),
        }
    }

    /// The experiments of `organization` a name can mean.
    pub async fn find(
        &self,
        organization: Uuid,
        environment: &str,
        experiment: &str,
    ) -> Result<Vec<ExperimentRef>, ConfigError> {
        let request = self.request(pb::FindExperimentsRequest {
            organization_id: organization.to_string(),
            environment: environment.to_owned(),
            experiment: experiment.to_owned(),
        });
        let found = self.internal.clone().find_experiments(request).await?.into_inner().experiments;
        found
            .iter()
            .map(|f| {
                Ok(ExperimentRef {
                    environment_id: uuid(&f.environment_id)?,
                    experiment_id: uuid(&f.experiment_id)?,
                })
            })
            .collect()
    }

    /// Pauses a running experiment at `revision`, with `reason` in the audit log; the new
    /// environment version.
    pub async fn pause(&self, exp: &Running, reason: &str) -> Result<u64, ConfigError> {
        let request = self.request(pb::TransitionExperimentRequest {
            environment: exp.environment_id.to_string(),
            key: exp.definition.key.clone(),
            action: pb::ExperimentAction::Pause as i32,
            expected_revision: exp.revision,
            reason: reason.to_owned(),
        });
        Ok(self.config.clone().transition_experiment(request).await?.into_inner().version)
    }
}

fn uuid(text: &str) -> Result<Uuid, ConfigError> {
    Uuid::parse_str(text).map_err(|_| ConfigError::malformed(format!("{text:?} for a UUID")))
}
