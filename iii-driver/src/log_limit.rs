//! Rate limiting for logs a peer can provoke at will (refused upgrades, accept errors),
//! so that a flood of bad requests cannot flood the log too.

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
}
