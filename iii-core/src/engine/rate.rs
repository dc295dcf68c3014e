//! Per-session rate limits, with time passed in (the core has no clock).

use crate::Instant;

/// Fractions of a token the bucket counts in (a token is a billion of them, so a rate
/// in tokens per second fills one unit per nanosecond and token).
const UNITS_PER_TOKEN: u128 = 1_000_000_000;

/// A token bucket: it fills at `rate` tokens a second up to `burst` tokens, and each
/// admitted request takes one. A new bucket is full.
#[derive(Debug, Clone, Default)]
pub(super) struct TokenBucket {
    /// Units held when last looked at.
    level: u128,
    /// When it was last looked at (`None`: never, so it is full).
    last: Option<Instant>,
}

impl TokenBucket {
    /// Takes one token at `now` if there is one; false (and nothing taken) when empty.
    pub(super) fn take(&mut self, now: Instant, rate: usize, burst: usize) -> bool {
        let full = (burst as u128).saturating_mul(UNITS_PER_TOKEN);
        let level = match self.last {
            None => full,
            Some(last) => {
                let elapsed = now.saturating_duration_since(last).as_nanos();
                self.level
                    .saturating_add(elapsed.saturating_mul(rate as u128))
                    .min(full)
            }
        };
        self.last = Some(now);
        let admitted = level >= UNITS_PER_TOKEN;
        self.level = if admitted {
            level - UNITS_PER_TOKEN
        } else {
            level
        };
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs one real Instant as its origin
    fn a_bucket_admits_its_burst_then_its_rate() {
        let mut bucket = TokenBucket::default();
        let t0 = Instant::now();
        let burst = (0..100).filter(|_| bucket.take(t0, 10, 5)).count();
        assert_eq!(burst, 5);
        // 10 a second: one token every 100 ms.
        assert!(!bucket.take(t0 + Duration::from_millis(99), 10, 5));
        assert!(bucket.take(t0 + Duration::from_millis(100), 10, 5));
        assert!(!bucket.take(t0 + Duration::from_millis(100), 10, 5));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| bucket.take(later, 10, 5)).count(), 5);
        // Time going backwards takes nothing and adds nothing.
        assert!(!bucket.take(t0, 10, 5));
    }
}
