//! What one client address holds on one listener, for the per-address limit
//! ([`ListenerPolicy::max_connections_per_ip`](super::ListenerPolicy)): its control and
//! telemetry connections and its upgrades still waiting for the authentication function.
//! The map holds an entry only while its count is above zero, so it never has more
//! entries than there are connections and waiting upgrades.

use std::net::IpAddr;

use super::Engine;
use crate::ids::ConnId;
use crate::upgrade::{address_key, Rejection};

/// A client address on a listener (IPv6 clients by their /64, see
/// [`address_key`]).
pub(super) type PeerKey = (usize, IpAddr);

impl Engine {
    /// `Err(Overloaded)` when `peer` already holds as much on `listener` as its
    /// per-address limit allows (never for an unknown address or a listener without one).
    pub(super) fn check_peer_limit(
        &self,
        listener: usize,
        peer: Option<IpAddr>,
    ) -> Result<(), Rejection> {
        let limit = self
            .listener_policy(listener)
            .and_then(|p| p.max_connections_per_ip);
        let (Some(limit), Some(peer)) = (limit, peer) else {
            return Ok(());
        };
        let held = self
            .per_peer
            .get(&(listener, address_key(peer)))
            .copied()
            .unwrap_or(0);
        if held >= limit {
            Err(Rejection::Overloaded)
        } else {
            Ok(())
        }
    }

    /// Counts one more thing held by `peer` on `listener`; the key to release it with.
    pub(super) fn hold_peer(&mut self, listener: usize, peer: Option<IpAddr>) -> Option<PeerKey> {
        let key = (listener, address_key(peer?));
        *self.per_peer.entry(key).or_default() += 1;
        Some(key)
    }

    /// Releases what [`Engine::hold_peer`] counted (removing the entry at zero).
    pub(super) fn release_peer(&mut self, key: Option<PeerKey>) {
        let Some(key) = key else { return };
        if let Some(count) = self.per_peer.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_peer.remove(&key);
            }
        }
    }

    /// The client address (and listener) `conn` arrived from, when known.
    pub(super) fn peer_key(&self, conn: ConnId) -> Option<PeerKey> {
        self.conns.get(&conn).and_then(|state| state.peer)
    }

    /// Entries of the per-address map (for tests: it must not outlive what it counts).
    pub fn tracked_addresses(&self) -> usize {
        self.per_peer.len()
    }
}
