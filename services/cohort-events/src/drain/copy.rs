//! Encoding spooled events as PostgreSQL binary `COPY` data (one buffer per table), noting the
//! days (daily partitions) the events fall on.
//!
//! Binary COPY: a fixed header, then per row a field count and each field as a length-prefixed
//! big-endian value (-1 for NULL), then a -1 trailer. Timestamps are microseconds since
//! 2000-01-01 UTC; `jsonb` is a version byte (1) followed by JSON text.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use cohort_core::time::day_of;
use cohort_proto::events::v1 as pb;
use tracing::error;
use uuid::Uuid;

use super::{Prepared, ids};
use crate::spool::{Position, SpoolRecord};

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// A binary COPY buffer being built.
struct CopyBuf {
    buf: Vec<u8>,
    rows: u64,
}

impl CopyBuf {
    fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(HEADER);
        CopyBuf { buf, rows: 0 }
    }

    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self.rows += 1;
    }

    fn field(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    fn uuid(&mut self, id: &Uuid) {
        self.field(id.as_bytes());
    }

    fn text(&mut self, s: &str) {
        self.field(s.as_bytes());
    }

    fn int8(&mut self, v: i64) {
        self.field(&v.to_be_bytes());
    }

    fn float8(&mut self, v: Option<f64>) {
        match v {
            Some(v) => self.field(&v.to_be_bytes()),
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    fn timestamptz(&mut self, ms: i64) {
        self.int8(ms.saturating_mul(1000) - PG_EPOCH_OFFSET_US);
    }

    fn jsonb(&mut self, map: &HashMap<String, String>) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.push(1);
        // A map of strings always serialises.
        let _ = serde_json::to_writer(&mut self.buf, map);
        let len = (self.buf.len() - start - 4) as i32;
        self.buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn finish(mut self) -> (Bytes, u64) {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        (Bytes::from(self.buf), self.rows)
    }
}

/// Encodes the events of `records` for the two staging tables.
pub(super) fn encode(records: &[SpoolRecord], end: Position) -> Prepared {
    let events: usize = records.iter().map(|r| r.events.len()).sum();
    let mut exposures = CopyBuf::new(events * 160 + 64);
    let mut metrics = CopyBuf::new(64);
    let mut days = BTreeSet::new();
    let mut skipped = 0;
    for record in records {
        let Ok(environment) = Uuid::from_slice(&record.environment_id) else {
            error!(events = record.events.len(), "spool record without a valid environment; skipped");
            skipped += record.events.len() as u64;
            continue;
        };
        for event in &record.events {
            let experiment = match &event.kind {
                Some(pb::event::Kind::Exposure(x)) => Some(x.experiment_id.as_str()),
                _ => None,
            };
            let Some((event_id, experiment_id)) = ids(event, experiment) else {
                error!(event_id = %event.event_id, "spooled event with an invalid id; skipped");
                skipped += 1;
                continue;
            };
            match &event.kind {
                Some(pb::event::Kind::Exposure(x)) => {
                    let b = &mut exposures;
                    b.row(9);
                    b.uuid(&environment);
                    b.uuid(&event_id);
                    b.uuid(&experiment_id.unwrap_or_default());
                    b.text(&x.unit);
                    b.text(&x.variant);
                    b.int8(x.config_version);
                    b.jsonb(&x.attributes);
                    b.timestamptz(event.timestamp_ms);
                    b.timestamptz(record.received_at_ms);
                }
                Some(pb::event::Kind::Metric(m)) => {
                    let b = &mut metrics;
                    b.row(8);
                    b.uuid(&environment);
                    b.uuid(&event_id);
                    b.text(&m.unit);
                    b.text(&m.name);
                    b.float8(m.value);
                    b.jsonb(&m.properties);
                    b.timestamptz(event.timestamp_ms);
                    b.timestamptz(record.received_at_ms);
                }
                None => {
                    error!(event_id = %event.event_id, "spooled event without a kind; skipped");
                    skipped += 1;
                    continue;
                }
            }
            days.insert(day_of(event.timestamp_ms));
        }
    }
    let (exposures, exposure_rows) = exposures.finish();
    let (metrics, metric_rows) = metrics.finish();
    Prepared { exposures, exposure_rows, metrics, metric_rows, days, end, skipped }
}
