//! COPY encoding and partition names (storage is tested against PostgreSQL in the
//! integration tests; the calendar in cohort-core's `time`).

use cohort_proto::events::v1 as pb;

use super::copy::encode;
use super::{INSERT_EXPOSURES, insert_for_day};
use crate::spool::{Position, SpoolRecord};

#[test]
fn batches_encode_one_row_per_event_in_each_table() {
    let exposure = pb::Event {
        event_id: "0192f0c4-6a1e-7c3d-9b1a-3f2e4d5c6b7a".to_owned(),
        timestamp_ms: 1_767_225_600_000,
        kind: Some(pb::event::Kind::Exposure(pb::Exposure {
            unit: "u".to_owned(),
            experiment_id: "0192f0c4-0000-7c3d-9b1a-3f2e4d5c6b7a".to_owned(),
            variant: "a".to_owned(),
            config_version: 1,
            attributes: [("country".to_owned(), "NL".to_owned())].into(),
        })),
    };
    let metric = pb::Event {
        timestamp_ms: 1_767_225_599_000,
        kind: Some(pb::event::Kind::Metric(pb::Metric {
            unit: "u".to_owned(),
            name: "buy".to_owned(),
            value: None,
            properties: Default::default(),
        })),
        ..exposure.clone()
    };
    let mut broken = metric.clone();
    broken.event_id = "x".to_owned();
    let record = SpoolRecord {
        environment_id: vec![1; 16],
        received_at_ms: 1_767_225_600_001,
        events: vec![exposure, metric, broken],
    };
    let end = Position { segment: 1, offset: 99 };
    let p = encode(&[record], end);
    assert_eq!((p.exposure_rows, p.metric_rows, p.skipped), (1, 1, 1));
    assert_eq!(p.days.iter().copied().collect::<Vec<_>>(), vec![20_453, 20_454]);
    assert!(p.exposures.starts_with(b"PGCOPY\n\xff\r\n\0"));
    assert!(p.exposures.ends_with(&[0xff, 0xff]));
    assert_eq!(p.end, end);
    // The JSON attributes are in the buffer as jsonb (version byte then text).
    let needle = b"\x01{\"country\":\"NL\"}";
    assert!(p.exposures.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn inserts_target_one_day_partition() {
    let sql = insert_for_day(INSERT_EXPOSURES, "exposures", 20_454);
    assert!(sql.starts_with("INSERT INTO exposures_p20260101 ("), "{sql}");
    assert!(sql.contains("WHERE ts >= '2026-01-01 00:00:00+00' AND ts < '2026-01-02 00:00:00+00'"), "{sql}");
    assert!(!sql.contains('{'), "{sql}");
}
