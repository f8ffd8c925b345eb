//! The exposure dedup window: a fixed-size, direct-mapped table of recent exposure
//! fingerprints (a 64-bit hash of unit, experiment id and variant) in atomics.
//!
//! Wait-free and allocation-free on the evaluation path: one hash, one load, and a store only
//! for a new fingerprint. Memory is `8 × capacity` bytes. A fingerprint stays until another
//! one lands in its slot, so the window holds roughly the `capacity` most recent distinct
//! exposures; an evicted one is recorded again on its next evaluation (a duplicate the event
//! pipeline and analysis tolerate: analysis keys on the unit's first exposure). Including the
//! variant means a unit re-assigned by a config change is recorded again.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::fast::{FixedState, RandomState};
use uuid::Uuid;

/// Recently recorded exposures.
#[derive(Debug)]
pub(crate) struct DedupWindow {
    slots: Box<[AtomicU64]>,
    mask: usize,
    hasher: FixedState,
}

impl DedupWindow {
    /// A window of `capacity` slots, rounded up to a power of two (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        // A per-process seed, so an attacker cannot aim units at one slot.
        Self::with_seed(capacity, RandomState::default().hash_one(0u64))
    }

    /// A window with a fixed hash seed (tests use one, so collisions are reproducible).
    pub(crate) fn with_seed(capacity: usize, seed: u64) -> Self {
        let size = capacity.max(1).next_power_of_two();
        DedupWindow {
            slots: (0..size).map(|_| AtomicU64::new(0)).collect(),
            mask: size - 1,
            hasher: FixedState::with_seed(seed),
        }
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// True the first time (unit, experiment, variant) is seen within the window: the
    /// caller records an exposure. Concurrent first sightings may both return true.
    pub(crate) fn first_sighting(&self, unit: &str, experiment: Uuid, variant: &str) -> bool {
        // 0 marks an empty slot.
        let h = self.hasher.hash_one((unit, experiment.as_u128(), variant)).max(1);
        // The high bits pick the slot, the full hash is the fingerprint.
        let slot = &self.slots[(h >> 32) as usize & self.mask];
        if slot.load(Ordering::Relaxed) == h {
            return false;
        }
        slot.store(h, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests;
