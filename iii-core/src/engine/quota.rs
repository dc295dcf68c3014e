//! What one worker may hold, and how refusals are reported.
//!
//! A registration (function, trigger type, binding) is checked before it is stored: its
//! payloads must not nest deeper than `max_payload_depth`, must fit `registration_bytes`,
//! and the worker's registrations together must fit `total_registration_bytes`. Counts
//! (functions, trigger types, bindings, channels, pending invocations) are checked by
//! the code that creates them. Every refusal emits [`EngineEvent::Refused`]; where the
//! protocol has no answer of its own, the worker also gets an `error` message.

use super::{Engine, EngineEvent, Quota, RefusalReason, WorkerQuotas};
use crate::ids::ConnId;
use crate::wire::control::{EngineError, Payload};
use crate::wire::json::nesting_exceeds;
use crate::wire::{ControlMessage, ErrorBody};
use crate::Instant;

/// The payloads of one registration, measured.
pub(super) struct Registration<'a> {
    /// Free text (descriptions, ids) counted toward the size.
    pub(super) text: usize,
    /// Raw JSON payloads, checked for depth and counted toward the size.
    pub(super) payloads: [Option<&'a Payload>; 4],
}

impl Engine {
    /// The quotas that apply to worker `conn`: its listener's.
    pub(super) fn quotas_of(&self, conn: ConnId) -> &WorkerQuotas {
        self.session(conn)
            .and_then(|s| self.listener_policy(s.listener))
            .map_or(&self.config.quotas, |listener| &listener.quotas)
    }

    /// Reports a refusal (the event only).
    pub(super) fn refused(
        &mut self,
        conn: ConnId,
        what: &'static str,
        id: Option<String>,
        reason: RefusalReason,
    ) {
        self.metrics.refused(reason);
        self.emit(EngineEvent::Refused {
            conn,
            what,
            id,
            reason,
        });
    }

    /// Reports a refusal and tells the worker with an `error` message.
    pub(super) fn refuse_with_error(
        &mut self,
        now: Instant,
        conn: ConnId,
        what: &'static str,
        id: Option<String>,
        reason: RefusalReason,
        message: String,
    ) {
        self.refused(conn, what, id.clone(), reason);
        let error = ControlMessage::Error(EngineError {
            error: ErrorBody::new(reason.code(), message),
            refused: Some(what.to_owned()),
            id,
        });
        self.send_control(now, conn, &error);
    }

    /// Checks a registration of worker `conn` that replaces one of `replacing` bytes (0
    /// for a new one); returns its size in bytes, or why it is refused with a message.
    pub(super) fn measure_registration(
        &self,
        conn: ConnId,
        registration: &Registration<'_>,
        replacing: usize,
    ) -> Result<usize, (RefusalReason, String)> {
        let depth = self.config.max_payload_depth;
        let quotas = self.quotas_of(conn);
        let mut bytes = registration.text;
        for payload in registration.payloads.iter().flatten() {
            if nesting_exceeds(payload.get(), depth) {
                return Err((
                    RefusalReason::TooDeep,
                    format!("a payload nests deeper than {depth} levels (max_payload_depth)"),
                ));
            }
            bytes = bytes.saturating_add(payload.get().len());
        }
        if bytes > quotas.registration_bytes {
            return Err((
                RefusalReason::Quota(Quota::RegistrationBytes),
                format!(
                    "the registration holds {bytes} bytes, more than {} (quota registration_bytes)",
                    quotas.registration_bytes
                ),
            ));
        }
        let held = self
            .session(conn)
            .map_or(0, |s| s.registration_bytes.saturating_sub(replacing));
        if held.saturating_add(bytes) > quotas.total_registration_bytes {
            return Err((
                RefusalReason::Quota(Quota::TotalRegistrationBytes),
                format!(
                    "this worker's registrations would hold more than {} bytes (quota total_registration_bytes)",
                    quotas.total_registration_bytes
                ),
            ));
        }
        Ok(bytes)
    }

    /// Adjusts the registration bytes held by worker `conn`: `added` replaces `removed`.
    pub(super) fn account_registration(&mut self, conn: ConnId, removed: usize, added: usize) {
        if let Some(session) = self.session_mut(conn) {
            session.registration_bytes = session
                .registration_bytes
                .saturating_sub(removed)
                .saturating_add(added);
        }
    }
}

/// The message of a count quota refusal.
pub(super) fn count_message(quota: Quota, limit: usize) -> String {
    format!("this worker already holds {limit} (quota {})", quota.name())
}
