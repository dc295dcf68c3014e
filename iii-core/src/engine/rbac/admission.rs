//! Admitting a worker to an RBAC listener: the authentication function decides, within
//! the listener's hook timeout, before the HTTP upgrade completes (a refusal is a 401).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use uuid::Uuid;

use super::super::invoke::Purpose;
use super::super::peers::PeerKey;
use super::super::session::DEFAULT_NAMESPACE;
use super::super::{
    Accepted, Admission, ConnKind, ConnKindTag, Engine, EngineEvent, EngineOutput, Timer,
};
use super::SessionPolicy;
use crate::ids::ConnId;
use crate::upgrade::{Rejection, UpgradeRequest};
use crate::wire::control::{to_payload, InvokeFunction, Payload};
use crate::wire::ErrorBody;
use crate::Instant;

/// A handle on an upgrade whose decision comes later (see [`Admission::Deferred`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// An upgrade waiting for the authentication function.
#[derive(Debug)]
pub(in crate::engine) struct PendingAdmission {
    listener: usize,
    peer: Option<IpAddr>,
    /// What it counts against its address's limit while it waits.
    held: Option<PeerKey>,
    telemetry: bool,
    /// The invocation of the authentication function, while it runs.
    call: Option<(ConnId, Uuid)>,
}

/// What the authentication function receives.
#[derive(Serialize)]
struct AuthInput<'a> {
    headers: BTreeMap<String, String>,
    query_params: BTreeMap<String, Vec<String>>,
    cookies: BTreeMap<String, String>,
    ip_address: &'a str,
}

fn auth_input(request: &UpgradeRequest<'_>) -> Payload {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = BTreeMap::new();
    for (name, value) in request.headers {
        let name = name.to_ascii_lowercase();
        if name == "cookie" {
            for pair in value.split(';') {
                if let Some((k, v)) = pair.split_once('=') {
                    cookies.insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
        }
        headers
            .entry(name)
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    let mut query_params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some((_, query)) = request.target.split_once('?') {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            query_params
                .entry(name.into_owned())
                .or_default()
                .push(value.into_owned());
        }
    }
    let ip = request.peer.map(|ip| ip.to_string()).unwrap_or_default();
    to_payload(&AuthInput {
        headers,
        query_params,
        cookies,
        ip_address: &ip,
    })
}

impl Engine {
    /// A control or telemetry upgrade to RBAC listener `listener`: admitted at once
    /// without an authentication function, deferred to it otherwise.
    pub(in crate::engine) fn admit_untrusted(
        &mut self,
        now: Instant,
        request: &UpgradeRequest<'_>,
        telemetry: bool,
    ) -> Admission {
        let listener = request.listener;
        let Some(rbac) = self.listener_policy(listener).and_then(|l| l.rbac.clone()) else {
            return Admission::Refused(Rejection::NotFound);
        };
        let Some(auth_function) = rbac.auth_function_id else {
            let policy = SessionPolicy::unauthenticated(listener);
            return match self.admit_session(now, listener, request.peer, telemetry, policy) {
                Ok(accepted) => Admission::Accepted(accepted),
                Err(rejection) => Admission::Refused(rejection),
            };
        };
        let key = (DEFAULT_NAMESPACE.to_owned(), auth_function.clone());
        let owner = self
            .functions
            .get(&key)
            .copied()
            .filter(|owner| self.session(*owner).is_some_and(|s| s.policy.is_none()));
        let Some(owner) = owner else {
            self.emit(EngineEvent::AuthFailed {
                listener,
                reason: format!(
                    "authentication function {auth_function} is not registered by a trusted worker"
                ),
            });
            return Admission::Refused(Rejection::Unauthorized);
        };
        if let Err(rejection) = self.check_admission_budget(listener) {
            return Admission::Refused(rejection);
        }
        self.next_ticket += 1;
        let ticket = Ticket(self.next_ticket);
        let call = InvokeFunction {
            invocation_id: None,
            function_id: self
                .function_specs
                .get(&key)
                .and_then(|s| s.local_id.clone())
                .unwrap_or(auth_function),
            data: auth_input(request),
            traceparent: None,
            baggage: None,
            action: None,
            metadata: None,
            namespace: None,
        };
        let id = self.forward_internal(now, owner, call, Purpose::Admission(ticket), None);
        let held = self.hold_peer(listener, request.peer);
        self.admissions.insert(
            ticket,
            PendingAdmission {
                listener,
                peer: request.peer,
                held,
                telemetry,
                call: Some((owner, id)),
            },
        );
        self.timers
            .set_after(Timer::Admission(ticket), now, rbac.hook_timeout);
        Admission::Deferred(ticket)
    }

    /// The authentication function answered (or failed, or its worker left).
    pub(in crate::engine) fn admission_answered(
        &mut self,
        now: Instant,
        ticket: Ticket,
        outcome: Result<Option<Payload>, ErrorBody>,
    ) {
        let Some(pending) = self.admissions.remove(&ticket) else {
            return;
        };
        self.release_peer(pending.held);
        self.timers.cancel(&Timer::Admission(ticket));
        let policy = match outcome {
            Ok(Some(result)) => SessionPolicy::granted(pending.listener, &result),
            Ok(None) => Err("the authentication function returned no result".to_owned()),
            Err(error) => Err(format!(
                "the authentication function failed: {}",
                error.code
            )),
        };
        // The decision goes out before anything the new connection is sent (its
        // `workerregistered`): the driver opens the connection when it sees it.
        let mark = self.out.len();
        let decision = match policy {
            Ok(policy) => self.admit_session(
                now,
                pending.listener,
                pending.peer,
                pending.telemetry,
                policy,
            ),
            Err(reason) => {
                self.emit(EngineEvent::AuthFailed {
                    listener: pending.listener,
                    reason,
                });
                Err(Rejection::Unauthorized)
            }
        };
        self.decided(mark, ticket, decision);
    }

    /// The authentication function did not answer in time.
    pub(in crate::engine) fn admission_timed_out(&mut self, ticket: Ticket) {
        let Some(pending) = self.admissions.remove(&ticket) else {
            return;
        };
        self.release_peer(pending.held);
        if let Some(key) = pending.call {
            self.forget_pending(key);
        }
        self.emit(EngineEvent::AuthFailed {
            listener: pending.listener,
            reason: "the authentication function did not answer in time".to_owned(),
        });
        let mark = self.out.len();
        self.decided(mark, ticket, Err(Rejection::Unauthorized));
    }

    /// Reports the decision on a deferred upgrade at position `mark` of the outputs,
    /// ahead of whatever opening the connection queued after it.
    fn decided(&mut self, mark: usize, ticket: Ticket, decision: Result<Accepted, Rejection>) {
        match &decision {
            Ok(accepted) => self.metrics.accepted(accepted.kind),
            Err(rejection) => self.metrics.refused_upgrade(*rejection),
        }
        let admitted = EngineOutput::Admitted {
            ticket,
            admission: decision,
        };
        self.out.insert(mark.min(self.out.len()), admitted);
    }

    /// `Err(Overloaded)` when no further upgrade may wait for an authentication
    /// function: on `listener` (its `max_pending_admissions`) or engine-wide.
    fn check_admission_budget(&self, listener: usize) -> Result<(), Rejection> {
        let overloaded = Err(Rejection::Overloaded);
        if self.admissions.len() >= self.config.max_pending_admissions {
            return overloaded;
        }
        let share = self
            .listener_policy(listener)
            .and_then(|p| p.max_pending_admissions);
        if let Some(share) = share {
            let waiting = self
                .admissions
                .values()
                .filter(|p| p.listener == listener)
                .count();
            if waiting >= share {
                return overloaded;
            }
        }
        Ok(())
    }

    /// Upgrades waiting for an authentication function.
    pub fn pending_admissions(&self) -> usize {
        self.admissions.len()
    }

    /// Creates the connection of an admitted session on RBAC listener `listener`.
    fn admit_session(
        &mut self,
        now: Instant,
        listener: usize,
        peer: Option<IpAddr>,
        telemetry: bool,
        policy: SessionPolicy,
    ) -> Result<Accepted, Rejection> {
        if self.conns.len() >= self.config.max_connections || self.draining {
            return Err(Rejection::Overloaded);
        }
        // Checked again now: the address may have filled its share while this waited.
        self.check_peer_limit(listener, peer)?;
        let conn = self.alloc_conn();
        if telemetry {
            self.insert_counted(conn, ConnKind::Telemetry, listener, peer);
            return Ok(self.accepted(conn, ConnKindTag::Telemetry));
        }
        self.open_control(now, conn, listener, peer, Some(policy));
        Ok(self.accepted(conn, ConnKindTag::Control))
    }
}
