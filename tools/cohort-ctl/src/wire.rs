//! Where JSON carried in gRPC messages becomes a `serde_json::Value`: one small function per
//! message, so a change of how the APIs carry it (text today) is made here alone.

use cohort_proto::analysis::v1 as apb;
use cohort_proto::config::v1 as pb;
use serde_json::Value;

use crate::definition::Kind;
use crate::error::CtlError;

/// An analysis result: the whole result (metrics, comparisons, intervals, SRM, looks) is in
/// `result_json`; the message's other fields repeat parts of it.
pub fn result_value(r: &apb::ExperimentResult) -> Result<Value, CtlError> {
    serde_json::from_str(&r.result_json).map_err(|e| {
        CtlError::Protocol(format!("a result of experiment {:?} that is not JSON: {e}", r.experiment_key))
    })
}

/// A stored entity's definition.
pub fn definition_value(e: &pb::Entity) -> Result<Value, CtlError> {
    serde_json::from_str(&e.definition_json).map_err(|err| {
        let kind = cohort_proto::convert::entity_kind(e.kind).map_or("entity", Kind::as_str);
        CtlError::Protocol(format!("{kind} {:?} as invalid JSON: {err}", e.key))
    })
}
