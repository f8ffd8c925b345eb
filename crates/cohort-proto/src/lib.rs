//! Cohort's gRPC API: the generated code for `proto/cohort/*/v1` and the conversions between
//! wire types and cohort-core types. Proto types stop here: conversions into core types
//! validate and name the bad field.
//!
//! # Layout
//! - [`analysis::v1`]: experiment results, per look (generated).
//! - [`common::v1`]: evaluation contexts, decisions, field violations (generated).
//! - [`config::v1`]: the config service: entities, keys, snapshots, audit, the Sync stream
//!   (its `SyncResponse` is written by hand, in `config_sync`, to carry pre-encoded responses).
//! - [`evaluation::v1`]: remote evaluation (its `EvaluateResponse` is written by hand, in
//!   `evaluate_response`, to carry decisions encoded straight from cohort-core's).
//! - [`events::v1`]: exposure and metric event ingestion (generated).
//! - [`flagd::evaluation::v1`] and [`flagd::evaluation::v2`]: flagd's evaluation API, which the
//!   evaluation service also serves for OpenFeature's flagd providers (generated from
//!   `proto/flagd`, flagd's facts).
//! - [`convert`]: `TryFrom` wire → core (validating) and `From` core → wire.
//! - [`codec`]: the codecs of every service: prost, malformed messages INVALID_ARGUMENT (the
//!   config service's with small buffers, for many streams).
//! - [`FILE_DESCRIPTOR_SET`]: every proto, for gRPC reflection.

/// Generated code; lints that the generator does not satisfy are silenced here only.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod common {
    pub mod v1 {
        tonic::include_proto!("cohort.common.v1");
    }
}

/// Generated code; lints that the generator does not satisfy are silenced here only.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod events {
    pub mod v1 {
        tonic::include_proto!("cohort.events.v1");
    }
}

/// Generated code; lints that the generator does not satisfy are silenced here only.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod analysis {
    pub mod v1 {
        tonic::include_proto!("cohort.analysis.v1");
    }
}

/// Generated code; lints that the generator does not satisfy are silenced here only.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod config {
    pub mod v1 {
        tonic::include_proto!("cohort.config.v1");

        pub use crate::config_sync::{SyncResponse, sync_response};

        /// The metadata under which a Cohort service presents its own key (`Bearer <service
        /// key>`) beside a client-side key's `authorization`, opening `Sync` on that key's
        /// behalf: client-side keys cannot open it alone.
        pub const SERVICE_AUTHORIZATION: &str = "cohort-service-authorization";
    }
}

/// Generated code; lints that the generator does not satisfy are silenced here only.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod evaluation {
    pub mod v1 {
        tonic::include_proto!("cohort.evaluation.v1");

        pub use crate::evaluate_response::{DecisionEncoder, EncodedDecisions, EvaluateResponse};
    }
}

/// Generated code; lints that the generator does not satisfy are silenced here only.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod flagd {
    pub mod evaluation {
        pub mod v1 {
            tonic::include_proto!("flagd.evaluation.v1");
        }

        pub mod v2 {
            tonic::include_proto!("flagd.evaluation.v2");
        }
    }
}

pub mod codec;
mod config_sync;
pub mod convert;
mod evaluate_response;

pub use convert::ProtoError;

/// The largest magnitude a metric event's `value` may have (events.proto, `MetricEvent.value`).
/// The events service rejects larger values; analysis ignores any stored before the limit
/// existed. Per-unit sums of squares of values this size stay far below `f64::MAX`, so no
/// aggregate can overflow.
pub const MAX_ABS_METRIC_VALUE: f64 = 1e15;

/// The encoded descriptor set of every Cohort proto, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cohort_descriptor");
