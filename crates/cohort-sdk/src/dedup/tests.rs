//! The dedup window: first sightings pass once, the bound holds, evictions re-admit.

use uuid::Uuid;

use super::DedupWindow;

const E1: Uuid = Uuid::from_u128(1);
const E2: Uuid = Uuid::from_u128(2);

#[test]
fn a_repeat_is_suppressed() {
    let w = DedupWindow::with_seed(1024, 7);
    assert!(w.first_sighting("u1", E1, "a"));
    assert!(!w.first_sighting("u1", E1, "a"));
    assert!(!w.first_sighting("u1", E1, "a"));
}

#[test]
fn other_unit_experiment_or_variant_is_new() {
    let w = DedupWindow::with_seed(1024, 7);
    assert!(w.first_sighting("u1", E1, "a"));
    assert!(w.first_sighting("u2", E1, "a"));
    assert!(w.first_sighting("u1", E2, "a"));
    assert!(w.first_sighting("u1", E1, "b"));
}

#[test]
fn capacity_rounds_up_to_a_power_of_two() {
    assert_eq!(DedupWindow::with_seed(0, 7).capacity(), 1);
    assert_eq!(DedupWindow::with_seed(1000, 7).capacity(), 1024);
    assert_eq!(DedupWindow::with_seed(65536, 7).capacity(), 65536);
}

#[test]
fn the_window_is_bounded_and_older_entries_are_evicted() {
    let w = DedupWindow::with_seed(64, 7);
    let units: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    for u in &units {
        w.first_sighting(u, E1, "a");
    }
    // At most 64 fingerprints survive, so nearly all of the early units come back as new.
    let readmitted = units[..1000].iter().filter(|u| w.first_sighting(u, E1, "a")).count();
    assert!(readmitted > 900, "only {readmitted} of 1000 old units re-admitted");
}

#[test]
fn recent_units_within_capacity_are_mostly_remembered() {
    let w = DedupWindow::with_seed(1 << 16, 7);
    let units: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let first = units.iter().filter(|u| w.first_sighting(u, E1, "a")).count();
    assert_eq!(first, 1000);
    // 1000 keys in 65536 slots: a handful of collisions at most.
    let again = units.iter().filter(|u| w.first_sighting(u, E1, "a")).count();
    assert!(again <= 30, "{again} duplicates among 1000 recent units");
}

#[test]
fn shared_across_threads() {
    let w = std::sync::Arc::new(DedupWindow::with_seed(4096, 7));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let w = w.clone();
            std::thread::spawn(move || {
                (0..100).filter(|i| w.first_sighting(&format!("u{i}"), E1, "a")).count()
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // Every unit is admitted at least once; racing threads may admit a unit more than once.
    assert!((100..=400).contains(&total), "{total}");
    let again = (0..100).filter(|i| w.first_sighting(&format!("u{i}"), E1, "a")).count();
    assert!(again <= 5, "{again} of 100 forgotten");
}
