//! The gRPC front end: `cohort.events.v1.EventService`. Handlers only decode, call
//! [`Ingest`], and encode; its `cohort_runtime::ApiError`s become statuses with `?`.

use std::sync::Arc;

use cohort_proto::events::v1 as pb;
use cohort_proto::events::v1::event_service_server::EventService;
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;

use crate::ingest::Ingest;

/// The EventService implementation.
#[derive(Debug, Clone)]
pub(crate) struct EventsGrpc {
    ingest: Arc<Ingest>,
}

impl EventsGrpc {
    pub(crate) fn new(ingest: Arc<Ingest>) -> Self {
        EventsGrpc { ingest }
    }
}

fn authorization<T>(request: &Request<T>) -> Option<&str> {
    request.metadata().get("authorization").and_then(|v| v.to_str().ok())
}

#[tonic::async_trait]
impl EventService for EventsGrpc {
    #[instrument(skip_all, fields(events = request.get_ref().events.len()))]
    async fn send_batch(
        &self,
        request: Request<pb::SendBatchRequest>,
    ) -> Result<Response<pb::SendBatchResponse>, Status> {
        let caller = self.ingest.authenticate(authorization(&request)).await?;
        let events = request.into_inner().events;
        let outcome = self.ingest.send_batch(caller, events).await?;
        Ok(Response::new(pb::SendBatchResponse {
            accepted: outcome.accepted,
            rejected: outcome.rejected.iter().map(|r| r.to_proto(0)).collect(),
        }))
    }

    #[instrument(skip_all)]
    async fn stream_batches(
        &self,
        request: Request<Streaming<pb::StreamBatchesRequest>>,
    ) -> Result<Response<pb::StreamBatchesResponse>, Status> {
        let caller = self.ingest.authenticate(authorization(&request)).await?;
        let mut stream = request.into_inner();
        let mut summary = pb::StreamBatchesResponse::default();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let index = summary.batches;
            summary.batches += 1;
            // Each batch is durable before the next is read, so the summary (sent last)
            // acknowledges every accepted event.
            let outcome = self.ingest.send_batch(caller, batch.events).await?;
            summary.accepted += u64::from(outcome.accepted);
            summary.rejected.extend(outcome.rejected.iter().map(|r| r.to_proto(index)));
        }
        Ok(Response::new(summary))
    }
}
