//! The ingestion domain, shared by the gRPC and HTTP front ends: authenticate, rate-limit,
//! validate, spool durably, count. No tonic or axum types here: a refused request is an
//! `ApiError`, which each front end turns into its protocol's answer.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use cohort_core::time::unix_ms;

use cohort_proto::events::v1 as pb;
use cohort_runtime::ApiError;
use uuid::Uuid;

use crate::auth::{Caller, KeyCache};
use crate::error::IngestError;
use crate::metrics::{Metrics, ReasonLabels};
use crate::ratelimit::RateLimiter;
use crate::settings::MAX_BATCH_EVENTS;
use crate::spool::{Spool, SpoolRecord, frame};
use crate::validate::{Rejection, validate};

/// What happened to one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BatchOutcome {
    /// Events now durable in the spool.
    pub(crate) accepted: u32,
    pub(crate) rejected: Vec<Rejection>,
}

/// Everything a request needs; one per process, shared by both front ends.
#[derive(Debug)]
pub(crate) struct Ingest {
    keys: KeyCache,
    limiter: RateLimiter,
    spool: Spool,
    metrics: Arc<Metrics>,
}

impl Ingest {
    pub(crate) fn new(keys: KeyCache, limiter: RateLimiter, spool: Spool, metrics: Arc<Metrics>) -> Self {
        Ingest { keys, limiter, spool, metrics }
    }

    /// The environment of the SDK or client key in an `authorization` header value.
    pub(crate) async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let result = async {
            let key = crate::auth::bearer(authorization)?;
            self.keys.caller(key).await
        }
        .await;
        result.map_err(|e| self.refuse(e.into()))
    }

    /// Validates `events` for the caller's environment and makes the valid ones durable. A
    /// client-side key's batch holding a metric event is refused whole: nothing is stored.
    pub(crate) async fn send_batch(
        &self,
        caller: Caller,
        events: Vec<pb::Event>,
    ) -> Result<BatchOutcome, ApiError> {
        if caller.exposures_only
            && let Some(index) =
                events.iter().position(|e| matches!(e.kind, Some(pb::event::Kind::Metric(_))))
        {
            return Err(self.refuse(IngestError::MetricFromClientKey { index }));
        }
        self.accept(caller.environment, events).await.map_err(|e| self.refuse(e))
    }

    /// Counts a refused request by its code.
    fn refuse(&self, e: IngestError) -> ApiError {
        let e = ApiError::from(e);
        self.metrics.refuse(e.code_name());
        e
    }

    async fn accept(&self, environment: Uuid, events: Vec<pb::Event>) -> Result<BatchOutcome, IngestError> {
        if events.is_empty() {
            return Err(IngestError::EmptyBatch);
        }
        if events.len() > MAX_BATCH_EVENTS {
            return Err(IngestError::TooManyEvents { got: events.len(), max: MAX_BATCH_EVENTS });
        }
        self.limiter
            .try_acquire(environment, events.len(), Instant::now())
            .map_err(|retry_after| IngestError::RateLimited { retry_after })?;
        let now = unix_ms(SystemTime::now());
        let mut rejected = Vec::new();
        let mut accepted = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            match validate(i, &event, now) {
                Ok(()) => accepted.push(event),
                Err(r) => {
                    self.metrics.rejected.get_or_create(&ReasonLabels { reason: r.rule }).inc();
                    rejected.push(r);
                }
            }
        }
        let count = accepted.len() as u32;
        if count > 0 {
            let record = SpoolRecord {
                environment_id: environment.as_bytes().to_vec(),
                received_at_ms: now,
                events: accepted,
            };
            self.spool.append(frame(&record)).await?;
            self.metrics.accepted.inc_by(u64::from(count));
        }
        Ok(BatchOutcome { accepted: count, rejected })
    }
}
