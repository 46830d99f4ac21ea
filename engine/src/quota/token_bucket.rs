//! A token bucket for bandwidth and request-rate quotas.
//!
//! The bucket refills at `rate_per_sec` tokens (bytes, or REST requests) per second up to a
//! capacity of one second's worth of tokens: the burst a tenant may use at once after being
//! idle for a second. Token counts are kept in units of 1e-9 token so that refill over any number of
//! nanoseconds is exact integer arithmetic.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: u64,
    /// Tokens available, in 1e-9 token units. Never above the capacity.
    tokens_nano: u128,
    last_refill: Duration,
}

impl TokenBucket {
    /// Creates a full bucket.
    pub fn new(rate_per_sec: u64, now: Duration) -> Self {
        let rate_per_sec = rate_per_sec.max(1);
        TokenBucket {
            rate_per_sec,
            tokens_nano: rate_per_sec as u128 * NANOS_PER_SEC,
            last_refill: now,
        }
    }

    pub fn rate_per_sec(&self) -> u64 {
        self.rate_per_sec
    }

    /// Burst size in tokens: one second of the rate.
    pub fn capacity(&self) -> u64 {
        self.rate_per_sec
    }

    /// Changes the rate; tokens already in the bucket are kept up to the new capacity.
    pub fn set_rate(&mut self, rate_per_sec: u64, now: Duration) {
        self.refill(now);
        self.rate_per_sec = rate_per_sec.max(1);
        self.tokens_nano = self.tokens_nano.min(self.capacity_nano());
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Duration) -> u64 {
        self.refill(now);
        (self.tokens_nano / NANOS_PER_SEC) as u64
    }

    /// Takes `amount` tokens, or returns how long to wait until they are available. An
    /// amount larger than the capacity is granted from a full bucket, so a frame bigger than
    /// one second of bandwidth is delayed, never rejected. The bucket then stays empty until
    /// the excess is paid back by refill.
    pub fn try_take(&mut self, amount: u64, now: Duration) -> Result<(), Duration> {
        self.refill(now);
        let wanted = amount as u128 * NANOS_PER_SEC;
        let capacity = self.capacity_nano();

        if wanted <= self.tokens_nano {
            self.tokens_nano -= wanted;
            return Ok(());
        }
        if wanted > capacity && self.tokens_nano == capacity {
            // Pay the excess back by pushing the refill start into the future.
            let excess = wanted - capacity;
            self.tokens_nano = 0;
            self.last_refill += Duration::from_nanos((excess / self.rate_per_sec as u128) as u64);
            return Ok(());
        }

        let missing = wanted.min(capacity) - self.tokens_nano;
        let wait_nanos = missing.div_ceil(self.rate_per_sec as u128);
        Err(Duration::from_nanos(wait_nanos as u64))
    }

    fn capacity_nano(&self) -> u128 {
        self.rate_per_sec as u128 * NANOS_PER_SEC
    }

    fn refill(&mut self, now: Duration) {
        if now <= self.last_refill {
            return;
        }
        let elapsed = (now - self.last_refill).as_nanos();
        self.tokens_nano = (self.tokens_nano + elapsed * self.rate_per_sec as u128).min(self.capacity_nano());
        self.last_refill = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn full_bucket_admits_one_second() {
        let mut bucket = TokenBucket::new(1000, Duration::ZERO);
        assert_eq!(bucket.try_take(1000, Duration::ZERO), Ok(()));
        assert_eq!(bucket.try_take(1, Duration::ZERO), Err(MS));
    }

    #[test]
    fn refill_is_exact() {
        let mut bucket = TokenBucket::new(1000, Duration::ZERO);
        bucket.try_take(1000, Duration::ZERO).unwrap();

        assert_eq!(bucket.available(250 * MS), 250);
        assert_eq!(bucket.try_take(250, 250 * MS), Ok(()));
        assert_eq!(bucket.try_take(100, 250 * MS), Err(100 * MS));
        assert_eq!(bucket.try_take(100, 350 * MS), Ok(()));
    }

    #[test]
    fn never_exceeds_capacity() {
        let mut bucket = TokenBucket::new(500, Duration::ZERO);
        assert_eq!(bucket.available(Duration::from_secs(60)), 500);
    }

    #[test]
    fn oversized_take_waits_for_full_bucket_then_owes() {
        let mut bucket = TokenBucket::new(1000, Duration::ZERO);
        bucket.try_take(1, Duration::ZERO).unwrap();
        // 2000 tokens is twice the capacity: wait until full (1 ms), then take and owe 1 s.
        assert_eq!(bucket.try_take(2000, Duration::ZERO), Err(MS));
        assert_eq!(bucket.try_take(2000, MS), Ok(()));
        assert_eq!(bucket.available(MS + Duration::from_secs(1)), 0);
        assert_eq!(bucket.available(MS + Duration::from_secs(1) + 10 * MS), 10);
    }

    #[test]
    fn admitted_rate_matches_quota() {
        // Ask for 100 bytes every millisecond (100 KB/s) against a 10 KB/s bucket for 10 s.
        let mut bucket = TokenBucket::new(10_000, Duration::ZERO);
        let mut admitted = 0;
        for ms in 0..10_000u32 {
            if bucket.try_take(100, ms * MS).is_ok() {
                admitted += 100;
            }
        }
        // The burst (10,000) plus the refill until the last attempt at 9.999 s (99,990) is
        // 109,990 bytes, of which whole 100-byte frames make 109,900.
        assert_eq!(admitted, 109_900);
    }

    #[test]
    fn lower_rate_caps_tokens() {
        let mut bucket = TokenBucket::new(1000, Duration::ZERO);
        bucket.set_rate(100, Duration::ZERO);
        assert_eq!(bucket.available(Duration::ZERO), 100);
        assert_eq!(bucket.try_take(50, Duration::ZERO), Ok(()));
        assert_eq!(bucket.try_take(60, Duration::ZERO), Err(100 * MS));
    }
}
