//! Jittered exponential backoff: the delay of every retry loop in Cohort (the SDK's
//! reconnects and event retries, the services' database and Consul loops).
//!
//! The n-th delay (from 0) is drawn uniformly from `[c/2, c]` where
//! `c = min(max, initial * 2^n)`: the ceiling doubles, and the jitter spreads a fleet of
//! clients that lost the same server so they do not come back in lockstep.

use std::time::Duration;

use rand::Rng;

/// The bounds of a backoff sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// The largest ceiling; delays never exceed it.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    /// About 100 ms doubling up to 30 s.
    fn default() -> Self {
        BackoffPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(30) }
    }
}

/// One backoff sequence: call [`Backoff::next_delay`] after each failure and
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff { policy, attempt: 0 }
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        // 2^20 * 100 ms is already far above any sensible max; stop doubling there.
        let factor = 1u32 << self.attempt.min(20);
        self.policy.initial.saturating_mul(factor).min(self.policy.max)
    }

    /// The next delay, jittered within `[ceiling/2, ceiling]`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        jitter(ceiling)
    }

    /// A delay at the policy's maximum (jittered), for failures that will not heal soon.
    pub fn max_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        jitter(self.policy.max)
    }

    /// Back to the first delay, after a healthy connection or a delivered batch.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were taken since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// A uniform draw from `[ceiling/2, ceiling]`.
pub fn jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos < 2 {
        return ceiling;
    }
    Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos))
}

#[cfg(test)]
mod tests;
