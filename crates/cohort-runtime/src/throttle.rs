//! Per-key rate limits, and failed authentications that slow down instead of being answered
//! at full speed. Both count in this process (each replica keeps its own counts), with
//! governor's keyed GCRA limiters: one timestamp per key, no background task.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use prometheus_client::metrics::counter::Counter;

use crate::ApiError;

/// Past this many tracked keys, idle ones are dropped (checked every [`PRUNE_EVERY`] calls).
const MAX_TRACKED: usize = 100_000;
const PRUNE_EVERY: u64 = 4096;

/// A keyed limiter whose memory stays bounded.
struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    calls: AtomicU64,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(quota: Quota) -> Self {
        Keyed { limiter: DefaultKeyedRateLimiter::keyed(quota), calls: AtomicU64::new(0) }
    }

    /// `Err(wait)` when `key` is over its quota.
    fn check(&self, key: &K) -> Result<(), Duration> {
        if self.calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(PRUNE_EVERY)
            && self.limiter.len() > MAX_TRACKED
        {
            // Keys whose buckets are full again hold no information.
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// Requests per second per API key, with a burst. Keys are told apart by a hash of the
/// secret seeded at random per process, so nobody can aim a key at another's allowance.
pub struct KeyRateLimit {
    keys: Keyed<u64>,
    hasher: foldhash::quality::RandomState,
}

impl std::fmt::Debug for KeyRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRateLimit")
    }
}

impl KeyRateLimit {
    /// `per_second` requests per second per key, bursts of up to `burst`; `None` for 0 (no
    /// limit).
    pub fn new(per_second: u32, burst: u32) -> Option<KeyRateLimit> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Some(KeyRateLimit {
            keys: Keyed::new(Quota::per_second(rate).allow_burst(burst)),
            hasher: foldhash::quality::RandomState::default(),
        })
    }

    /// RESOURCE_EXHAUSTED (HTTP 429) with a retry hint when the key is over its rate.
    pub fn check(&self, secret: &str) -> Result<(), ApiError> {
        use std::hash::BuildHasher;
        self.keys.check(&self.hasher.hash_one(secret)).map_err(|wait| ApiError::ResourceExhausted {
            message: "this key is over its request rate; retry after the hint".into(),
            // Whole milliseconds, at least one: clients sleep on it.
            retry_after: Some(wait.max(Duration::from_millis(1))),
        })
    }
}

/// Failed authentications per source address: within the allowance they are answered at
/// once; beyond it each one waits until the allowance refills (at most [`MAX_DELAY`]), so
/// guessing keys from one address goes at the allowance's pace.
pub struct FailedAuth {
    failures: Keyed<IpAddr>,
    slowed: Counter,
}

impl std::fmt::Debug for FailedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailedAuth").field("slowed", &self.slowed()).finish()
    }
}

/// The longest one failed authentication is held.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

impl FailedAuth {
    /// `per_minute` failures per address per minute pass at full speed (bursts of that many).
    pub fn new(per_minute: u32) -> FailedAuth {
        let rate = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        FailedAuth { failures: Keyed::new(Quota::per_minute(rate)), slowed: Counter::default() }
    }

    /// Call when a request from `from` failed to authenticate, before answering it.
    pub async fn failed(&self, from: Option<IpAddr>) {
        let Some(ip) = from else { return };
        if let Err(wait) = self.failures.check(&ip) {
            self.slowed.inc();
            tokio::time::sleep(wait.min(MAX_DELAY)).await;
        }
    }

    /// Failed authentications held so far.
    pub fn slowed(&self) -> u64 {
        self.slowed.get()
    }

    /// The count of [`FailedAuth::slowed`], to register as a metric.
    pub fn slowed_counter(&self) -> Counter {
        self.slowed.clone()
    }
}

impl Default for FailedAuth {
    /// 30 failures a minute per address: far above any honest misconfiguration's retry rate.
    fn default() -> Self {
        FailedAuth::new(30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_rate_gets_a_retry_hint_and_others_are_unaffected() {
        let limit = KeyRateLimit::new(5, 5).expect("a limit");
        let (a, b) = ("cohort_sdk_a", "cohort_sdk_b");
        for _ in 0..5 {
            limit.check(a).expect("within the burst");
        }
        match limit.check(a) {
            Err(ApiError::ResourceExhausted { retry_after: Some(after), .. }) => {
                assert!(after > Duration::ZERO && after <= Duration::from_millis(200), "{after:?}");
            }
            other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
        }
        limit.check(b).expect("another key has its own allowance");
        assert!(KeyRateLimit::new(0, 10).is_none(), "0 is no limit");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_beyond_the_allowance_are_held() {
        let auth = FailedAuth::new(3);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            auth.failed(Some(ip)).await;
        }
        assert_eq!(auth.slowed(), 0, "within the allowance: at once");
        let started = tokio::time::Instant::now();
        auth.failed(Some(ip)).await;
        assert_eq!(auth.slowed(), 1);
        assert!(started.elapsed() >= Duration::from_secs(1), "held: {:?}", started.elapsed());
        assert!(started.elapsed() <= MAX_DELAY);
        auth.failed(Some("203.0.113.8".parse().unwrap())).await;
        auth.failed(None).await;
        assert_eq!(auth.slowed(), 1, "other addresses, and unknown ones, are not held");
    }
}
