//! A table of deadlines keyed by what they are for.

use crate::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Deadlines for keys `K`; each key has at most one deadline.
#[derive(Debug)]
pub struct TimerTable<K: Ord + Clone> {
    by_time: BTreeSet<(Instant, K)>,
    by_key: BTreeMap<K, Instant>,
}

impl<K: Ord + Clone> Default for TimerTable<K> {
    fn default() -> Self {
        Self {
            by_time: BTreeSet::new(),
            by_key: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> TimerTable<K> {
    /// Sets (or moves) the deadline of `key`.
    pub fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }

    /// Sets (or moves) the deadline of `key` to `delay` after `now`. A deadline past the
    /// end of the clock's range means "never": the key's deadline is removed instead of
    /// overflowing.
    pub fn set_after(&mut self, key: K, now: Instant, delay: Duration) {
        match now.checked_add(delay) {
            Some(at) => self.set(key, at),
            None => self.cancel(&key),
        }
    }

    /// The deadline of `key`, if it has one.
    pub fn deadline(&self, key: &K) -> Option<Instant> {
        self.by_key.get(key).copied()
    }

    /// Removes the deadline of `key`, if any.
    pub fn cancel(&mut self, key: &K) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_time.remove(&(old, key.clone()));
        }
    }

    /// True when `key` has a deadline.
    pub fn contains(&self, key: &K) -> bool {
        self.by_key.contains_key(key)
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest key whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (at, _) = self.by_time.first()?;
        if *at > now {
            return None;
        }
        let (_, key) = self.by_time.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// Number of pending deadlines.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs one real Instant as its origin
    fn pops_in_time_order_and_moves() {
        let t0 = Instant::now();
        let mut timers = TimerTable::default();
        timers.set("b", t0 + Duration::from_secs(2));
        timers.set("a", t0 + Duration::from_secs(3));
        timers.set("a", t0 + Duration::from_secs(1));
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(5)), Some("a"));
        timers.cancel(&"b");
        assert!(timers.is_empty());
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs one real Instant as its origin
    fn a_deadline_past_the_clock_is_never() {
        let t0 = Instant::now();
        let mut timers = TimerTable::default();
        timers.set_after("x", t0, Duration::from_secs(1));
        assert_eq!(timers.deadline(&"x"), Some(t0 + Duration::from_secs(1)));
        timers.set_after("x", t0, Duration::MAX);
        assert!(timers.is_empty());
    }
}
