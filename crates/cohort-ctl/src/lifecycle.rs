//! Experiment lifecycle moves, and the legal path from one status to another: draft →
//! running (start), running → paused (pause), paused → running (resume), running or paused →
//! completed (complete).

use cohort_core::model::ExperimentStatus;
use cohort_proto::config::v1 as pb;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Pause,
    Resume,
    Complete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Complete => "complete",
        }
    }

    /// What the output says once it is done.
    pub fn past(self) -> &'static str {
        match self {
            Action::Start => "started",
            Action::Pause => "paused",
            Action::Resume => "resumed",
            Action::Complete => "completed",
        }
    }

    pub fn to_proto(self) -> pb::ExperimentAction {
        match self {
            Action::Start => pb::ExperimentAction::Start,
            Action::Pause => pb::ExperimentAction::Pause,
            Action::Resume => pb::ExperimentAction::Resume,
            Action::Complete => pb::ExperimentAction::Complete,
        }
    }
}

/// The moves that take an experiment from `from` to `to`, or why there are none.
///
/// A draft asked to be paused or completed is started first: that is the only way there, and
/// it is what reproducing another environment's state needs.
pub fn path(from: ExperimentStatus, to: ExperimentStatus) -> Result<Vec<Action>, String> {
    use ExperimentStatus::*;
    Ok(match (from, to) {
        _ if from == to => Vec::new(),
        (Draft, Running) => vec![Action::Start],
        (Draft, Paused) => vec![Action::Start, Action::Pause],
        (Draft, Completed) => vec![Action::Start, Action::Complete],
        (Running, Paused) => vec![Action::Pause],
        (Paused, Running) => vec![Action::Resume],
        (Running | Paused, Completed) => vec![Action::Complete],
        (Running | Paused, Draft) => {
            return Err(format!(
                "cannot move from {} back to draft: an experiment that has run never returns to draft",
                from.as_str()
            ));
        }
        (Completed, _) => {
            return Err(format!(
                "cannot move from completed to {}: a completed experiment never runs again; \
                 create a new experiment (new key) instead",
                to.as_str()
            ));
        }
        _ => return Err(format!("cannot move from {} to {}", from.as_str(), to.as_str())),
    })
}

#[cfg(test)]
mod tests;
