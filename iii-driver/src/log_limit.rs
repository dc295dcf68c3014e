//! Rate limiting for logs a peer can provoke at will (refused upgrades, accept errors,
//! refused requests), so that a flood of bad requests cannot flood the log too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows `per_window` log lines per `window`; counts the rest.
#[derive(Debug)]
pub(crate) struct LogLimit {
    per_window: u32,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    /// A limit of `per_window` lines per `window`.
    pub(crate) const fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window,
            window,
            state: Mutex::new(Window {
                started: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were suppressed since
    /// the last one that was; `None` when this one must be suppressed.
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        let Ok(mut state) = self.state.lock() else {
            return Some(0);
        };
        let expired = state
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= self.window);
        if expired {
            state.started = Some(now);
            state.logged = 0;
        }
        if state.logged >= self.per_window {
            state.suppressed += 1;
            return None;
        }
        state.logged += 1;
        Some(std::mem::take(&mut state.suppressed))
    }
}

/// What a log line is about: its kind and, where the kind has several, which one
/// (`("quota_exceeded", "functions")`). Always static text, so a peer cannot grow the
/// table.
pub(crate) type Reason = (&'static str, &'static str);

/// Allows `per_window` log lines per `window` for each reason separately, and counts
/// the rest per reason for a summary line once the window has passed.
#[derive(Debug)]
pub(crate) struct ReasonLimit {
    per_window: u32,
    window: Duration,
    started: Option<Instant>,
    /// Lines logged and suppressed in the current window, by reason.
    counts: BTreeMap<Reason, (u32, u64)>,
}

impl ReasonLimit {
    /// A limit of `per_window` lines per `window` and reason.
    pub(crate) fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window,
            window,
            started: None,
            counts: BTreeMap::new(),
        }
    }

    /// When the current window ends, if it has suppressed anything (its summary is
    /// then due).
    pub(crate) fn due(&self) -> Option<Instant> {
        let suppressed = self.counts.values().any(|(_, suppressed)| *suppressed > 0);
        self.started
            .filter(|_| suppressed)
            .map(|started| started + self.window)
    }

    /// Ends the current window if it has passed. Returns the summary of what it
    /// suppressed (`quota_exceeded/functions=99980, reserved_id=12`), if anything was.
    pub(crate) fn roll(&mut self, now: Instant) -> Option<String> {
        let started = self.started?;
        if now.saturating_duration_since(started) < self.window {
            return None;
        }
        self.started = None;
        let mut summary = String::new();
        for ((kind, detail), (_, suppressed)) in std::mem::take(&mut self.counts) {
            if suppressed == 0 {
                continue;
            }
            if !summary.is_empty() {
                summary.push_str(", ");
            }
            let _ = match detail {
                "" => write!(summary, "{kind}={suppressed}"),
                detail => write!(summary, "{kind}/{detail}={suppressed}"),
            };
        }
        (!summary.is_empty()).then_some(summary)
    }

    /// True when a line for `reason` may be logged now; false when it must be
    /// suppressed (it is then counted for the summary). Call [`ReasonLimit::roll`]
    /// first so a passed window is summarised before a new one starts.
    pub(crate) fn admit(&mut self, reason: Reason, now: Instant) -> bool {
        if self.started.is_none() {
            self.started = Some(now);
        }
        let (logged, suppressed) = self.counts.entry(reason).or_default();
        if *logged >= self.per_window {
            *suppressed += 1;
            return false;
        }
        *logged += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_a_few_per_window_and_counts_the_rest() {
        let limit = LogLimit::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(limit.admit(t0), Some(0));
        assert_eq!(limit.admit(t0), Some(0));
        assert_eq!(limit.admit(t0), None);
        assert_eq!(limit.admit(t0), None);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(limit.admit(t1), Some(2));
        assert_eq!(limit.admit(t1), Some(0));
    }

    #[test]
    fn each_reason_has_its_own_allowance_and_the_rest_is_summarised_once_per_window() {
        let mut limit = ReasonLimit::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        let quota = ("quota_exceeded", "functions");
        let reserved = ("reserved_id", "");
        assert_eq!(limit.roll(t0), None);
        assert_eq!(limit.due(), None);
        let admitted = (0..100_000).filter(|_| limit.admit(quota, t0)).count();
        assert_eq!(admitted, 2);
        assert_eq!(limit.due(), Some(t0 + Duration::from_secs(1)));
        // Another reason is not starved by the flood of the first.
        assert!(limit.admit(reserved, t0));
        assert!(limit.admit(reserved, t0));
        assert!(!limit.admit(reserved, t0));
        // Nothing is summarised before the window has passed.
        assert_eq!(limit.roll(t0 + Duration::from_millis(999)), None);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            limit.roll(t1).as_deref(),
            Some("quota_exceeded/functions=99998, reserved_id=1")
        );
        // A new window: the allowance is back, and a quiet window summarises nothing.
        assert!(limit.admit(quota, t1));
        assert_eq!(limit.due(), None, "nothing suppressed yet");
        assert_eq!(limit.roll(t1 + Duration::from_secs(1)), None);
        assert_eq!(limit.roll(t1 + Duration::from_secs(5)), None);
    }
}
