//! Per-environment rate limits: a token bucket per environment, refilled continuously, charged
//! one token per event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Most environments tracked; idle buckets are forgotten (they would be full anyway) past it.
const MAX_BUCKETS: usize = 100_000;
/// Shortest retry hint: refused clients that all came back after the few milliseconds the
/// exact deficit takes would be refused again together, a retry storm.
pub(crate) const MIN_RETRY_HINT: Duration = Duration::from_millis(100);
/// Longest retry hint, so a tiny rate does not park clients for many minutes.
pub(crate) const MAX_RETRY_HINT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by environment.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Tokens per second; `None` means unlimited.
    rate: Option<f64>,
    burst: f64,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

impl RateLimiter {
    /// `rate` events per second with bursts of `burst`; a rate of 0 turns limiting off.
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: (rate > 0).then_some(f64::from(rate)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` tokens from `environment`'s bucket, or says when to retry (see
    /// [`retry_hint`]).
    pub(crate) fn try_acquire(&self, environment: Uuid, cost: usize, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate else { return Ok(()) };
        let cost = cost as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&environment) {
            let burst = self.burst;
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(environment).or_insert(Bucket { tokens: self.burst, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(self.burst);
        bucket.updated = now.max(bucket.updated);
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(())
        } else {
            Err(retry_hint(cost.min(self.burst), rate))
        }
    }
}

/// When to retry a refused batch of `cost` tokens: the time the bucket takes to refill the
/// whole batch, not just today's deficit, so the clients refused together are spread over the
/// window the capacity they need comes back in; within [`MIN_RETRY_HINT`, `MAX_RETRY_HINT`].
fn retry_hint(cost: f64, rate: f64) -> Duration {
    let refill = Duration::try_from_secs_f64(cost / rate).unwrap_or(MAX_RETRY_HINT);
    refill.clamp(MIN_RETRY_HINT, MAX_RETRY_HINT)
}

#[cfg(test)]
mod tests;
