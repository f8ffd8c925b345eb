//! The lifecycle paths, legal and not.

use cohort_core::model::ExperimentStatus::{Completed, Draft, Paused, Running};

use super::{Action, path};

#[test]
fn legal_paths_take_the_fewest_moves() {
    assert_eq!(path(Draft, Draft), Ok(vec![]));
    assert_eq!(path(Draft, Running), Ok(vec![Action::Start]));
    assert_eq!(path(Draft, Paused), Ok(vec![Action::Start, Action::Pause]));
    assert_eq!(path(Draft, Completed), Ok(vec![Action::Start, Action::Complete]));
    assert_eq!(path(Running, Paused), Ok(vec![Action::Pause]));
    assert_eq!(path(Paused, Running), Ok(vec![Action::Resume]));
    assert_eq!(path(Running, Completed), Ok(vec![Action::Complete]));
    assert_eq!(path(Paused, Completed), Ok(vec![Action::Complete]));
    assert_eq!(path(Completed, Completed), Ok(vec![]));
}

#[test]
fn impossible_moves_say_why() {
    let e = path(Completed, Running).unwrap_err();
    assert!(e.contains("completed") && e.contains("new experiment"), "{e}");
    assert!(path(Running, Draft).unwrap_err().contains("back to draft"));
    assert!(path(Paused, Draft).is_err());
    assert!(path(Completed, Draft).is_err());
}
