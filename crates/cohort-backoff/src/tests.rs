//! Backoff bounds: ceilings double up to the max, delays stay within `[ceiling/2, ceiling]`.

use std::time::Duration;

use super::{Backoff, BackoffPolicy, jitter};

#[test]
fn ceilings_double_up_to_the_max() {
    let mut b = Backoff::new(BackoffPolicy::default());
    let mut ceilings = Vec::new();
    for _ in 0..12 {
        ceilings.push(b.ceiling().as_millis());
        b.next_delay();
    }
    assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]);
}

#[test]
fn delays_stay_within_half_ceiling_and_ceiling() {
    let policy = BackoffPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(30) };
    for _ in 0..200 {
        let mut b = Backoff::new(policy);
        for _ in 0..40 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} outside [{:?}, {ceiling:?}]", ceiling / 2);
            assert!(d <= policy.max);
        }
    }
}

#[test]
fn reset_returns_to_the_first_delay() {
    let mut b = Backoff::new(BackoffPolicy::default());
    for _ in 0..10 {
        b.next_delay();
    }
    assert_eq!(b.attempts(), 10);
    b.reset();
    assert_eq!(b.attempts(), 0);
    let d = b.next_delay();
    assert!(d <= Duration::from_millis(100) && d >= Duration::from_millis(50));
}

#[test]
fn many_attempts_never_overflow() {
    let max = Duration::from_secs(1 << 30);
    let mut b = Backoff::new(BackoffPolicy { initial: Duration::from_secs(1), max });
    for _ in 0..100 {
        assert!(b.next_delay() <= max);
    }
    assert_eq!(b.ceiling(), Duration::from_secs(1 << 20));
    let d = b.max_delay();
    assert!(d >= max / 2 && d <= max);
    // A ceiling beyond u64 nanoseconds still yields a delay, not a panic.
    assert!(super::jitter(Duration::MAX) > Duration::from_secs(1 << 33));
}

#[test]
fn jitter_of_zero_is_zero() {
    assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
}

#[test]
fn jitter_spreads_draws() {
    let draws: std::collections::HashSet<Duration> =
        (0..50).map(|_| jitter(Duration::from_secs(1))).collect();
    assert!(draws.len() > 40, "jitter looks constant: {} distinct draws", draws.len());
}
