//! Token buckets keyed by string, for login attempts per user and per peer.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// A rate: `burst` attempts at once, refilled one per `period / burst`.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Attempts allowed in a burst.
    pub burst: u32,
    /// Time to refill the whole burst.
    pub period: Duration,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by string.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// Returns a limiter with one bucket per key.
    pub fn new(rate: Rate) -> Self {
        Self { rate, buckets: Mutex::new(HashMap::new()) }
    }

    fn per_second(&self) -> f64 {
        f64::from(self.rate.burst) / self.rate.period.as_secs_f64().max(1e-9)
    }

    /// Takes one token for `key`; `Err(wait)` tells how long until one is available.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let burst = f64::from(self.rate.burst);
        let per_second = self.per_second();
        let mut buckets = self.buckets.lock().expect("limiter lock poisoned");
        if buckets.len() > 100_000 {
            // Forget buckets that have refilled completely, so the map cannot grow without end
            // under a spray of made-up user names.
            buckets.retain(|_, b| (now - b.updated).as_secs_f64() * per_second < burst);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: burst, updated: now });
        bucket.tokens = (bucket.tokens + (now - bucket.updated).as_secs_f64() * per_second).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_refills_over_time() {
        let limiter = Limiter::new(Rate { burst: 3, period: Duration::from_secs(30) });
        for _ in 0..3 {
            assert!(limiter.check("ada").is_ok());
        }
        let wait = limiter.check("ada").unwrap_err();
        assert!(wait > Duration::from_secs(9) && wait <= Duration::from_secs(10), "{wait:?}");
        // Other keys are unaffected.
        assert!(limiter.check("bob").is_ok());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(limiter.check("ada").is_ok());
        assert!(limiter.check("ada").is_err());
    }
}
