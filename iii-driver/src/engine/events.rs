//! The engine's log of what peers made happen. A peer can provoke these lines at will
//! (a refused registration, a failed admission, a call it never answers, a connect and
//! disconnect), so every one at info or above is rate-limited per reason
//! ([`EngineSettings::log_lines_per_reason`] per [`EngineSettings::log_window`]); what is
//! suppressed is counted and summarised in one line per window. The metrics still count
//! every event. Workers' own lines (`engine::log::*`) are bounded by the core (per worker,
//! per client address and engine-wide), which summarises what it dropped in a
//! `worker log lines suppressed` line a second.

use std::time::Instant;

use iii_core::engine::{EngineEvent, LogLevel, RefusalReason};

use super::EngineSettings;
use crate::log_limit::{Reason, ReasonLimit};

/// The engine task's event log.
#[derive(Debug)]
pub(super) struct EventLog {
    limit: ReasonLimit,
}

/// The reason an event's line is limited under, or `None` for lines below info (never
/// limited: they are off in production).
fn reason_of(event: &EngineEvent) -> Option<Reason> {
    Some(match event {
        EngineEvent::Refused { reason, .. } => match reason {
            RefusalReason::Quota(quota) => ("quota_exceeded", quota.name()),
            other => (other.code(), ""),
        },
        EngineEvent::SlowConsumer { .. } => ("slow_consumer", ""),
        EngineEvent::AuthFailed { .. } => ("auth_failed", ""),
        EngineEvent::InvocationTimedOut { .. } => ("invocation_timed_out", ""),
        EngineEvent::WorkerConnected { .. } => ("worker_connected", ""),
        EngineEvent::WorkerAnnounced { .. } => ("worker_announced", ""),
        EngineEvent::WorkerDisconnected { .. } => ("worker_disconnected", ""),
        _ => return None,
    })
}

impl EventLog {
    /// The log `settings` ask for.
    pub(super) fn new(settings: &EngineSettings) -> Self {
        let per_window = u32::try_from(settings.log_lines_per_reason).unwrap_or(u32::MAX);
        Self {
            limit: ReasonLimit::new(per_window, settings.log_window),
        }
    }

    /// When the current window's summary is due, if anything was suppressed in it.
    pub(super) fn due(&self) -> Option<Instant> {
        self.limit.due()
    }

    /// Logs the summary of a window that has passed, if it suppressed anything.
    pub(super) fn tick(&mut self, now: Instant) {
        if let Some(suppressed) = self.limit.roll(now) {
            tracing::info!(%suppressed, "log lines suppressed");
        }
    }

    /// Logs `event`, unless its reason has had its lines this window.
    pub(super) fn record(&mut self, event: &EngineEvent, now: Instant) {
        if let Some(reason) = reason_of(event) {
            self.tick(now);
            if !self.limit.admit(reason, now) {
                return;
            }
        }
        log_event(event);
    }
}

fn log_event(event: &EngineEvent) {
    match event {
        EngineEvent::ProtocolViolation { conn, violation } => {
            tracing::debug!(%conn, ?violation, "protocol violation")
        }
        EngineEvent::SlowConsumer { conn } => {
            tracing::warn!(%conn, "slow consumer dropped")
        }
        EngineEvent::Refused {
            conn,
            what,
            id,
            reason,
        } => {
            tracing::info!(%conn, what, id = id.as_deref().unwrap_or(""), ?reason, "request refused")
        }
        EngineEvent::AuthFailed { listener, reason } => {
            tracing::info!(listener, %reason, "worker not admitted")
        }
        EngineEvent::InvocationTimedOut { conn, function_id } => {
            tracing::info!(%conn, %function_id, "invocation timed out")
        }
        EngineEvent::WorkerConnected {
            conn,
            worker_id,
            peer,
        } => {
            tracing::info!(%conn, %worker_id, peer = %Peer(*peer), "worker connected")
        }
        EngineEvent::WorkerAnnounced {
            conn,
            name,
            runtime,
        } => {
            tracing::info!(%conn, worker_name = %name, runtime = %runtime, "worker announced")
        }
        EngineEvent::WorkerDisconnected {
            conn,
            worker_id,
            name,
            peer,
        } => {
            tracing::info!(
                %conn,
                %worker_id,
                worker_name = name.as_deref().unwrap_or("(none announced)"),
                peer = %Peer(*peer),
                "worker disconnected"
            )
        }
        EngineEvent::ChannelRemoved {
            channel_id,
            outcome,
            stats,
        } => tracing::debug!(%channel_id, ?outcome, ?stats, "channel removed"),
        // Already limited by the core (per worker, per address and engine-wide).
        EngineEvent::WorkerLog { .. } => log_worker_line(event),
        // At most one a second, from the core.
        EngineEvent::WorkerLogSuppressed {
            per_worker,
            per_address,
            engine_wide,
        } => tracing::warn!(
            target: "iii::worker",
            per_worker,
            per_address,
            engine_wide,
            "worker log lines suppressed"
        ),
        other => tracing::trace!(?other, "engine event"),
    }
}

/// A client's address in a log line (`unknown` when the driver gave none).
struct Peer(Option<std::net::IpAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// Writes a worker's `engine::log::*` line to the engine's log, at its level, with the
/// worker's name and id (target `iii::worker`).
fn log_worker_line(event: &EngineEvent) {
    let EngineEvent::WorkerLog {
        conn,
        worker_id,
        worker_name,
        level,
        message,
        data,
        trace_id,
        span_id,
        service_name,
        dropped,
    } = event
    else {
        return;
    };
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "iii::worker",
                $level,
                %conn,
                %worker_id,
                worker_name = %worker_name,
                data = data.as_deref().unwrap_or(""),
                trace_id = trace_id.as_deref().unwrap_or(""),
                span_id = span_id.as_deref().unwrap_or(""),
                service_name = service_name.as_deref().unwrap_or(""),
                dropped,
                "{message}"
            )
        };
    }
    match level {
        LogLevel::Trace => line!(tracing::Level::TRACE),
        LogLevel::Debug => line!(tracing::Level::DEBUG),
        LogLevel::Info => line!(tracing::Level::INFO),
        LogLevel::Warn => line!(tracing::Level::WARN),
        LogLevel::Error => line!(tracing::Level::ERROR),
    }
}
