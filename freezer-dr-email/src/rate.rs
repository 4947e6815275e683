//! How fast mails go out: a token bucket over the users' copies.

use tokio::time::Instant;

/// A token bucket: `capacity` mails at once, refilled at `capacity` per minute.
pub(crate) struct Bucket {
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Self {
            capacity,
            tokens: capacity,
            at: Instant::now(),
        }
    }

    /// True if one more mail may go now (and counts it).
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.capacity / 60.0;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_bucket_refills_at_its_rate() {
        let mut b = Bucket::new(60);
        for _ in 0..60 {
            assert!(b.take());
        }
        assert!(!b.take(), "a full minute's budget is spent");
        tokio::time::advance(std::time::Duration::from_millis(1100)).await;
        assert!(b.take(), "one mail per second comes back");
        assert!(!b.take());
        tokio::time::advance(std::time::Duration::from_secs(3600)).await;
        for _ in 0..60 {
            assert!(b.take());
        }
        assert!(!b.take(), "never more than the budget at once");
    }
}
