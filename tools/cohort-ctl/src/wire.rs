//! Where the structured data of the services' answers (`google.protobuf.Struct`) becomes a
//! `serde_json::Value`, with cohortctl's errors: one small function per message.

use cohort_proto::analysis::v1 as apb;
use cohort_proto::config::v1 as pb;
use cohort_proto::convert::structured;
use serde_json::Value;

use crate::definition::Kind;
use crate::error::CtlError;

/// An analysis result: the whole result (metrics, comparisons, intervals, SRM, looks) is in
/// `result`; the message's other fields repeat parts of it.
pub fn result_value(r: &apb::ExperimentResult) -> Result<Value, CtlError> {
    match r.result.as_ref() {
        Some(result) => structured::struct_json(result, "result").map_err(|e| {
            CtlError::Protocol(format!("a result of experiment {:?} with {e}", r.experiment_key))
        }),
        None => {
            Err(CtlError::Protocol(format!("a result of experiment {:?} without its body", r.experiment_key)))
        }
    }
}

/// A stored entity's definition.
pub fn definition_value(e: &pb::Entity) -> Result<Value, CtlError> {
    let kind = || cohort_proto::convert::entity_kind(e.kind).map_or("entity", Kind::as_str);
    match e.definition.as_ref() {
        Some(d) => structured::struct_json(d, "definition")
            .map_err(|err| CtlError::Protocol(format!("{} {:?} with {err}", kind(), e.key))),
        None => Err(CtlError::Protocol(format!("{} {:?} without a definition", kind(), e.key))),
    }
}
