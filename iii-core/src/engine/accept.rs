//! Deciding upgrade requests: which route, which listener and its policy, origin, limits,
//! token; what an accepted connection is and how the adapter drives it.

use super::*;
use crate::upgrade::{bearer_token, parse_target, Rejection, Route, UpgradeRequest};

/// What an accepted upgrade became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKindTag {
    /// A worker's control connection.
    Control,
    /// A telemetry connection: everything it sends is discarded.
    Telemetry,
    /// The reading end of a channel.
    ChannelReader,
    /// The writing end of a channel.
    ChannelWriter,
}

/// An accepted upgrade: complete the WebSocket handshake, then drive `conn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The new connection's handle.
    pub conn: ConnId,
    /// What it is.
    pub kind: ConnKindTag,
    /// The largest message the adapter should let the WebSocket layer accept on it.
    pub max_message_bytes: usize,
    /// How far the adapter may read ahead of the core on it, in bytes: start reading a
    /// new message only while less than this has been read and not yet consumed
    /// (`EngineConfig::read_ahead_bytes`; the core's byte budgets reserve room for it).
    pub read_ahead_bytes: usize,
}

/// The engine's answer to an upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The connection exists: complete the handshake and drive it.
    Accepted(Accepted),
    /// Refused: answer with the rejection's status and do not upgrade.
    Refused(Rejection),
    /// An authentication function decides (RBAC listeners): keep the request waiting
    /// until [`EngineOutput::Admitted`] with this ticket arrives.
    Deferred(Ticket),
}

impl Admission {
    /// The decision, when there is one already.
    pub fn decided(self) -> Option<Result<Accepted, Rejection>> {
        match self {
            Admission::Accepted(accepted) => Some(Ok(accepted)),
            Admission::Refused(rejection) => Some(Err(rejection)),
            Admission::Deferred(_) => None,
        }
    }
}

impl Engine {
    /// Decides an upgrade request from its target (`/path?query`), its `Authorization`
    /// and `Origin` headers and the listener it arrived on. On `Accepted` the connection
    /// exists: complete the handshake and drive it (messages already queued for it are
    /// part of its outputs); if the handshake fails, report
    /// `handle_closed(.., PeerClose::Lost)`. On `Refused` answer with the rejection's
    /// status and do not upgrade. On `Deferred` (an RBAC listener's authentication
    /// function decides) wait for [`EngineOutput::Admitted`] with that ticket.
    ///
    /// May queue outputs (`workerregistered` for a control connection, buffered data for a
    /// late reader, the authentication function's invocation).
    pub fn accept(&mut self, now: Instant, request: &UpgradeRequest<'_>) -> Admission {
        let admission = self.decide(now, request);
        match admission {
            Admission::Accepted(accepted) => self.metrics.accepted(accepted.kind),
            Admission::Refused(rejection) => self.metrics.refused_upgrade(rejection),
            Admission::Deferred(_) => {}
        }
        admission
    }

    fn decide(&mut self, now: Instant, request: &UpgradeRequest<'_>) -> Admission {
        let refused = Admission::Refused;
        let route = match parse_target(request.target) {
            Ok(route) => route,
            Err(rejection) => return refused(rejection),
        };
        let policy = match request.listener {
            0 => None,
            n => match self.listener_policy(n) {
                Some(policy) => Some(policy),
                None => return refused(Rejection::NotFound),
            },
        };
        if let Some(origin) = request.origin {
            let allowed = match policy.and_then(|p| p.allowed_origins.as_ref()) {
                Some(origins) => EngineConfig {
                    allowed_origins: origins.clone(),
                    ..EngineConfig::default()
                }
                .origin_allowed(origin),
                None => self.config.origin_allowed(origin),
            };
            if !allowed {
                return refused(Rejection::Forbidden);
            }
        }
        if self.conns.len() >= self.config.max_connections {
            return refused(Rejection::Overloaded);
        }
        let untrusted = policy.is_some_and(|p| p.rbac.is_some());
        match route {
            Route::Control | Route::Telemetry => {
                if self.draining {
                    return refused(Rejection::Unavailable);
                }
                if let Err(rejection) = self.check_peer_limit(request.listener, request.peer) {
                    return refused(rejection);
                }
                let telemetry = route == Route::Telemetry;
                if untrusted {
                    return self.admit_untrusted(now, request, telemetry);
                }
                if let Err(rejection) = self.check_token(request.authorization) {
                    return refused(rejection);
                }
                let conn = self.alloc_conn();
                if telemetry {
                    self.insert_counted(conn, ConnKind::Telemetry, request.listener, request.peer);
                    return Admission::Accepted(self.accepted(conn, ConnKindTag::Telemetry));
                }
                self.open_control(now, conn, request.listener, request.peer, None);
                Admission::Accepted(self.accepted(conn, ConnKindTag::Control))
            }
            Route::Channel {
                channel_id,
                key,
                direction,
            } => {
                let channel = match self.authorize_end(&channel_id, &key, direction) {
                    Ok(channel) => channel,
                    Err(rejection) => return refused(rejection),
                };
                let conn = self.alloc_conn();
                self.insert_conn(conn, ConnKind::Channel { channel, direction });
                self.attach_end(now, channel, direction, conn);
                let kind = match direction {
                    Direction::Read => ConnKindTag::ChannelReader,
                    Direction::Write => ConnKindTag::ChannelWriter,
                };
                Admission::Accepted(self.accepted(conn, kind))
            }
        }
    }

    /// The policy of listener `index` (1 and up; 0 is the main listener, which has
    /// none).
    pub(super) fn listener_policy(&self, index: usize) -> Option<&ListenerPolicy> {
        index
            .checked_sub(1)
            .and_then(|i| self.config.listeners.get(i))
    }

    pub(super) fn check_token(&self, authorization: Option<&str>) -> Result<(), Rejection> {
        let Some(expected) = &self.config.auth_token else {
            return Ok(());
        };
        let presented = authorization.and_then(bearer_token).unwrap_or("");
        use subtle::ConstantTimeEq;
        if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(Rejection::Unauthorized)
        }
    }

    pub(super) fn accepted(&self, conn: ConnId, kind: ConnKindTag) -> Accepted {
        let max_message_bytes = match kind {
            ConnKindTag::Control => self.config.max_control_message_bytes,
            ConnKindTag::Telemetry => self.config.max_telemetry_message_bytes,
            ConnKindTag::ChannelReader | ConnKindTag::ChannelWriter => {
                self.config.max_channel_message_bytes
            }
        };
        Accepted {
            conn,
            kind,
            max_message_bytes,
            read_ahead_bytes: self.config.read_ahead_bytes,
        }
    }
}
