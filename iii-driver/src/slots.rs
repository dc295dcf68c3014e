//! Pre-upgrade slots: a TCP connection holds one from its accept until the engine has
//! its upgrade request (TLS handshake and request head included), so that peers who
//! connect and then stall can hold only a bounded share.
//!
//! The budget is engine-wide ([`EngineSettings::max_handshakes`]), per client address
//! over every listener ([`EngineSettings::max_handshakes_per_ip`]) and per listener
//! ([`ListenerSettings::max_handshakes`](crate::engine::ListenerSettings)); the main
//! (trusted) listener keeps [`EngineSettings::reserved_handshakes`] of the engine-wide
//! count that the other listeners together can never take. A slot is a [`SlotGuard`]:
//! dropping it gives the slot back. The per-address map holds an entry only while its
//! count is above zero, so it never has more entries than slots are held.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::engine::EngineSettings;

/// Why a connection got no pre-upgrade slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotRefusal {
    /// Every slot of the engine is held (or, on a listener other than the main one, all
    /// but the main listener's reserve).
    Engine,
    /// The listener's share is held.
    Listener,
    /// The client address holds its share.
    Address,
}

impl SlotRefusal {
    /// Every refusal, in the order of [`ListenerSlots::refused`].
    pub(crate) const ALL: [SlotRefusal; 3] = [Self::Engine, Self::Listener, Self::Address];

    /// The metric label and log reason.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Engine => "engine",
            Self::Listener => "listener",
            Self::Address => "address",
        }
    }
}

/// What one listener counts, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ListenerSlots {
    /// Refusals by [`SlotRefusal::ALL`].
    refused: [AtomicU64; 3],
}

#[derive(Debug, Default)]
struct Held {
    /// Slots held over every listener.
    total: usize,
    /// Slots held by the listeners other than the main one.
    untrusted: usize,
    /// By listener index (0 is the main listener).
    by_listener: Vec<usize>,
    /// By client address; no entry at zero.
    by_address: BTreeMap<IpAddr, usize>,
}

/// The pre-upgrade slots of one engine (see the module documentation).
#[derive(Debug)]
pub(crate) struct SlotBudget {
    total: usize,
    /// What the listeners other than the main one may hold together.
    untrusted: usize,
    per_address: usize,
    /// By listener index.
    per_listener: Vec<usize>,
    held: Mutex<Held>,
    listeners: Vec<ListenerSlots>,
}

impl SlotBudget {
    /// The budget `settings` describe (already validated).
    pub(crate) fn new(settings: &EngineSettings) -> Arc<Self> {
        let total = settings.max_handshakes;
        let untrusted = total.saturating_sub(settings.reserved_handshakes);
        let per_listener: Vec<usize> = std::iter::once(total)
            .chain(
                settings
                    .listeners
                    .iter()
                    .map(|l| l.max_handshakes.unwrap_or(untrusted).min(untrusted)),
            )
            .collect();
        let count = per_listener.len();
        Arc::new(Self {
            total,
            untrusted,
            per_address: settings.max_handshakes_per_ip,
            per_listener,
            held: Mutex::new(Held {
                by_listener: vec![0; count],
                ..Held::default()
            }),
            listeners: (0..count).map(|_| ListenerSlots::default()).collect(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        // Nothing panics while holding it; a poisoned lock still has sound counts.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a connection from `peer` on listener `listener`, or why there is none
    /// (counted for `/metrics`).
    pub(crate) fn acquire(
        self: &Arc<Self>,
        listener: usize,
        peer: IpAddr,
    ) -> Result<SlotGuard, SlotRefusal> {
        // IPv6 clients are counted by their /64, which one client commonly holds whole.
        let peer = iii_core::upgrade::address_key(peer);
        let refusal = {
            let mut held = self.lock();
            let on_listener = held.by_listener.get(listener).copied().unwrap_or(0);
            let from_address = held.by_address.get(&peer).copied().unwrap_or(0);
            let limit = self.per_listener.get(listener).copied().unwrap_or(0);
            if held.total >= self.total || (listener != 0 && held.untrusted >= self.untrusted) {
                Some(SlotRefusal::Engine)
            } else if on_listener >= limit {
                Some(SlotRefusal::Listener)
            } else if from_address >= self.per_address {
                Some(SlotRefusal::Address)
            } else {
                held.total += 1;
                if listener != 0 {
                    held.untrusted += 1;
                }
                if let Some(count) = held.by_listener.get_mut(listener) {
                    *count += 1;
                }
                *held.by_address.entry(peer).or_default() += 1;
                None
            }
        };
        match refusal {
            Some(refusal) => {
                if let Some(slots) = self.listeners.get(listener) {
                    let index = SlotRefusal::ALL.iter().position(|r| *r == refusal);
                    slots.refused[index.unwrap_or(0)].fetch_add(1, Ordering::Relaxed);
                }
                Err(refusal)
            }
            None => Ok(SlotGuard {
                budget: self.clone(),
                listener,
                peer,
            }),
        }
    }

    fn release(&self, listener: usize, peer: IpAddr) {
        let mut held = self.lock();
        held.total = held.total.saturating_sub(1);
        if listener != 0 {
            held.untrusted = held.untrusted.saturating_sub(1);
        }
        if let Some(count) = held.by_listener.get_mut(listener) {
            *count = count.saturating_sub(1);
        }
        if let Some(count) = held.by_address.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.by_address.remove(&peer);
            }
        }
    }

    /// Slots held now: over every listener, and by listener.
    pub(crate) fn held(&self) -> (usize, Vec<usize>) {
        let held = self.lock();
        (held.total, held.by_listener.clone())
    }

    /// Client addresses holding a slot now.
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.lock().by_address.len()
    }

    /// Refusals so far, by listener, by [`SlotRefusal::ALL`].
    pub(crate) fn refused(&self) -> Vec<[u64; 3]> {
        self.listeners
            .iter()
            .map(|l| std::array::from_fn(|i| l.refused[i].load(Ordering::Relaxed)))
            .collect()
    }
}

/// One held pre-upgrade slot; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct SlotGuard {
    budget: Arc<SlotBudget>,
    listener: usize,
    peer: IpAddr,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.budget.release(self.listener, self.peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ListenerSettings;
    use iii_core::engine::ListenerPolicy;

    fn budget(
        total: usize,
        reserved: usize,
        per_ip: usize,
        shares: &[Option<usize>],
    ) -> Arc<SlotBudget> {
        let settings = EngineSettings {
            max_handshakes: total,
            reserved_handshakes: reserved,
            max_handshakes_per_ip: per_ip,
            listeners: shares
                .iter()
                .map(|share| ListenerSettings {
                    max_handshakes: *share,
                    ..ListenerSettings::new("127.0.0.1:0", ListenerPolicy::trusted("x"))
                })
                .collect(),
            ..EngineSettings::default()
        };
        SlotBudget::new(&settings)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn other_listeners_never_take_the_main_listeners_reserve() {
        let slots = budget(10, 4, 100, &[None, None]);
        let mut kept = Vec::new();
        for i in 0..6 {
            kept.push(slots.acquire(1 + i % 2, ip(i as u8)).expect("a slot"));
        }
        assert_eq!(slots.acquire(2, ip(50)).unwrap_err(), SlotRefusal::Engine);
        for i in 0..4 {
            kept.push(slots.acquire(0, ip(100 + i)).expect("the reserve"));
        }
        assert_eq!(slots.acquire(0, ip(200)).unwrap_err(), SlotRefusal::Engine);
        assert_eq!(slots.refused()[0], [1, 0, 0]);
        kept.clear();
        assert_eq!(slots.held(), (0, vec![0, 0, 0]));
        assert_eq!(slots.addresses(), 0);
    }

    #[test]
    fn one_listener_and_one_address_hold_their_share_only() {
        let slots = budget(10, 2, 3, &[Some(2), None]);
        let first = [
            slots.acquire(1, ip(1)).expect("a slot"),
            slots.acquire(1, ip(2)).expect("a slot"),
        ];
        assert_eq!(slots.acquire(1, ip(3)).unwrap_err(), SlotRefusal::Listener);
        let second = slots.acquire(2, ip(3)).expect("another listener");
        let mut same = Vec::new();
        for _ in 0..3 {
            same.push(slots.acquire(0, ip(9)).expect("a slot"));
        }
        assert_eq!(slots.acquire(0, ip(9)).unwrap_err(), SlotRefusal::Address);
        assert!(slots.acquire(0, ip(8)).is_ok());
        drop(same.pop());
        assert!(slots.acquire(0, ip(9)).is_ok());
        drop((first, second, same));
        assert_eq!(slots.addresses(), 0);
    }
}
