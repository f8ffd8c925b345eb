//! The verified-key cache: bounded by recency, revocations evict and win races, entries expire.

use std::time::Duration;

use cohort_db::keys::{KeyKind, Principal};
use uuid::Uuid;

use super::KeyCache;

fn principal(key_id: Uuid) -> Principal {
    Principal {
        environment_id: Some(Uuid::nil()),
        ..Principal::unlimited(key_id, "k".to_owned(), KeyKind::Sdk, Uuid::nil())
    }
}

fn hash(i: u8) -> Vec<u8> {
    vec![i; 32]
}

#[test]
fn filling_past_capacity_keeps_the_most_recent_keys() {
    let cache = KeyCache::new(4, Duration::from_secs(60));
    for i in 0..10 {
        cache.insert(hash(i), principal(Uuid::new_v4()), cache.revocations());
    }
    cache.keys.run_pending_tasks();
    assert_eq!(cache.keys.entry_count(), 4);
    for i in 6..10 {
        assert!(cache.get(&hash(i)).is_some(), "recent key {i} was evicted");
    }
    for i in 0..6 {
        assert!(cache.get(&hash(i)).is_none(), "old key {i} outlived newer ones");
    }
}

#[test]
fn a_recently_used_key_outlives_newer_unused_ones() {
    let cache = KeyCache::new(4, Duration::from_secs(60));
    for i in 0..4 {
        cache.insert(hash(i), principal(Uuid::new_v4()), cache.revocations());
    }
    cache.keys.run_pending_tasks();
    assert!(cache.get(&hash(0)).is_some());
    cache.insert(hash(4), principal(Uuid::new_v4()), cache.revocations());
    cache.keys.run_pending_tasks();
    assert!(cache.get(&hash(0)).is_some(), "the key just used was evicted");
    assert!(cache.get(&hash(1)).is_none(), "the least recently used key stayed");
    assert!(cache.get(&hash(4)).is_some());
}

#[test]
fn forget_evicts_every_entry_of_the_key_id() {
    let cache = KeyCache::new(100, Duration::from_secs(60));
    let (revoked, kept) = (Uuid::new_v4(), Uuid::new_v4());
    cache.insert(hash(1), principal(revoked), cache.revocations());
    cache.insert(hash(2), principal(revoked), cache.revocations());
    cache.insert(hash(3), principal(kept), cache.revocations());
    cache.forget(revoked);
    assert!(cache.get(&hash(1)).is_none());
    assert!(cache.get(&hash(2)).is_none());
    assert_eq!(cache.get(&hash(3)).map(|p| p.key_id), Some(kept));
}

#[test]
fn a_lookup_that_raced_a_revocation_is_not_cached() {
    let cache = KeyCache::new(100, Duration::from_secs(60));
    let before = cache.revocations();
    cache.forget(Uuid::new_v4());
    cache.insert(hash(1), principal(Uuid::new_v4()), before);
    assert!(cache.get(&hash(1)).is_none(), "a lookup older than a revocation was cached");
    cache.insert(hash(1), principal(Uuid::new_v4()), cache.revocations());
    assert!(cache.get(&hash(1)).is_some());
}

#[test]
fn entries_expire_after_the_time_to_live() {
    let cache = KeyCache::new(100, Duration::from_millis(20));
    cache.insert(hash(1), principal(Uuid::new_v4()), cache.revocations());
    assert!(cache.get(&hash(1)).is_some());
    std::thread::sleep(Duration::from_millis(40));
    assert!(cache.get(&hash(1)).is_none(), "an entry outlived its time to live");
}
