//! `engine::log::{trace,debug,info,warn,error}`: workers log through the engine.
//!
//! Each call becomes an [`EngineEvent::WorkerLog`] that the adapter writes to the
//! engine's log with the worker's name and id. They are infrastructure: every session
//! may call them, whatever its listener's exposure (see
//! [`super::INFRASTRUCTURE_FUNCTIONS`]). What workers can make the engine log is
//! bounded three ways: `worker_log_lines_per_second` lines per worker and second, also
//! `worker_log_lines_per_second_per_ip` for all the workers of one client address
//! (IPv6 by /64, over every listener), and `worker_log_lines_per_second_total` for all
//! workers together; each line is cut to `max_worker_log_bytes`. A line over any bound is
//! dropped and counted: in the worker's next line (`dropped`), in the metrics by bound,
//! and in one [`EngineEvent::WorkerLogSuppressed`] per second while lines are dropped,
//! so nothing is lost without a count. (A guest's lines are built-in calls too, so the
//! built-in call bounds of `super::rate` apply to them first.)

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::rate::{RateBound, RateLimit, RateTable, TokenBucket};
use super::{Engine, EngineEvent, Timer};
use crate::ids::ConnId;
use crate::wire::builtins;
use crate::Instant;

/// How often lines dropped by any bound are summarised (while some are).
pub(super) const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// The severity of a worker's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `engine::log::trace`.
    Trace,
    /// `engine::log::debug`.
    Debug,
    /// `engine::log::info`.
    Info,
    /// `engine::log::warn`.
    Warn,
    /// `engine::log::error`.
    Error,
}

/// The built-in ids and the level each logs at.
pub(super) const LOG_FUNCTIONS: [(&str, LogLevel); 5] = [
    (builtins::LOG_TRACE, LogLevel::Trace),
    (builtins::LOG_DEBUG, LogLevel::Debug),
    (builtins::LOG_INFO, LogLevel::Info),
    (builtins::LOG_WARN, LogLevel::Warn),
    (builtins::LOG_ERROR, LogLevel::Error),
];

/// The level `function_id` logs at, when it is one of the log built-ins.
pub(super) fn log_level(function_id: &str) -> Option<LogLevel> {
    LOG_FUNCTIONS
        .iter()
        .find(|(id, _)| *id == function_id)
        .map(|(_, level)| *level)
}

/// What the published SDKs send (unknown fields are ignored, every field is optional).
#[derive(Debug, Default, Deserialize)]
pub(super) struct LogInput<'a> {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    span_id: Option<String>,
    #[serde(default)]
    service_name: Option<String>,
}

/// One worker's log budget: lines logged in the current one-second window, and lines
/// dropped since the last one logged.
#[derive(Debug, Default, Clone)]
pub(super) struct LogBudget {
    window: Option<Instant>,
    lines: usize,
    dropped: u64,
}

/// The log budgets shared by several workers, and what every bound dropped since the
/// last summary.
#[derive(Debug, Default)]
pub(super) struct SharedLogBudget {
    by_address: RateTable<IpAddr>,
    engine: TokenBucket,
    /// Lines dropped since the last summary, by [`RateBound`].
    suppressed: [u64; 3],
}

/// Longest trace id, span id or service name kept (longer ones are cut).
const MAX_TAG_BYTES: usize = 128;

impl Engine {
    /// Logs `input` for worker `conn` at `level`, within its budget.
    pub(super) fn worker_log(
        &mut self,
        now: Instant,
        conn: ConnId,
        level: LogLevel,
        input: LogInput<'_>,
    ) {
        let limit = self.config.worker_log_lines_per_second;
        let per_address = self.config.worker_log_lines_per_second_per_ip;
        let per_address = RateLimit::new(per_address, per_address);
        let total = self.config.worker_log_lines_per_second_total;
        let total = RateLimit::new(total, total);
        let max_bytes = self.config.max_worker_log_bytes;
        let address = self.peer_key(conn).map(|(_, ip)| ip);
        let shared = &self.shared_log_budget;
        let address_full =
            address.is_some_and(|ip| !shared.by_address.has_token(&ip, now, per_address));
        let engine_full = !shared.engine.has_token(now, total);
        let Some(session) = self.session_mut(conn) else {
            return;
        };
        let budget = &mut session.log_budget;
        let expired = budget
            .window
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if expired {
            budget.window = Some(now);
            budget.lines = 0;
        }
        let refused = if budget.lines >= limit {
            Some(RateBound::Session)
        } else if address_full {
            Some(RateBound::Address)
        } else if engine_full {
            Some(RateBound::Engine)
        } else {
            None
        };
        if let Some(bound) = refused {
            budget.dropped = budget.dropped.saturating_add(1);
            self.log_line_dropped(now, bound);
            return;
        }
        budget.lines += 1;
        let dropped = std::mem::take(&mut budget.dropped);
        let worker_id = session.worker_id.clone();
        let worker_name = session.meta.name.clone().unwrap_or_default();
        let message = clean(input.message.as_deref().unwrap_or(""), max_bytes);
        let room = max_bytes.saturating_sub(message.len());
        let data = input
            .data
            .map(|d| d.get())
            .filter(|d| d.trim() != "null" && room > 0)
            .map(|d| clean(d, room));
        if let Some(ip) = address {
            self.shared_log_budget.by_address.take(ip, now, per_address);
        }
        self.shared_log_budget.engine.take(now, total);
        let tag = |t: Option<String>| t.map(|t| clean(&t, MAX_TAG_BYTES));
        self.emit(EngineEvent::WorkerLog {
            conn,
            worker_id,
            worker_name,
            level,
            message,
            data,
            trace_id: tag(input.trace_id),
            span_id: tag(input.span_id),
            service_name: tag(input.service_name),
            dropped,
        });
    }

    /// Counts a line dropped by `bound` and makes sure a summary is due.
    fn log_line_dropped(&mut self, now: Instant, bound: RateBound) {
        self.metrics.worker_log_lines_suppressed[bound.index()] += 1;
        let suppressed = &mut self.shared_log_budget.suppressed[bound.index()];
        *suppressed = suppressed.saturating_add(1);
        if !self.timers.contains(&Timer::WorkerLogSummary) {
            self.timers
                .set_after(Timer::WorkerLogSummary, now, SUMMARY_INTERVAL);
        }
    }

    /// Reports the lines dropped since the last summary, if any were.
    pub(super) fn summarise_worker_logs(&mut self) {
        let [per_worker, per_address, engine_wide] =
            std::mem::take(&mut self.shared_log_budget.suppressed);
        if per_worker + per_address + engine_wide > 0 {
            self.emit(EngineEvent::WorkerLogSuppressed {
                per_worker,
                per_address,
                engine_wide,
            });
        }
    }

    /// Client addresses whose log budget is held (for tests: it must not grow with
    /// every address ever seen).
    pub fn tracked_log_addresses(&self) -> usize {
        self.shared_log_budget.by_address.len()
    }
}

/// `text` with control and bidi-override characters replaced by spaces (a line cannot
/// forge another), cut to at most `max_bytes` on a character boundary.
fn clean(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes));
    for c in text.chars() {
        let c = if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            ' '
        } else {
            c
        };
        if out.len() + c.len_utf8() > max_bytes {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cleaned_and_cut_on_a_char_boundary() {
        assert_eq!(clean("a\nb\u{202e}c", 100), "a b c");
        assert_eq!(clean("ééé", 5), "éé");
        assert_eq!(clean("abc", 0), "");
    }

    #[test]
    fn only_the_five_levels_are_log_functions() {
        assert_eq!(log_level("engine::log::warn"), Some(LogLevel::Warn));
        assert_eq!(log_level("engine::log::fatal"), None);
        assert_eq!(log_level("engine::logs::list"), None);
    }
}
