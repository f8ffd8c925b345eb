//! The gRPC `AnalysisService` and the HTTP JSON results endpoint: authenticate with an admin
//! key, find the experiment in the caller's organization, return stored results.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cohort_core::model::AnalysisMethod;
use cohort_proto::analysis::v1 as pb;
use cohort_proto::convert::structured;
use cohort_runtime::ApiError;
use pb::analysis_service_server::AnalysisService;
use tonic::{Request, Status};

use crate::analyze::ExperimentResult;
use crate::config::{Caller, ConfigClient};
use crate::store::{ExperimentRef, Store, StoreError};

/// The longest environment or experiment name (key or id) a request may give.
const MAX_NAME_BYTES: usize = 256;

/// Names reach SQL as text parameters: PostgreSQL refuses NUL in text, and nothing longer
/// than a key can name anything.
fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_NAME_BYTES {
        return Err(ApiError::invalid(field, format!("longer than {MAX_NAME_BYTES} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, "contains a control character"));
    }
    Ok(())
}

/// Store and config failures, as the caller sees them: UNAVAILABLE while a dependency is
/// down, otherwise an internal error whose cause is logged here.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if e.is_unavailable() {
            ApiError::unavailable("results cannot be read now; retry later")
        } else {
            tracing::error!(error = %cohort_core::error::chain(&e), "results query failed");
            ApiError::Internal
        }
    }
}

#[derive(Debug, Clone)]
pub struct Api {
    pub store: Store,
    pub config: ConfigClient,
}

impl Api {
    /// The caller's organization; results need an admin key.
    async fn principal(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let secret = authorization
            .and_then(cohort_runtime::bearer)
            .ok_or_else(|| ApiError::Unauthenticated("missing `authorization: Bearer <admin key>`".into()))?;
        let caller = self
            .config
            .verify(secret)
            .await
            .map_err(StoreError::from)?
            .ok_or_else(|| ApiError::Unauthenticated("unknown or revoked api key".into()))?;
        if !caller.admin {
            return Err(ApiError::PermissionDenied("results need an admin key".into()));
        }
        Ok(caller)
    }

    /// The experiment, if it is in the caller's organization: by environment (key or id) and
    /// experiment (key or id), or by experiment alone when no environment is named and the
    /// name means one experiment of the organization.
    async fn experiment(
        &self,
        p: &Caller,
        environment: &str,
        experiment: &str,
    ) -> Result<ExperimentRef, ApiError> {
        check_name("environment", environment)?;
        check_name("experiment", experiment)?;
        if experiment.is_empty() {
            return Err(ApiError::invalid("experiment", "name an experiment by key or id"));
        }
        let found =
            self.config.find(p.organization_id, environment, experiment).await.map_err(StoreError::from)?;
        match found[..] {
            [] => Err(ApiError::NotFound(format!("experiment {experiment:?} does not exist"))),
            [one] => Ok(one),
            _ => Err(ApiError::invalid(
                "environment",
                format!("experiment {experiment} exists in {} environments; name one", found.len()),
            )),
        }
    }
}

pub fn result_message(r: &ExperimentResult) -> pb::ExperimentResult {
    pb::ExperimentResult {
        experiment_id: r.experiment_id.clone(),
        experiment_key: r.experiment_key.clone(),
        look: r.look,
        information_fraction: r.information_fraction,
        computed_at_ms: r.computed_at_ms,
        exposures: r.units.iter().map(|(v, n)| pb::VariantUnits { variant: v.clone(), units: *n }).collect(),
        excluded_units: r.excluded_units,
        srm_detected: r.srm.detected,
        srm_p_value: r.srm.p_value.unwrap_or(1.0),
        as_of_ms: r.coverage.as_ref().map_or(0, |c| c.as_of_ms),
        newest_event_received_ms: r.coverage.as_ref().and_then(|c| c.newest_event_received_ms).unwrap_or(0),
        ingest_position: r.coverage.as_ref().map_or(0, |c| c.ingest_position),
        decided: r.decided_at_look.is_some(),
        decided_at_look: r.decided_at_look.unwrap_or(0),
        analysis: match r.analysis {
            AnalysisMethod::Sequential => "sequential",
            AnalysisMethod::FixedHorizon => "fixed_horizon",
        }
        .into(),
        paused_by_guardrail: r.paused_by_guardrail.clone().unwrap_or_default(),
        result: serde_json::to_value(r).ok().as_ref().and_then(structured::json_struct),
    }
}

fn authorization<T>(r: &Request<T>) -> Option<String> {
    r.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[tonic::async_trait]
impl AnalysisService for Api {
    async fn get_results(
        &self,
        request: Request<pb::GetResultsRequest>,
    ) -> Result<tonic::Response<pb::GetResultsResponse>, Status> {
        let p = self.principal(authorization(&request).as_deref()).await?;
        let r = request.into_inner();
        let id = self.experiment(&p, &r.environment, &r.experiment).await?;
        let latest = self.store.latest(id).await.map_err(ApiError::from)?.ok_or_else(|| {
            ApiError::NotFound("no results yet: the experiment has not been analyzed".into())
        })?;
        Ok(tonic::Response::new(pb::GetResultsResponse { result: Some(result_message(&latest)) }))
    }

    async fn list_results(
        &self,
        request: Request<pb::ListResultsRequest>,
    ) -> Result<tonic::Response<pb::ListResultsResponse>, Status> {
        let p = self.principal(authorization(&request).as_deref()).await?;
        let r = request.into_inner();
        let id = self.experiment(&p, &r.environment, &r.experiment).await?;
        let limit = i64::from(if r.page_size == 0 { 50 } else { r.page_size.min(500) });
        let before = if r.page_token.is_empty() {
            None
        } else {
            Some(
                r.page_token
                    .parse::<i32>()
                    .map_err(|_| ApiError::invalid("page_token", "not from a previous page"))?,
            )
        };
        let mut rows = self.store.looks(id, limit + 1, before).await.map_err(ApiError::from)?;
        let next_page_token = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|l| l.look.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(tonic::Response::new(pb::ListResultsResponse {
            results: rows.iter().map(|l| result_message(&l.result)).collect(),
            next_page_token,
        }))
    }
}

/// `GET /api/v1/experiments/{id}/results` (id or key; `?environment=` when it is a key).
pub fn router(api: Arc<Api>) -> Router {
    Router::new().route("/api/v1/experiments/{experiment}/results", get(http_results)).with_state(api)
}

#[derive(Debug, serde::Deserialize)]
struct Query {
    #[serde(default)]
    environment: String,
}

async fn http_results(
    State(api): State<Arc<Api>>,
    Path(experiment): Path<String>,
    axum::extract::Query(q): axum::extract::Query<Query>,
    headers: HeaderMap,
) -> Response {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let result = async {
        let p = api.principal(auth).await?;
        let id = api.experiment(&p, &q.environment, &experiment).await?;
        api.store.latest(id).await?.ok_or_else(|| ApiError::NotFound("no results yet".into()))
    }
    .await;
    match result {
        Ok(r) => (StatusCode::OK, axum::Json(r)).into_response(),
        Err(e) => e.into_response(),
    }
}
