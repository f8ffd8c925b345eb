//! The gRPC `EvaluationService`: read the key from metadata, call the [`Evaluator`], encode.
//! Errors map to statuses in one place (`From<ServiceError> for Status`).

use cohort_proto::evaluation::v1 as pb;
use pb::evaluation_service_server::EvaluationService;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::evaluate::Evaluator;

#[derive(Debug, Clone)]
pub struct Api {
    pub evaluator: Evaluator,
}

fn authorization(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    metadata.get("authorization").and_then(|v| v.to_str().ok())
}

#[tonic::async_trait]
impl EvaluationService for Api {
    #[instrument(level = "debug", skip_all, fields(keys = request.get_ref().keys.len()))]
    async fn evaluate(
        &self,
        request: Request<pb::EvaluateRequest>,
    ) -> Result<Response<pb::EvaluateResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let response = self.evaluator.evaluate(authorization(&metadata), message).await?;
        Ok(Response::new(response))
    }

    #[instrument(level = "debug", skip_all, fields(contexts = request.get_ref().contexts.len()))]
    async fn evaluate_batch(
        &self,
        request: Request<pb::EvaluateBatchRequest>,
    ) -> Result<Response<pb::EvaluateBatchResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let response = self.evaluator.evaluate_batch(authorization(&metadata), message).await?;
        Ok(Response::new(response))
    }
}
