//! Experiment lifecycle moves, and the legal path from one status to another: draft →
//! running (start), running → paused (pause), paused → running (resume), running or paused →
//! completed (complete).

use cohort_core::model::ExperimentStatus;

pub use cohort_core::model::ExperimentAction as Action;

/// What the output says once `action` is done.
pub fn past(action: Action) -> &'static str {
    match action {
        Action::Start => "started",
        Action::Pause => "paused",
        Action::Resume => "resumed",
        Action::Complete => "completed",
    }
}

/// The moves that take an experiment from `from` to `to`, or why there are none.
///
/// A draft asked to be paused or completed is started first: that is the only way there, and
/// it is what reproducing another environment's state needs.
pub fn path(from: ExperimentStatus, to: ExperimentStatus) -> Result<Vec<Action>, String> {
    use ExperimentStatus::*;
    match (from, to) {
        (Running | Paused, Draft) => {
            return Err(format!(
                "cannot move from {} back to draft: an experiment that has run never returns to draft",
                from.as_str()
            ));
        }
        (Completed, _) if to != Completed => {
            return Err(format!(
                "cannot move from completed to {}: a completed experiment never runs again; \
                 create a new experiment (new key) instead",
                to.as_str()
            ));
        }
        _ => {}
    }
    // The shortest walk over the lifecycle table (at most two moves: it has four statuses
    // and draft is only ever left).
    let step = |at: ExperimentStatus| Action::ALL.into_iter().filter_map(move |a| Some((a, a.target(at)?)));
    if from == to {
        return Ok(Vec::new());
    }
    if let Some((a, _)) = step(from).find(|(_, s)| *s == to) {
        return Ok(vec![a]);
    }
    step(from)
        .find_map(|(a, mid)| step(mid).find(|(_, s)| *s == to).map(|(b, _)| vec![a, b]))
        .ok_or_else(|| format!("cannot move from {} to {}", from.as_str(), to.as_str()))
}

#[cfg(test)]
mod tests;
