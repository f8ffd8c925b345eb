//! Token buckets with an explicit clock.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{MAX_RETRY_HINT, MIN_RETRY_HINT, RateLimiter};

#[test]
fn a_bucket_allows_its_burst_then_refills_at_the_rate() {
    let limiter = RateLimiter::new(1000, 2000);
    let env = Uuid::new_v4();
    let t0 = Instant::now();
    assert!(limiter.try_acquire(env, 1000, t0).is_ok());
    assert!(limiter.try_acquire(env, 1000, t0).is_ok());
    let wait = limiter.try_acquire(env, 500, t0).unwrap_err();
    assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
    assert!(limiter.try_acquire(env, 500, t0 + Duration::from_millis(500)).is_ok());
    // Never more than the burst, however long it was idle.
    let later = t0 + Duration::from_secs(3600);
    assert!(limiter.try_acquire(env, 2000, later).is_ok());
    assert!(limiter.try_acquire(env, 1, later).is_err());
}

#[test]
fn environments_have_separate_buckets_and_zero_means_unlimited() {
    let limiter = RateLimiter::new(10, 1000);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let t0 = Instant::now();
    assert!(limiter.try_acquire(a, 1000, t0).is_ok());
    assert!(limiter.try_acquire(a, 1, t0).is_err());
    assert!(limiter.try_acquire(b, 1000, t0).is_ok());

    let unlimited = RateLimiter::new(0, 0);
    for _ in 0..100 {
        assert!(unlimited.try_acquire(a, 1_000_000, t0).is_ok());
    }
}

#[test]
fn the_retry_hint_covers_the_refill_of_the_refused_batch_with_a_floor_and_a_cap() {
    // Nearly full: the old hint was the deficit alone (a few ms), a retry storm.
    let limiter = RateLimiter::new(200_000, 200_000);
    let env = Uuid::new_v4();
    let t0 = Instant::now();
    assert!(limiter.try_acquire(env, 199_990, t0).is_ok());
    let wait = limiter.try_acquire(env, 1000, t0).unwrap_err();
    assert_eq!(wait, MIN_RETRY_HINT, "floor, above the 5 ms the batch takes to refill");

    // Slow rate: at least the time the whole batch takes to come back (500 / 100 per s).
    let limiter = RateLimiter::new(100, 1000);
    assert!(limiter.try_acquire(env, 600, t0).is_ok());
    let wait = limiter.try_acquire(env, 500, t0).unwrap_err();
    assert!(wait >= Duration::from_secs(5), "{wait:?}");

    // Capped.
    let limiter = RateLimiter::new(1, 1000);
    assert!(limiter.try_acquire(env, 1000, t0).is_ok());
    assert_eq!(limiter.try_acquire(env, 1000, t0).unwrap_err(), MAX_RETRY_HINT);
}
