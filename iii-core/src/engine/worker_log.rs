//! `engine::log::{trace,debug,info,warn,error}`: workers log through the engine.
//!
//! Each call becomes an [`EngineEvent::WorkerLog`] that the adapter writes to the
//! engine's log with the worker's name and id. They are infrastructure: every session
//! may call them, whatever its listener's exposure (see
//! [`super::INFRASTRUCTURE_FUNCTIONS`]). What one worker can make the engine log is
//! bounded: at most `worker_log_lines_per_second` lines per worker and second (the
//! lines beyond are dropped and counted in the next line that is logged), each cut to
//! `max_worker_log_bytes`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Engine, EngineEvent};
use crate::ids::ConnId;
use crate::wire::builtins;
use crate::Instant;

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
        let max_bytes = self.config.max_worker_log_bytes;
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
        if budget.lines >= limit {
            budget.dropped = budget.dropped.saturating_add(1);
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
