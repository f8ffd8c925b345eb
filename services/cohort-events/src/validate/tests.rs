//! Every validation rule, with the field it names.

use std::collections::HashMap;

use cohort_proto::events::v1 as pb;

use super::validate;

const NOW: i64 = 1_750_000_000_000;

fn exposure() -> pb::Event {
    pb::Event {
        event_id: "0192f0c4-6a1e-7c3d-9b1a-3f2e4d5c6b7a".to_owned(),
        timestamp_ms: NOW - 1000,
        kind: Some(pb::event::Kind::Exposure(pb::Exposure {
            unit: "user-1".to_owned(),
            experiment_id: "0192f0c4-0000-7c3d-9b1a-3f2e4d5c6b7a".to_owned(),
            variant: "treatment".to_owned(),
            config_version: 7,
            attributes: HashMap::from([("country".to_owned(), "NL".to_owned())]),
        })),
    }
}

fn metric(value: Option<f64>) -> pb::Event {
    pb::Event {
        kind: Some(pb::event::Kind::Metric(pb::Metric {
            unit: "user-1".to_owned(),
            name: "checkout".to_owned(),
            value,
            properties: HashMap::new(),
        })),
        ..exposure()
    }
}

fn reason(index: usize, event: &pb::Event) -> String {
    validate(index, event, NOW).unwrap_err().reason()
}

fn with_exposure(f: impl FnOnce(&mut pb::Exposure)) -> pb::Event {
    let mut e = exposure();
    if let Some(pb::event::Kind::Exposure(x)) = &mut e.kind {
        f(x);
    }
    e
}

#[test]
fn good_events_pass() {
    validate(0, &exposure(), NOW).unwrap();
    validate(0, &metric(Some(12.5)), NOW).unwrap();
    validate(0, &metric(None), NOW).unwrap();
    // The limit itself is accepted, either sign.
    validate(0, &metric(Some(1e15)), NOW).unwrap();
    validate(0, &metric(Some(-1e15)), NOW).unwrap();
}

#[test]
fn each_rule_names_its_field() {
    let e = with_exposure(|x| x.unit.clear());
    assert_eq!(reason(3, &e), "events[3].exposure.unit: must be 1 to 256 bytes");
    let e = with_exposure(|x| x.unit = "u".repeat(257));
    assert_eq!(reason(0, &e), "events[0].exposure.unit: must be 1 to 256 bytes");
    let e = with_exposure(|x| x.experiment_id = "nope".to_owned());
    assert!(reason(1, &e).starts_with("events[1].exposure.experiment_id: must be a UUID"));
    let e = with_exposure(|x| x.variant = "v".repeat(129));
    assert_eq!(reason(0, &e), "events[0].exposure.variant: must be 1 to 128 bytes");
    let e = with_exposure(|x| x.config_version = -1);
    assert_eq!(reason(0, &e), "events[0].exposure.config_version: must not be negative");
    let e = with_exposure(|x| x.unit = "a\0b".to_owned());
    assert_eq!(reason(0, &e), "events[0].exposure.unit: must not contain NUL characters");

    let e = with_exposure(|x| {
        x.attributes = (0..33).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    });
    assert_eq!(reason(0, &e), "events[0].exposure.attributes: must have at most 32 entries");
    let e = with_exposure(|x| {
        x.attributes.insert("platform".to_owned(), "x".repeat(257));
    });
    assert_eq!(reason(0, &e), "events[0].exposure.attributes[\"platform\"]: must be at most 256 bytes");
    let e = with_exposure(|x| {
        x.attributes.insert(String::new(), "x".to_owned());
    });
    assert_eq!(reason(0, &e), "events[0].exposure.attributes[\"\"]: name must be 1 to 128 bytes");

    let mut e = exposure();
    e.event_id = "123".to_owned();
    assert!(reason(2, &e).starts_with("events[2].event_id: must be a UUID"));
    e = exposure();
    e.timestamp_ms = NOW - 8 * 24 * 3600 * 1000;
    assert_eq!(reason(0, &e), "events[0].timestamp_ms: must not be more than 7 days in the past");
    e.timestamp_ms = NOW + 6 * 60 * 1000;
    assert_eq!(reason(0, &e), "events[0].timestamp_ms: must not be more than 5 minutes in the future");
    e.kind = None;
    e.timestamp_ms = NOW;
    assert_eq!(reason(5, &e), "events[5].kind: must be exactly one of exposure or metric");

    assert_eq!(reason(0, &metric(Some(f64::NAN))), "events[0].metric.value: must be a finite number");
    assert_eq!(reason(0, &metric(Some(f64::INFINITY))), "events[0].metric.value: must be a finite number");
    // Finite but large enough to overflow the analysis' sums of squares.
    for value in [f64::MAX, -f64::MAX, 1e15 * (1.0 + f64::EPSILON), -2e15] {
        assert_eq!(
            reason(2, &metric(Some(value))),
            "events[2].metric.value: must be at most 1e15 in magnitude",
            "{value}"
        );
    }
    let mut m = metric(None);
    if let Some(pb::event::Kind::Metric(x)) = &mut m.kind {
        x.name.clear();
    }
    assert_eq!(reason(0, &m), "events[0].metric.name: must be 1 to 128 bytes");
}

#[test]
fn rejections_carry_index_id_and_rule() {
    let e = with_exposure(|x| x.unit.clear());
    let r = validate(4, &e, NOW).unwrap_err();
    assert_eq!(r.index, 4);
    assert_eq!(r.event_id, e.event_id);
    assert_eq!(r.rule, "unit");
    let p = r.to_proto(2);
    assert_eq!((p.index, p.batch, p.field.as_str()), (4, 2, "events[4].exposure.unit"));
}
