//! Per-session rate limits, with time passed in (the core has no clock).

use super::{Engine, RefusalReason};
use crate::ids::ConnId;
use crate::wire::ErrorBody;
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

impl Engine {
    /// Takes a token of `conn`'s built-in call bucket, or refuses the call of built-in
    /// `function_id` with `rate_limited`.
    pub(super) fn check_builtin_rate(
        &mut self,
        now: Instant,
        conn: ConnId,
        function_id: &str,
    ) -> Result<(), ErrorBody> {
        let quotas = self.quotas_of(conn);
        let (rate, burst) = (quotas.builtin_calls_per_sec, quotas.builtin_call_burst);
        let Some(session) = self.session_mut(conn) else {
            return Ok(());
        };
        if session.builtin_calls.take(now, rate, burst) {
            return Ok(());
        }
        let reason = RefusalReason::RateLimited;
        self.refused(conn, "invokefunction", Some(function_id.to_owned()), reason);
        Err(ErrorBody::new(
            reason.code(),
            format!(
                "this worker calls the engine's functions faster than {rate} a second \
                 (quota builtin_calls_per_sec, burst builtin_call_burst {burst})"
            ),
        ))
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
