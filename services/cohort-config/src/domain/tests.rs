//! Write planning: validation by compilation, revisions, lifecycle rules, error paths.

use serde_json::{Value, json};

use super::*;

fn flag(key: &str) -> Value {
    json!({
        "key": key, "type": "boolean", "salt": "s",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off", "default": {"variation": "on"},
    })
}

fn experiment(key: &str, status: &str) -> Value {
    json!({
        "id": "00000000-0000-4000-8000-000000000001", "key": key, "status": status,
        "variants": [{"key": "a", "weight_bp": 5000}, {"key": "b", "weight_bp": 5000}],
    })
}

fn stored(kind: Kind, definition: Value) -> Entity {
    let (key, definition) = canonical(kind, &definition).unwrap();
    Entity { kind, key, definition, revision: 3 }
}

fn violations(err: ServiceError) -> Vec<String> {
    match err {
        ServiceError::InvalidArgument(v) | ServiceError::FailedPrecondition { violations: v, .. } => {
            v.into_iter().map(|(f, d)| format!("{f}: {d}")).collect()
        }
        other => panic!("expected violations, got {other:?}"),
    }
}

#[test]
fn create_assigns_revision_one_and_canonical_json() {
    let p = plan(Op::Create { kind: Kind::Flag, definition: flag("f") }, &[]).unwrap();
    assert_eq!((p.key.as_str(), p.action, p.revision), ("f", "create", 1));
    assert_eq!(p.after.unwrap()["enabled"], json!(true), "defaults are made explicit");
}

#[test]
fn bad_input_names_the_field_within_the_definition() {
    let mut f = flag("f");
    f["variations"][1]["value"] = json!("nope");
    let err = plan(Op::Create { kind: Kind::Flag, definition: f }, &[]).unwrap_err();
    assert_eq!(violations(err), ["definition.variations[1].value: \"nope\" is not a boolean value"]);

    let mut f = flag("f");
    f["default"] = json!({"variation": 7});
    let err = plan(Op::Create { kind: Kind::Flag, definition: f }, &[]).unwrap_err();
    let v = violations(err);
    assert!(v[0].starts_with("definition.default"), "{v:?}");
}

#[test]
fn weights_error_is_reported_under_definition() {
    let mut e = experiment("e", "draft");
    e["variants"][1]["weight_bp"] = json!(4900);
    let others = [stored(Kind::Experiment, {
        let mut o = experiment("other", "draft");
        o["id"] = json!("00000000-0000-4000-8000-000000000002");
        o
    })];
    let err = plan(Op::Create { kind: Kind::Experiment, definition: e }, &others).unwrap_err();
    assert_eq!(violations(err), ["definition.variants[1].weight_bp: weights sum to 9900, expected 10000"]);
}

#[test]
fn new_experiments_get_an_id_and_start_as_drafts() {
    let mut e = experiment("e", "draft");
    e.as_object_mut().unwrap().remove("id");
    e.as_object_mut().unwrap().remove("status");
    let p = plan(Op::Create { kind: Kind::Experiment, definition: e }, &[]).unwrap();
    let after = p.after.unwrap();
    assert_eq!(after["status"], json!("draft"));
    assert!(Uuid::parse_str(after["id"].as_str().unwrap()).is_ok());
    let err =
        plan(Op::Create { kind: Kind::Experiment, definition: experiment("e", "running") }, &[]).unwrap_err();
    assert_eq!(violations(err)[0].split(':').next(), Some("definition.status"));
}

#[test]
fn stale_revisions_are_refused() {
    let current = [stored(Kind::Flag, flag("f"))];
    let op = Op::Update { kind: Kind::Flag, key: "f".into(), definition: flag("f"), expected_revision: 2 };
    assert!(matches!(plan(op, &current), Err(ServiceError::FailedPrecondition { .. })));
    let op = Op::Update { kind: Kind::Flag, key: "f".into(), definition: flag("f"), expected_revision: 3 };
    assert_eq!(plan(op, &current).unwrap().revision, 4);
}

#[test]
fn keys_cannot_be_renamed_or_duplicated() {
    let current = [stored(Kind::Flag, flag("f"))];
    let op = Op::Update { kind: Kind::Flag, key: "f".into(), definition: flag("g"), expected_revision: 3 };
    assert_eq!(violations(plan(op, &current).unwrap_err())[0].split(':').next(), Some("definition.key"));
    let err = plan(Op::Create { kind: Kind::Flag, definition: flag("f") }, &current).unwrap_err();
    assert!(matches!(err, ServiceError::AlreadyExists(_)));
    // Flags and experiments share one key space.
    let err = plan(Op::Create { kind: Kind::Experiment, definition: experiment("f", "draft") }, &current)
        .unwrap_err();
    assert_eq!(violations(err), ["definition.key: duplicate key \"f\", already used by flags[0]"]);
}

#[test]
fn lifecycle_moves_follow_the_state_machine() {
    let draft = [stored(Kind::Experiment, experiment("e", "draft"))];
    let t = |action, current: &[Entity]| {
        plan(Op::Transition { key: "e".into(), action, expected_revision: 3 }, current)
    };
    assert_eq!(t(Action::Start, &draft).unwrap().after.unwrap()["status"], json!("running"));
    for illegal in [Action::Pause, Action::Resume, Action::Complete] {
        let err = t(illegal, &draft).unwrap_err().to_string();
        assert!(err.contains("it is draft"), "{err}");
    }
    let running = [stored(Kind::Experiment, experiment("e", "running"))];
    assert_eq!(t(Action::Pause, &running).unwrap().after.unwrap()["status"], json!("paused"));
    assert!(t(Action::Start, &running).is_err());
    let paused = [stored(Kind::Experiment, experiment("e", "paused"))];
    assert_eq!(t(Action::Resume, &paused).unwrap().after.unwrap()["status"], json!("running"));
    assert_eq!(t(Action::Complete, &paused).unwrap().after.unwrap()["status"], json!("completed"));
}

#[test]
fn running_experiments_keep_their_variants() {
    let current = [stored(Kind::Experiment, experiment("e", "running"))];
    let mut edited = experiment("e", "running");
    edited["variants"][0]["weight_bp"] = json!(6000);
    edited["variants"][1]["weight_bp"] = json!(4000);
    let op = Op::Update { kind: Kind::Experiment, key: "e".into(), definition: edited, expected_revision: 3 };
    assert_eq!(violations(plan(op, &current).unwrap_err())[0].split(':').next(), Some("definition.variants"));
    let mut more_traffic = experiment("e", "running");
    more_traffic["traffic_bp"] = json!(9000);
    let op = Op::Update {
        kind: Kind::Experiment,
        key: "e".into(),
        definition: more_traffic,
        expected_revision: 3,
    };
    assert!(plan(op, &current).is_ok(), "traffic may change while running");
    let op = Op::Delete { kind: Kind::Experiment, key: "e".into(), expected_revision: 3 };
    assert!(matches!(plan(op, &current), Err(ServiceError::FailedPrecondition { .. })));
}

#[test]
fn starting_into_an_overlapping_layer_range_is_refused() {
    let mut second = experiment("second", "draft");
    second["id"] = json!("00000000-0000-4000-8000-000000000002");
    let current = [
        stored(Kind::Experiment, experiment("first", "running")),
        stored(Kind::Experiment, second),
        stored(
            Kind::Layer,
            json!({"key": "l", "salt": "ls", "experiments": [
                {"experiment": "first", "range": [0, 6000]},
                {"experiment": "second", "range": [5000, 10000]},
            ]}),
        ),
    ];
    let err =
        plan(Op::Transition { key: "second".into(), action: Action::Start, expected_revision: 3 }, &current)
            .unwrap_err();
    assert!(matches!(err, ServiceError::FailedPrecondition { .. }));
    assert_eq!(
        violations(err),
        ["layers[\"l\"].experiments[1].range: [5000, 10000) overlaps [0, 6000) of live experiment \"first\""]
    );
}

#[test]
fn deleting_a_referenced_segment_is_refused() {
    let mut f = flag("f");
    f["rules"] =
        json!([{"condition": {"op": "in_segment", "segment": "beta"}, "serve": {"variation": "on"}}]);
    let current = [stored(Kind::Segment, json!({"key": "beta", "include": ["u1"]})), stored(Kind::Flag, f)];
    let err = plan(Op::Delete { kind: Kind::Segment, key: "beta".into(), expected_revision: 3 }, &current)
        .unwrap_err();
    assert_eq!(violations(err), ["flags[\"f\"].rules[0].condition.segment: unknown segment \"beta\""]);
}

#[test]
fn unknown_fields_are_refused_on_write() {
    let mut f = flag("f");
    f["variations"][0]["colour"] = json!("red");
    f["enabeld"] = json!(false);
    let err = plan(Op::Create { kind: Kind::Flag, definition: f }, &[]).unwrap_err();
    let mut v = violations(err);
    v.sort();
    assert_eq!(v, ["definition.enabeld: unknown field", "definition.variations[0].colour: unknown field"]);
}

#[test]
fn new_experiment_ids_are_fresh_v7_and_updates_without_an_id_keep_it() {
    let mut e = experiment("e", "draft");
    e.as_object_mut().unwrap().remove("id");
    let created = plan(Op::Create { kind: Kind::Experiment, definition: e.clone() }, &[]).unwrap();
    let id = created.after.as_ref().unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    let again = plan(Op::Create { kind: Kind::Experiment, definition: e.clone() }, &[]).unwrap();
    assert_ne!(again.after.unwrap()["id"], json!(id), "every create gets its own id");

    let current =
        [Entity { kind: Kind::Experiment, key: "e".into(), definition: created.after.unwrap(), revision: 1 }];
    let mut edited = e;
    edited["description"] = json!("now described");
    let op = Op::Update { kind: Kind::Experiment, key: "e".into(), definition: edited, expected_revision: 1 };
    let updated = plan(op, &current).unwrap();
    assert_eq!(updated.after.unwrap()["id"], json!(id), "an update without an id keeps the stored one");
}

#[test]
fn a_batch_is_planned_in_order_and_validated_once() {
    let mut e = experiment("e", "draft");
    e.as_object_mut().unwrap().remove("id");
    let ops = vec![
        Op::Create { kind: Kind::Segment, definition: json!({"key": "beta", "include": ["u1"]}) },
        Op::Create { kind: Kind::Experiment, definition: e },
        // Revision 1 is what the create above leaves.
        Op::Transition { key: "e".into(), action: Action::Start, expected_revision: 1 },
        Op::Delete { kind: Kind::Flag, key: "old".into(), expected_revision: 3 },
    ];
    let plans = plan_batch(ops, &[stored(Kind::Flag, flag("old"))]).unwrap();
    let summary: Vec<_> = plans.iter().map(|p| (p.action, p.key.as_str(), p.revision)).collect();
    assert_eq!(summary, [("create", "beta", 1), ("create", "e", 1), ("start", "e", 2), ("delete", "old", 4)]);
    assert_eq!(plans[2].after.as_ref().unwrap()["id"], plans[1].after.as_ref().unwrap()["id"]);
}

#[test]
fn batch_errors_name_the_operation() {
    // A problem in one operation's input.
    let mut bad = flag("f");
    bad["variations"][1]["value"] = json!("nope");
    let ops = vec![
        Op::Create { kind: Kind::Flag, definition: flag("g") },
        Op::Create { kind: Kind::Flag, definition: bad },
    ];
    assert_eq!(
        violations(plan_batch(ops, &[]).unwrap_err()),
        ["operations[1].definition.variations[1].value: \"nope\" is not a boolean value"]
    );
    // A problem only the whole environment shows, in the entity an operation wrote.
    let mut e = experiment("e", "draft");
    e["variants"][1]["weight_bp"] = json!(4900);
    let ops = vec![
        Op::Create { kind: Kind::Flag, definition: flag("g") },
        Op::Create { kind: Kind::Experiment, definition: e },
    ];
    assert_eq!(
        violations(plan_batch(ops, &[]).unwrap_err()),
        ["operations[1].definition.variants[1].weight_bp: weights sum to 9900, expected 10000"]
    );
    // NUL in a string, anywhere in the definition.
    let mut f = flag("h");
    f["description"] = json!("bad\u{0}text");
    let ops = vec![
        Op::Create {
            kind: Kind::Metric,
            definition: json!({"key": "m", "event": "buy", "aggregation": "count"}),
        },
        Op::Create { kind: Kind::Segment, definition: json!({"key": "s", "include": ["u1"]}) },
        Op::Create { kind: Kind::Flag, definition: f },
    ];
    let err = plan_batch(ops, &[]).unwrap_err();
    assert!(matches!(err, ServiceError::InvalidArgument(_)), "{err:?}");
    assert_eq!(
        violations(err),
        ["operations[2].definition.description: contains a NUL character (\\u0000), which cannot be stored"]
    );
    // State errors too, and a later operation sees what an earlier one did.
    let ops = vec![
        Op::Create { kind: Kind::Flag, definition: flag("g") },
        Op::Update { kind: Kind::Flag, key: "g".into(), definition: flag("g"), expected_revision: 2 },
    ];
    let err = plan_batch(ops, &[]).unwrap_err();
    assert!(err.to_string().starts_with("operations[1]: flag \"g\" is at revision 1"), "{err}");
    assert_eq!(violations(err), ["operations[1].expected_revision: stale; current revision is 1"]);
    // Breaking a stored entity is reported under its key.
    let mut uses = flag("f");
    uses["rules"] =
        json!([{"condition": {"op": "in_segment", "segment": "beta"}, "serve": {"variation": "on"}}]);
    let current =
        [stored(Kind::Segment, json!({"key": "beta", "include": ["u1"]})), stored(Kind::Flag, uses)];
    let ops = vec![
        Op::Create { kind: Kind::Flag, definition: flag("g") },
        Op::Delete { kind: Kind::Segment, key: "beta".into(), expected_revision: 3 },
    ];
    assert_eq!(
        violations(plan_batch(ops, &current).unwrap_err()),
        ["flags[\"f\"].rules[0].condition.segment: unknown segment \"beta\""]
    );
}

#[test]
fn holdouts_get_an_id_keep_it_and_are_disabled_before_deletion() {
    let created =
        plan(Op::Create { kind: Kind::Holdout, definition: json!({"key": "h", "share_bp": 100}) }, &[])
            .unwrap();
    let after = created.after.unwrap();
    let id = after["id"].as_str().unwrap().to_owned();
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    let current = [Entity { kind: Kind::Holdout, key: "h".into(), definition: after, revision: 1 }];

    let edit = |definition: Value| Op::Update {
        kind: Kind::Holdout,
        key: "h".into(),
        definition,
        expected_revision: 1,
    };
    let off = plan(edit(json!({"key": "h", "share_bp": 100, "enabled": false})), &current).unwrap();
    assert_eq!(off.after.as_ref().unwrap()["id"], json!(id), "an update without an id keeps the stored one");
    let moved = json!({"id": "00000000-0000-4000-8000-000000000009", "key": "h", "share_bp": 100});
    assert_eq!(
        violations(plan(edit(moved), &current).unwrap_err()),
        ["definition.id: a holdout's id never changes"]
    );
    // Who is held out stays put while it is enabled; disabling it (or editing a disabled
    // one) may change it.
    for (field, changed) in [
        ("share_bp", json!({"key": "h", "share_bp": 200})),
        ("salt", json!({"key": "h", "share_bp": 100, "salt": "other"})),
    ] {
        assert_eq!(
            violations(plan(edit(changed), &current).unwrap_err()),
            [format!(
                "definition.{field}: cannot change {field} of an enabled holdout; disable it first, or create a new one"
            )]
        );
    }
    assert!(plan(edit(json!({"key": "h", "share_bp": 200, "enabled": false})), &current).is_ok());
    assert!(plan(edit(json!({"key": "h", "share_bp": 100, "description": "Q3"})), &current).is_ok());

    let delete = |current: &[Entity]| {
        plan(Op::Delete { kind: Kind::Holdout, key: "h".into(), expected_revision: 1 }, current)
    };
    let err = delete(&current).unwrap_err();
    assert!(
        matches!(&err, ServiceError::FailedPrecondition { message, .. } if message.contains("disable it")),
        "{err:?}"
    );
    let disabled =
        [Entity { kind: Kind::Holdout, key: "h".into(), definition: off.after.unwrap(), revision: 1 }];
    assert_eq!(delete(&disabled).unwrap().action, "delete");
}
