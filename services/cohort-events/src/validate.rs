//! Validation of incoming events: each bad event is refused with its index and a reason that
//! names the field (`events[3].exposure.unit: must be 1 to 256 bytes`); the others go on.
//!
//! Everything PostgreSQL would refuse is refused here, so a drain batch can never be poisoned
//! by one event (e.g. NUL characters, which neither `text` nor `jsonb` can hold).

use std::collections::HashMap;

use cohort_proto::MAX_ABS_METRIC_VALUE;
use cohort_proto::events::v1 as pb;
use uuid::Uuid;

/// Longest unit (randomization key), in bytes.
pub(crate) const MAX_UNIT_BYTES: usize = 256;
/// Longest variant key, event name or attribute name, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 128;
/// Most attributes (exposures) or properties (metric events) per event.
pub(crate) const MAX_ATTRIBUTES: usize = 32;
/// Longest attribute or property value, in bytes.
pub(crate) const MAX_VALUE_BYTES: usize = 256;
/// Oldest accepted timestamp, relative to now.
pub(crate) const MAX_PAST_MS: i64 = 7 * 24 * 3600 * 1000;
/// Furthest accepted timestamp into the future, relative to now.
pub(crate) const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;

/// Why one event was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) index: u32,
    pub(crate) event_id: String,
    /// Path of the bad field, e.g. `events[3].exposure.unit`.
    pub(crate) field: String,
    /// What is wrong, e.g. `must be 1 to 256 bytes`.
    pub(crate) problem: String,
    /// The rule, as a metric label.
    pub(crate) rule: &'static str,
}

impl Rejection {
    /// `field: problem`.
    pub(crate) fn reason(&self) -> String {
        format!("{}: {}", self.field, self.problem)
    }

    pub(crate) fn to_proto(&self, batch: u32) -> pb::RejectedEvent {
        pb::RejectedEvent {
            index: self.index,
            event_id: self.event_id.clone(),
            field: self.field.clone(),
            reason: self.reason(),
            batch,
        }
    }
}

struct Check<'a> {
    index: usize,
    event: &'a pb::Event,
}

impl Check<'_> {
    fn reject(
        &self,
        field: impl std::fmt::Display,
        problem: impl Into<String>,
        rule: &'static str,
    ) -> Rejection {
        Rejection {
            index: self.index as u32,
            event_id: self.event.event_id.chars().take(64).collect(),
            field: format!("events[{}].{field}", self.index),
            problem: problem.into(),
            rule,
        }
    }

    fn text(
        &self,
        field: &str,
        value: &str,
        min: usize,
        max: usize,
        rule: &'static str,
    ) -> Result<(), Rejection> {
        if value.len() < min || value.len() > max {
            let problem = if min == 0 {
                format!("must be at most {max} bytes")
            } else {
                format!("must be {min} to {max} bytes")
            };
            return Err(self.reject(field, problem, rule));
        }
        if value.contains('\0') {
            return Err(self.reject(field, "must not contain NUL characters", rule));
        }
        Ok(())
    }

    fn uuid(&self, field: &str, value: &str, rule: &'static str) -> Result<(), Rejection> {
        if value.len() != 36 || Uuid::try_parse(value).is_err() {
            return Err(self.reject(field, "must be a UUID like 0192f0c4-6a1e-7c3d-9b1a-3f2e4d5c6b7a", rule));
        }
        Ok(())
    }

    fn map(&self, field: &str, map: &HashMap<String, String>) -> Result<(), Rejection> {
        if map.len() > MAX_ATTRIBUTES {
            return Err(self.reject(
                field,
                format!("must have at most {MAX_ATTRIBUTES} entries"),
                "attributes",
            ));
        }
        let ok = |k: &String, v: &String| {
            (1..=MAX_NAME_BYTES).contains(&k.len())
                && v.len() <= MAX_VALUE_BYTES
                && !k.contains('\0')
                && !v.contains('\0')
        };
        // The common case allocates nothing; field paths are built only for a bad entry.
        if map.iter().all(|(k, v)| ok(k, v)) {
            return Ok(());
        }
        // Sorted, so the first bad entry reported does not depend on hash order.
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort_unstable();
        for key in keys {
            let shown: String = key.chars().take(32).collect();
            self.text(&format!("{field}[{shown:?}]"), key, 1, MAX_NAME_BYTES, "attributes").map_err(
                |mut r| {
                    r.problem = format!("name {}", r.problem);
                    r
                },
            )?;
            self.text(&format!("{field}[{shown:?}]"), &map[key], 0, MAX_VALUE_BYTES, "attributes")?;
        }
        Ok(())
    }
}

/// Checks one event, `now_ms` being the service's clock.
pub(crate) fn validate(index: usize, event: &pb::Event, now_ms: i64) -> Result<(), Rejection> {
    let c = Check { index, event };
    c.uuid("event_id", &event.event_id, "event_id")?;
    if event.timestamp_ms < now_ms - MAX_PAST_MS {
        return Err(c.reject("timestamp_ms", "must not be more than 7 days in the past", "timestamp"));
    }
    if event.timestamp_ms > now_ms + MAX_FUTURE_MS {
        return Err(c.reject("timestamp_ms", "must not be more than 5 minutes in the future", "timestamp"));
    }
    match &event.kind {
        Some(pb::event::Kind::Exposure(x)) => {
            c.text("exposure.unit", &x.unit, 1, MAX_UNIT_BYTES, "unit")?;
            c.uuid("exposure.experiment_id", &x.experiment_id, "experiment_id")?;
            c.text("exposure.variant", &x.variant, 1, MAX_NAME_BYTES, "variant")?;
            if x.config_version < 0 {
                return Err(c.reject("exposure.config_version", "must not be negative", "config_version"));
            }
            c.map("exposure.attributes", &x.attributes)
        }
        Some(pb::event::Kind::Metric(m)) => {
            c.text("metric.unit", &m.unit, 1, MAX_UNIT_BYTES, "unit")?;
            c.text("metric.name", &m.name, 1, MAX_NAME_BYTES, "name")?;
            if m.value.is_some_and(|v| !v.is_finite()) {
                return Err(c.reject("metric.value", "must be a finite number", "value"));
            }
            // Larger values would overflow the analysis' sums of squares.
            if m.value.is_some_and(|v| v.abs() > MAX_ABS_METRIC_VALUE) {
                let problem = format!("must be at most {MAX_ABS_METRIC_VALUE:e} in magnitude");
                return Err(c.reject("metric.value", problem, "value"));
            }
            c.map("metric.properties", &m.properties)
        }
        None => Err(c.reject("kind", "must be exactly one of exposure or metric", "kind")),
    }
}

#[cfg(test)]
mod tests;
