//! Rate limits, with time passed in (the core has no clock): token buckets per session,
//! per client address and engine-wide.
//!
//! A call of one of the engine's own functions is admitted only when every bucket that
//! applies has a token: its session's (`builtin_calls_per_sec`), its client address's on
//! its listener (`builtin_calls_per_ip`, listeners that set one) and, for a guest (a
//! session of an RBAC listener), the one all guests share (`guest_builtin_calls`). Tokens
//! are taken only when all of them admit it, so a refusal by one bound costs the others
//! nothing.

use std::collections::BTreeMap;

use super::peers::PeerKey;
use super::{Engine, RefusalReason};
use crate::ids::ConnId;
use crate::wire::ErrorBody;
use crate::Instant;

/// Fractions of a token the bucket counts in (a token is a billion of them, so a rate
/// in tokens per second fills one unit per nanosecond and token).
const UNITS_PER_TOKEN: u128 = 1_000_000_000;

/// A sustained rate after a burst: a token bucket of `burst` tokens refilled at
/// `per_second` tokens a second. Both must be positive (checked by
/// [`super::EngineConfig::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added a second.
    pub per_second: usize,
    /// Tokens the bucket holds when full (what may be spent at once).
    pub burst: usize,
}

impl RateLimit {
    /// `per_second` a second after a burst of `burst`.
    pub const fn new(per_second: usize, burst: usize) -> Self {
        Self { per_second, burst }
    }
}

/// The bound that refused a built-in call or dropped a worker's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RateBound {
    /// The session's own (`builtin_calls_per_sec`, `worker_log_lines_per_second`).
    Session,
    /// The client address's (`builtin_calls_per_ip` of the listener,
    /// `worker_log_lines_per_second_per_ip`).
    Address,
    /// The engine-wide one (`guest_builtin_calls`, `worker_log_lines_per_second_total`).
    Engine,
}

impl RateBound {
    /// Every bound, in the order of the metrics' arrays.
    pub const ALL: [RateBound; 3] = [RateBound::Session, RateBound::Address, RateBound::Engine];

    /// The label value (`session`, `address`, `engine`).
    pub fn label(self) -> &'static str {
        match self {
            RateBound::Session => "session",
            RateBound::Address => "address",
            RateBound::Engine => "engine",
        }
    }

    /// Its index in [`RateBound::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A token bucket: it fills at `limit.per_second` tokens a second up to `limit.burst`
/// tokens, and each admitted request takes one. A new bucket is full.
#[derive(Debug, Clone, Default)]
pub(super) struct TokenBucket {
    /// Units held when last looked at.
    level: u128,
    /// When it was last looked at (`None`: never, so it is full).
    last: Option<Instant>,
}

impl TokenBucket {
    /// The units it holds at `now` (time going backwards adds nothing).
    fn level_at(&self, now: Instant, limit: RateLimit) -> u128 {
        let full = (limit.burst as u128).saturating_mul(UNITS_PER_TOKEN);
        match self.last {
            None => full,
            Some(last) => {
                let elapsed = now.saturating_duration_since(last).as_nanos();
                self.level
                    .saturating_add(elapsed.saturating_mul(limit.per_second as u128))
                    .min(full)
            }
        }
    }

    /// True when a token could be taken at `now` (nothing is taken).
    pub(super) fn has_token(&self, now: Instant, limit: RateLimit) -> bool {
        self.level_at(now, limit) >= UNITS_PER_TOKEN
    }

    /// True when it is full at `now` (the same as a new bucket).
    fn is_full(&self, now: Instant, limit: RateLimit) -> bool {
        self.level_at(now, limit) >= (limit.burst as u128).saturating_mul(UNITS_PER_TOKEN)
    }

    /// Takes one token at `now` if there is one; false (and nothing taken) when empty.
    pub(super) fn take(&mut self, now: Instant, limit: RateLimit) -> bool {
        let level = self.level_at(now, limit);
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

/// Fewest entries a [`RateTable`] holds before it looks for full buckets to forget.
const PRUNE_FLOOR: usize = 1024;

/// Token buckets by key (a client address), each with its limit. A full bucket is the
/// same as none, so full buckets are forgotten: the table holds only keys that spent
/// tokens lately (within `burst / per_second` seconds), and it looks for full ones
/// whenever it has doubled since it last looked (amortised O(log n) per take). A key
/// that reconnects finds its bucket as it left it: reconnecting refills nothing.
#[derive(Debug)]
pub(super) struct RateTable<K> {
    buckets: BTreeMap<K, (TokenBucket, RateLimit)>,
    prune_at: usize,
}

impl<K> Default for RateTable<K> {
    fn default() -> Self {
        Self {
            buckets: BTreeMap::new(),
            prune_at: PRUNE_FLOOR,
        }
    }
}

impl<K: Ord> RateTable<K> {
    /// True when `key`'s bucket has a token at `now` (nothing is taken).
    pub(super) fn has_token(&self, key: &K, now: Instant, limit: RateLimit) -> bool {
        self.buckets
            .get(key)
            .is_none_or(|(bucket, _)| bucket.has_token(now, limit))
    }

    /// Takes a token of `key`'s bucket at `now`; false (nothing taken) when it is empty.
    pub(super) fn take(&mut self, key: K, now: Instant, limit: RateLimit) -> bool {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.prune_at {
            self.buckets
                .retain(|_, (bucket, limit)| !bucket.is_full(now, *limit));
            self.prune_at = self.buckets.len().saturating_mul(2).max(PRUNE_FLOOR);
        }
        let (bucket, kept) = self
            .buckets
            .entry(key)
            .or_insert_with(|| (TokenBucket::default(), limit));
        *kept = limit;
        bucket.take(now, limit)
    }

    /// Keys held (for tests: the table must not grow with every address ever seen).
    pub(super) fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// The buckets of every session's built-in calls beyond its own: per client address and
/// listener, and the one all guests share.
#[derive(Debug, Default)]
pub(super) struct BuiltinRates {
    by_address: RateTable<PeerKey>,
    guests: TokenBucket,
}

impl Engine {
    /// Takes a token of every bucket that applies to a built-in call of `conn`, or
    /// refuses the call of built-in `function_id` with `rate_limited`, naming the bound
    /// (and taking no token of any bucket).
    pub(super) fn check_builtin_rate(
        &mut self,
        now: Instant,
        conn: ConnId,
        function_id: &str,
    ) -> Result<(), ErrorBody> {
        let quotas = self.quotas_of(conn);
        let session_limit = RateLimit::new(quotas.builtin_calls_per_sec, quotas.builtin_call_burst);
        let guest_limit = self.config.guest_builtin_calls;
        let peer = self.peer_key(conn);
        let Some(session) = self.session(conn) else {
            return Ok(());
        };
        let guest = session.policy.is_some();
        let address_limit = self
            .listener_policy(session.listener)
            .and_then(|p| p.builtin_calls_per_ip);
        let address = peer.zip(address_limit);
        let refused = if !session.builtin_calls.has_token(now, session_limit) {
            Some(RateBound::Session)
        } else if address
            .is_some_and(|(key, limit)| !self.builtin_rates.by_address.has_token(&key, now, limit))
        {
            Some(RateBound::Address)
        } else if guest && !self.builtin_rates.guests.has_token(now, guest_limit) {
            Some(RateBound::Engine)
        } else {
            None
        };
        let Some(bound) = refused else {
            if let Some(session) = self.session_mut(conn) {
                session.builtin_calls.take(now, session_limit);
            }
            if let Some((key, limit)) = address {
                self.builtin_rates.by_address.take(key, now, limit);
            }
            if guest {
                self.builtin_rates.guests.take(now, guest_limit);
            }
            return Ok(());
        };
        self.metrics.builtin_calls_rate_limited[bound.index()] += 1;
        let reason = RefusalReason::RateLimited;
        self.refused(conn, "invokefunction", Some(function_id.to_owned()), reason);
        let message = match bound {
            RateBound::Session => format!(
                "this worker calls the engine's functions faster than {} a second \
                 (quota builtin_calls_per_sec, burst builtin_call_burst {})",
                session_limit.per_second, session_limit.burst
            ),
            RateBound::Address => {
                let limit = address.map_or(session_limit, |(_, limit)| limit);
                format!(
                    "the workers of this client address call the engine's functions faster \
                     than {} a second (listener's builtin_calls_per_sec_per_ip, burst \
                     builtin_call_burst_per_ip {})",
                    limit.per_second, limit.burst
                )
            }
            RateBound::Engine => format!(
                "untrusted workers together call the engine's functions faster than {} a \
                 second (guest_builtin_calls_per_sec, burst guest_builtin_call_burst {})",
                guest_limit.per_second, guest_limit.burst
            ),
        };
        Err(ErrorBody::new(reason.code(), message))
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
        let limit = RateLimit::new(10, 5);
        let t0 = Instant::now();
        assert!(bucket.is_full(t0, limit));
        let burst = (0..100).filter(|_| bucket.take(t0, limit)).count();
        assert_eq!(burst, 5);
        assert!(!bucket.has_token(t0, limit));
        // 10 a second: one token every 100 ms.
        assert!(!bucket.take(t0 + Duration::from_millis(99), limit));
        assert!(bucket.has_token(t0 + Duration::from_millis(100), limit));
        assert!(bucket.take(t0 + Duration::from_millis(100), limit));
        assert!(!bucket.take(t0 + Duration::from_millis(100), limit));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(3600);
        assert!(bucket.is_full(later, limit));
        assert_eq!((0..100).filter(|_| bucket.take(later, limit)).count(), 5);
        // Time going backwards takes nothing and adds nothing.
        assert!(!bucket.take(t0, limit));
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs one real Instant as its origin
    fn a_table_keeps_each_keys_bucket_across_takes_and_forgets_only_full_ones() {
        let mut table = RateTable::<u32>::default();
        let limit = RateLimit::new(1, 3);
        let t0 = Instant::now();
        // One key's budget is its own, whoever spends it.
        assert_eq!((0..10).filter(|_| table.take(7, t0, limit)).count(), 3);
        assert!(!table.has_token(&7, t0, limit));
        assert!(table.has_token(&8, t0, limit), "another key is untouched");
        assert!(table.take(8, t0, limit));
        // Many keys that spend once: the table looks for full buckets as it grows, and
        // keeps key 7, still empty half a second later.
        let later = t0 + Duration::from_millis(500);
        for key in 100..100 + 2 * PRUNE_FLOOR as u32 {
            table.take(key, later, limit);
        }
        assert!(!table.has_token(&7, later, limit), "key 7 is still empty");
        // Ten seconds on, every earlier bucket has refilled and is forgotten.
        let much_later = t0 + Duration::from_secs(10);
        for key in 10_000..10_000 + 8 * PRUNE_FLOOR as u32 {
            table.take(key, much_later, limit);
        }
        assert!(
            table.len() <= 8 * PRUNE_FLOOR,
            "{} keys held: full buckets are forgotten",
            table.len()
        );
        assert!(table.has_token(&7, much_later, limit), "refilled with time");
    }
}
