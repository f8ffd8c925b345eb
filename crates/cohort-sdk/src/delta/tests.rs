//! Delta application: upserts keep position, new entities append, empty definitions delete,
//! the version moves to `to_version`, and every malformed change is refused.

use cohort_core::{Definitions, compile};
use cohort_proto::config::v1::{Change, Delta, EntityKind};
use serde_json::json;

use super::{DeltaError, apply};

fn flag_json(key: &str, on: bool) -> String {
    json!({
        "key": key, "type": "boolean", "salt": key,
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off",
        "default": {"variation": if on { "on" } else { "off" }},
    })
    .to_string()
}

fn base() -> Definitions {
    let mut defs: Definitions = serde_json::from_value(json!({
        "version": 7,
        "flags": [
            serde_json::from_str::<serde_json::Value>(&flag_json("a", true)).unwrap(),
            serde_json::from_str::<serde_json::Value>(&flag_json("b", true)).unwrap(),
        ],
        "metrics": [{"key": "m", "event": "purchase", "aggregation": "count"}],
    }))
    .unwrap();
    defs.version = 7;
    defs
}

fn change(version: u64, kind: EntityKind, key: &str, json: String) -> Change {
    Change { version, kind: kind as i32, key: key.to_owned(), definition_json: json }
}

fn delta(from: u64, to: u64, changes: Vec<Change>) -> Delta {
    Delta { from_version: from, to_version: to, changes, committed_at_ms: 0 }
}

#[test]
fn upsert_replaces_in_place_and_appends_new_entities() {
    let mut defs = base();
    let d = delta(
        7,
        9,
        vec![
            change(8, EntityKind::Flag, "a", flag_json("a", false)),
            change(9, EntityKind::Flag, "c", flag_json("c", true)),
        ],
    );
    apply(&mut defs, &d).unwrap();
    assert_eq!(defs.version, 9);
    let keys: Vec<&str> = defs.flags.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(defs.flags[0].default, Some(cohort_core::model::Serve::Variation("off".into())));
    compile(&defs).unwrap();
}

#[test]
fn empty_definition_deletes() {
    let mut defs = base();
    let d = delta(
        7,
        8,
        vec![
            change(8, EntityKind::Flag, "a", String::new()),
            change(8, EntityKind::Metric, "m", String::new()),
        ],
    );
    apply(&mut defs, &d).unwrap();
    assert_eq!(defs.flags.len(), 1);
    assert_eq!(defs.flags[0].key, "b");
    assert!(defs.metrics.is_empty());
}

#[test]
fn deleting_a_missing_entity_is_a_no_op() {
    let mut defs = base();
    apply(&mut defs, &delta(7, 8, vec![change(8, EntityKind::Segment, "nope", String::new())])).unwrap();
    assert_eq!(defs.version, 8);
    assert_eq!(defs.flags.len(), 2);
}

#[test]
fn changes_apply_in_order() {
    let mut defs = base();
    let d = delta(
        7,
        10,
        vec![
            change(8, EntityKind::Flag, "x", flag_json("x", true)),
            change(9, EntityKind::Flag, "x", String::new()),
            change(10, EntityKind::Flag, "x", flag_json("x", false)),
        ],
    );
    apply(&mut defs, &d).unwrap();
    let x = defs.flags.iter().find(|f| f.key == "x").unwrap();
    assert_eq!(x.default, Some(cohort_core::model::Serve::Variation("off".into())));
}

#[test]
fn every_kind_is_addressable() {
    let mut defs = Definitions::default();
    let d = delta(
        0,
        5,
        vec![
            change(1, EntityKind::Segment, "s", json!({"key": "s", "include": ["u1"]}).to_string()),
            change(
                2,
                EntityKind::Metric,
                "m",
                json!({"key": "m", "event": "e", "aggregation": "sum"}).to_string(),
            ),
            change(
                3,
                EntityKind::Experiment,
                "e",
                json!({"id": "00000000-0000-4000-8000-000000000001", "key": "e", "status": "running",
                       "variants": [{"key": "a", "weight_bp": 5000}, {"key": "b", "weight_bp": 5000}]})
                .to_string(),
            ),
            change(4, EntityKind::Layer, "l", json!({"key": "l", "salt": "l"}).to_string()),
            change(5, EntityKind::Flag, "f", flag_json("f", true)),
            change(
                5,
                EntityKind::Holdout,
                "h",
                json!({"id": "00000000-0000-4000-8000-000000000002", "key": "h", "share_bp": 100})
                    .to_string(),
            ),
        ],
    );
    apply(&mut defs, &d).unwrap();
    assert_eq!(
        (
            defs.segments.len(),
            defs.metrics.len(),
            defs.experiments.len(),
            defs.layers.len(),
            defs.flags.len(),
            defs.holdouts.len()
        ),
        (1, 1, 1, 1, 1, 1)
    );
    let config = compile(&defs).unwrap();
    assert_eq!(config.holdout_of(config.experiment("e").unwrap()).map(|h| h.share_bp()), Some(100));

    // A holdout is updated in place and removed like any other entity.
    let off =
        json!({"id": "00000000-0000-4000-8000-000000000002", "key": "h", "share_bp": 100, "enabled": false});
    apply(&mut defs, &delta(5, 6, vec![change(6, EntityKind::Holdout, "h", off.to_string())])).unwrap();
    assert!(!defs.holdouts[0].enabled);
    apply(&mut defs, &delta(6, 7, vec![change(7, EntityKind::Holdout, "h", String::new())])).unwrap();
    assert!(defs.holdouts.is_empty());
}

#[test]
fn a_gap_is_refused_without_changes() {
    let mut defs = base();
    let err =
        apply(&mut defs, &delta(6, 8, vec![change(8, EntityKind::Flag, "a", String::new())])).unwrap_err();
    assert!(matches!(err, DeltaError::Gap { held: 7, from: 6 }), "{err}");
    assert_eq!(defs, base());
}

#[test]
fn unknown_kind_is_refused() {
    let mut defs = base();
    let mut c = change(8, EntityKind::Flag, "a", String::new());
    c.kind = 42;
    let err = apply(&mut defs, &delta(7, 8, vec![c])).unwrap_err();
    assert!(matches!(err, DeltaError::UnknownKind { kind: 42, .. }), "{err}");
    let err = apply(&mut base(), &delta(7, 8, vec![change(8, EntityKind::Unspecified, "a", String::new())]))
        .unwrap_err();
    assert!(matches!(err, DeltaError::UnknownKind { kind: 0, .. }), "{err}");
}

#[test]
fn malformed_json_names_the_change() {
    let err = apply(&mut base(), &delta(7, 8, vec![change(8, EntityKind::Flag, "a", "{not json".into())]))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("changes[0] (flag a)"), "{text}");
}

#[test]
fn key_mismatch_is_refused() {
    let err = apply(&mut base(), &delta(7, 8, vec![change(8, EntityKind::Flag, "a", flag_json("z", true))]))
        .unwrap_err();
    assert!(matches!(err, DeltaError::KeyMismatch { ref found, .. } if found == "z"), "{err}");
}

#[test]
fn an_empty_delta_only_moves_the_version() {
    let mut defs = base();
    apply(&mut defs, &delta(7, 12, vec![])).unwrap();
    assert_eq!(defs.version, 12);
    assert_eq!(defs.flags.len(), 2);
}
