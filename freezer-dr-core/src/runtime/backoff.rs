//! The one backoff schedule of the runtime: driver-call retries and outbox deliveries both wait by it.

use std::time::Duration;

/// Exponential backoff with jitter: `first`, doubled for every attempt after the first, capped at
/// `cap`, then multiplied by a random factor in `1 ± jitter`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Backoff {
    /// The wait after the first attempt (before jitter).
    pub(super) first: Duration,
    /// The longest wait (before jitter).
    pub(super) cap: Duration,
    /// How far a wait may stray from the schedule, as a fraction of it.
    pub(super) jitter: f64,
}

impl Backoff {
    /// Driver calls: from the configured first wait, ±50%, capped at one minute.
    pub(super) fn call(first: Duration) -> Self {
        Self {
            first,
            cap: Duration::from_secs(60),
            jitter: 0.5,
        }
    }

    /// Report deliveries: from 5 s, ±25%, capped at 15 min.
    pub(super) const DELIVERY: Self = Self {
        first: Duration::from_secs(5),
        cap: Duration::from_secs(900),
        jitter: 0.25,
    };

    /// The wait after failed attempt number `attempt` (1 for the first).
    pub(super) fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .first
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)));
        let spread = 1.0 - self.jitter + 2.0 * self.jitter * fastrand::f64();
        exp.min(self.cap).mul_f64(spread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `b` waits `base × (1 ± jitter)` after each `(attempt, base in seconds)`, drawing
    /// often enough to come near both ends.
    fn pins(b: Backoff, jitter: f64, schedule: &[(u32, f64)]) {
        for &(attempt, base) in schedule {
            let draws: Vec<f64> = (0..2000).map(|_| b.delay(attempt).as_secs_f64()).collect();
            let min = draws.iter().copied().fold(f64::MAX, f64::min);
            let max = draws.iter().copied().fold(0.0, f64::max);
            let (lo, hi) = (base * (1.0 - jitter), base * (1.0 + jitter));
            let near = base * jitter / 5.0;
            assert!(lo <= min && min < lo + near, "attempt {attempt}: min {min}");
            assert!(hi - near < max && max < hi, "attempt {attempt}: max {max}");
        }
    }

    #[test]
    fn call_retries_double_from_the_first_wait_with_fifty_percent_jitter_up_to_a_minute() {
        let schedule = [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (6, 32.0),
            (7, 60.0),
            (40, 60.0),
        ];
        pins(Backoff::call(Duration::from_secs(1)), 0.5, &schedule);
    }

    #[test]
    fn deliveries_double_from_five_seconds_with_twenty_five_percent_jitter_up_to_fifteen_minutes() {
        let schedule = [
            (1, 5.0),
            (2, 10.0),
            (5, 80.0),
            (8, 640.0),
            (9, 900.0),
            (99, 900.0),
        ];
        pins(Backoff::DELIVERY, 0.25, &schedule);
    }

    #[test]
    fn attempt_zero_waits_like_the_first_and_huge_bases_saturate() {
        let b = Backoff::call(Duration::from_millis(100));
        assert!(b.delay(0) < Duration::from_millis(150));
        let huge = Backoff::call(Duration::MAX);
        assert!(huge.delay(u32::MAX) < Duration::from_secs(90));
    }
}
