//! Applying a config stream `Delta` to the held `Definitions`: each change, in order, upserts
//! or deletes one entity by (kind, key); the result carries the delta's `to_version`.
//!
//! Pure: the caller compiles the result and swaps it in, or asks for a snapshot on error.

use cohort_core::Definitions;
use cohort_core::model::{ExperimentDef, FlagDef, HoldoutDef, LayerDef, MetricDef, SegmentDef};
use cohort_proto::config::v1::{Delta, EntityKind};
use serde::de::DeserializeOwned;

/// Why a delta could not be applied. Any of these means: get a full snapshot.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeltaError {
    #[error("delta starts at version {from}, but the held config is at version {held}")]
    Gap { held: u64, from: u64 },
    #[error("changes[{index}] (key {key}): unknown entity kind {kind}")]
    UnknownKind { index: usize, key: String, kind: i32 },
    #[error("changes[{index}] ({kind} {key}): {source}")]
    Parse { index: usize, kind: &'static str, key: String, source: serde_json::Error },
    #[error("changes[{index}] ({kind} {key}): the definition's key is {found}")]
    KeyMismatch { index: usize, kind: &'static str, key: String, found: String },
}

/// Applies `delta` to `defs` in place. On error `defs` may be partly changed: apply to a copy.
pub(crate) fn apply(defs: &mut Definitions, delta: &Delta) -> Result<(), DeltaError> {
    if defs.version != delta.from_version {
        return Err(DeltaError::Gap { held: defs.version, from: delta.from_version });
    }
    for (index, change) in delta.changes.iter().enumerate() {
        let key = change.key.as_str();
        let json = change.definition_json.as_str();
        let at = |kind: &'static str| Site { index, kind, key };
        match EntityKind::try_from(change.kind) {
            Ok(EntityKind::Flag) => upsert(&mut defs.flags, json, at("flag"))?,
            Ok(EntityKind::Experiment) => upsert(&mut defs.experiments, json, at("experiment"))?,
            Ok(EntityKind::Layer) => upsert(&mut defs.layers, json, at("layer"))?,
            Ok(EntityKind::Segment) => upsert(&mut defs.segments, json, at("segment"))?,
            Ok(EntityKind::Metric) => upsert(&mut defs.metrics, json, at("metric"))?,
            Ok(EntityKind::Holdout) => upsert(&mut defs.holdouts, json, at("holdout"))?,
            Ok(EntityKind::Unspecified) | Err(_) => {
                return Err(DeltaError::UnknownKind { index, key: key.to_owned(), kind: change.kind });
            }
        }
    }
    defs.version = delta.to_version;
    Ok(())
}

/// Where a change is, for error messages.
#[derive(Clone, Copy)]
struct Site<'a> {
    index: usize,
    kind: &'static str,
    key: &'a str,
}

/// An entity addressed by key within its kind.
trait Keyed {
    fn key(&self) -> &str;
}

macro_rules! keyed {
    ($($t:ty),*) => {$(
        impl Keyed for $t {
            fn key(&self) -> &str {
                &self.key
            }
        }
    )*};
}
keyed!(FlagDef, ExperimentDef, LayerDef, SegmentDef, MetricDef, HoldoutDef);

/// Replaces the entity with the change's key (keeping its position), appends it when new, or
/// removes it when the definition is empty.
fn upsert<T: Keyed + DeserializeOwned>(
    list: &mut Vec<T>,
    json: &str,
    at: Site<'_>,
) -> Result<(), DeltaError> {
    if json.is_empty() {
        list.retain(|item| item.key() != at.key);
        return Ok(());
    }
    let item: T = serde_json::from_str(json).map_err(|source| DeltaError::Parse {
        index: at.index,
        kind: at.kind,
        key: at.key.to_owned(),
        source,
    })?;
    if item.key() != at.key {
        return Err(DeltaError::KeyMismatch {
            index: at.index,
            kind: at.kind,
            key: at.key.to_owned(),
            found: item.key().to_owned(),
        });
    }
    match list.iter_mut().find(|existing| existing.key() == at.key) {
        Some(slot) => *slot = item,
        None => list.push(item),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
