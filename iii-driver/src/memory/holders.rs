//! The budget itself: every connection holding bytes is a registered holder with its
//! charge, its listener and its peer's address, and a signal through which the budget can
//! cut it. Growth that does not fit cuts the largest holder (see [`MemoryBudget`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use futures_util::task::AtomicWaker;

/// How the budget is shared out (the `memory_*` settings of
/// [`EngineSettings`](crate::engine::EngineSettings)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetPolicy {
    /// The budget, in bytes.
    pub limit: usize,
    /// A connection holding at most this many bytes may use the whole budget; beyond it,
    /// the reserve is out of its reach.
    pub small_holding: usize,
    /// The part of the budget (1 / this) kept for connections holding at most
    /// `small_holding` bytes.
    pub reserve_fraction: usize,
    /// Bytes of pings a peer may send while the engine cannot write to it (each queues a
    /// pong it does not read) before it is cut as a slow consumer.
    pub pong_room: usize,
}

impl BudgetPolicy {
    /// The defaults, with a budget of `limit` bytes.
    pub const fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            small_holding: 256 * 1024,
            reserve_fraction: 8,
            pong_room: 16 * 1024,
        }
    }

    /// What the budget lets a connection reach when it will hold `held` bytes.
    pub(crate) fn ceiling(&self, held: usize) -> usize {
        if held <= self.small_holding {
            self.limit
        } else {
            self.limit - self.limit / self.reserve_fraction.max(1)
        }
    }
}

/// Whose bytes a holder's are: the listener its connection arrived on and its peer's
/// address. The budget's fair shares are per listener, then per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Owner {
    /// Index of the listener (0 is the main one).
    pub(crate) listener: usize,
    /// The peer's address.
    pub(crate) address: IpAddr,
}

impl Default for Owner {
    fn default() -> Self {
        Self {
            listener: 0,
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// How the budget tells a holder it was cut: a flag, and the waker of the task that
/// last waited on the holder's socket.
#[derive(Debug, Default)]
pub(crate) struct CutSignal {
    cut: AtomicBool,
    waker: AtomicWaker,
}

impl CutSignal {
    /// The budget cut this holder.
    #[inline]
    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// The task to wake when the holder is cut.
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    fn fire(&self) {
        self.cut.store(true, Ordering::Release);
        self.waker.wake();
    }
}

#[derive(Debug)]
struct Holder {
    owner: Owner,
    charge: usize,
    signal: Arc<CutSignal>,
}

/// The registry, under one lock (taken only when a connection's grant changes).
#[derive(Debug, Default)]
struct Holders {
    used: usize,
    peak: usize,
    next_id: u64,
    holders: BTreeMap<u64, Holder>,
    /// Bytes held per listener, and per listener and address.
    listeners: BTreeMap<usize, usize>,
    addresses: BTreeMap<Owner, usize>,
}

impl Holders {
    fn set_charge(&mut self, id: u64, charge: usize) {
        let Some(holder) = self.holders.get_mut(&id) else {
            return;
        };
        let before = holder.charge;
        holder.charge = charge;
        let owner = holder.owner;
        self.used = self.used - before + charge;
        self.peak = self.peak.max(self.used);
        adjust(&mut self.listeners, owner.listener, before, charge);
        adjust(&mut self.addresses, owner, before, charge);
    }

    /// Who is cut so that `id` may hold `need` bytes: the largest holder, counting `id`
    /// as holding `need`. Fair shares decide first: the listener holding the most, then
    /// within it the address holding the most, then within it the connection holding
    /// the most. Ties go against `id` (the one asking). `None`: `id` itself.
    fn victim(&self, id: u64, need: usize) -> Option<u64> {
        let asking = self.holders.get(&id)?;
        let (mine, before) = (asking.owner, asking.charge);
        let with_need = |total: usize| total - before + need;
        // The asker's own groups are there even while it holds nothing yet.
        let own_listener =
            (!self.listeners.contains_key(&mine.listener)).then_some((mine.listener, need, true));
        let listener = largest(
            self.listeners
                .iter()
                .map(|(&l, &total)| {
                    let total = if l == mine.listener {
                        with_need(total)
                    } else {
                        total
                    };
                    (l, total, l == mine.listener)
                })
                .chain(own_listener),
        )?;
        let own_address = (listener == mine.listener && !self.addresses.contains_key(&mine))
            .then_some((mine, need, true));
        let address = largest(
            self.addresses
                .iter()
                .filter(|(owner, _)| owner.listener == listener)
                .map(|(&owner, &total)| {
                    let total = if owner == mine {
                        with_need(total)
                    } else {
                        total
                    };
                    (owner, total, owner == mine)
                })
                .chain(own_address),
        )?;
        let (victim, _, _) = largest_entry(
            self.holders
                .iter()
                .filter(|(_, holder)| holder.owner == address)
                .map(|(&other, holder)| {
                    let charge = if other == id { need } else { holder.charge };
                    (other, charge, other == id)
                }),
        )?;
        (victim != id).then_some(victim)
    }

    fn evict(&mut self, victim: u64) {
        self.set_charge(victim, 0);
        if let Some(holder) = self.holders.remove(&victim) {
            holder.signal.fire();
        }
    }
}

fn adjust<K: Ord + Copy>(totals: &mut BTreeMap<K, usize>, key: K, before: usize, after: usize) {
    let total = totals.entry(key).or_default();
    *total = *total - before + after;
    if *total == 0 {
        totals.remove(&key);
    }
}

/// The key with the largest total; ties go to the entry marked `true` (the asker's).
fn largest<K: Copy>(entries: impl Iterator<Item = (K, usize, bool)>) -> Option<K> {
    largest_entry(entries).map(|(key, _, _)| key)
}

fn largest_entry<K: Copy>(
    entries: impl Iterator<Item = (K, usize, bool)>,
) -> Option<(K, usize, bool)> {
    entries.max_by_key(|&(_, total, mine)| (total, mine))
}

/// The engine-wide byte budget shared by every connection's `Metered` stream.
///
/// When a connection's growth does not fit, the budget frees room by cutting the largest
/// holder, by fair shares: the listener holding the most, within it the address holding
/// the most, within it the connection holding the most (the one asking counted with its
/// growth). If that is the connection asking, its growth is refused and it is cut
/// instead. A cut holder's charge is given back at once; its task is woken and closes
/// the connection (1008), which frees the memory itself.
#[derive(Debug)]
pub struct MemoryBudget {
    policy: BudgetPolicy,
    state: Mutex<Holders>,
    /// Connections cut because the budget could not grant their growth.
    pub(super) refused: AtomicU64,
    /// Connections cut as slow consumers.
    pub(super) slow: AtomicU64,
    /// Connections cut as the largest holder so that another could grow.
    pub(super) evicted: AtomicU64,
}

/// A copy of a [`MemoryBudget`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// The budget, in bytes.
    pub limit: usize,
    /// Bytes held now: messages in progress and unsent output of every connection.
    pub used: usize,
    /// The most ever held at once.
    pub peak: usize,
    /// Connections cut because the budget could not grant their growth.
    pub refused: u64,
    /// Connections cut as slow consumers.
    pub slow_consumers: u64,
    /// Connections cut as the largest holder, so that another connection could grow.
    pub evicted: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, shared out as [`BudgetPolicy::with_limit`] says.
    pub fn new(limit: usize) -> Self {
        Self::with_policy(BudgetPolicy::with_limit(limit))
    }

    /// A budget shared out by `policy`.
    pub fn with_policy(policy: BudgetPolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(Holders::default()),
            refused: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// How it is shared out.
    pub fn policy(&self) -> BudgetPolicy {
        self.policy
    }

    fn state(&self) -> MutexGuard<'_, Holders> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counters, now.
    pub fn snapshot(&self) -> MemoryUse {
        let (used, peak) = {
            let state = self.state();
            (state.used, state.peak)
        };
        MemoryUse {
            limit: self.policy.limit,
            used,
            peak,
            refused: self.refused.load(Ordering::Relaxed),
            slow_consumers: self.slow.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    /// Registers a holder of nothing yet.
    pub(crate) fn register(&self, owner: Owner) -> (u64, Arc<CutSignal>) {
        let signal = Arc::new(CutSignal::default());
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state.holders.insert(
            id,
            Holder {
                owner,
                charge: 0,
                signal: signal.clone(),
            },
        );
        (id, signal)
    }

    /// Forgets a holder, giving back its charge.
    pub(crate) fn unregister(&self, id: u64) {
        let mut state = self.state();
        state.set_charge(id, 0);
        state.holders.remove(&id);
    }

    /// Brings holder `id`'s charge to at least `need` and at most `want` bytes (`need <=
    /// want`), cutting the largest holders while `need` does not fit. The new charge, or
    /// `None` when `id` is the largest holder itself (its charge is then left as it was).
    pub(crate) fn grow(&self, id: u64, need: usize, want: usize) -> Option<usize> {
        let ceiling = self.policy.ceiling(need);
        let mut state = self.state();
        loop {
            let current = state.holders.get(&id)?.charge;
            let others = state.used - current;
            let room = ceiling.saturating_sub(others);
            if need <= room {
                let grant = want.min(room);
                state.set_charge(id, grant);
                return Some(grant);
            }
            let victim = state.victim(id, need)?;
            state.evict(victim);
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lowers holder `id`'s charge to `charge` bytes.
    pub(crate) fn shrink(&self, id: u64, charge: usize) {
        self.state().set_charge(id, charge);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(listener: usize, last: u8) -> Owner {
        Owner {
            listener,
            address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
        }
    }

    #[test]
    fn the_largest_holder_is_cut_by_listener_then_address_then_connection() {
        let budget = MemoryBudget::new(1000);
        let (a, a_cut) = budget.register(owner(0, 1));
        let (b, b_cut) = budget.register(owner(0, 1));
        let (c, c_cut) = budget.register(owner(0, 2));
        assert_eq!(budget.grow(a, 300, 300), Some(300));
        assert_eq!(budget.grow(b, 400, 400), Some(400));
        assert_eq!(budget.grow(c, 200, 200), Some(200));
        // c (127.0.0.2, holding 200) wants 250 more: 127.0.0.1 holds the most, and b
        // the most there.
        assert_eq!(budget.grow(c, 450, 450), Some(450));
        assert!(b_cut.is_cut() && !a_cut.is_cut() && !c_cut.is_cut());
        assert_eq!(budget.snapshot().used, 750);
        assert_eq!(budget.snapshot().evicted, 1);
        // Now 127.0.0.2 holds the most: c asking for more is refused, a is kept.
        assert_eq!(budget.grow(c, 800, 800), None);
        assert!(!a_cut.is_cut());
        assert_eq!(budget.snapshot().used, 750, "a refusal changes no charge");
        budget.unregister(a);
        budget.unregister(c);
        assert_eq!(budget.snapshot().used, 0);
    }

    #[test]
    fn ties_go_against_the_one_asking_and_grants_stop_at_the_room() {
        let budget = MemoryBudget::new(1000);
        let (a, a_cut) = budget.register(owner(0, 1));
        let (b, _) = budget.register(owner(0, 1));
        assert_eq!(budget.grow(a, 500, 500), Some(500));
        assert_eq!(
            budget.grow(b, 400, 600),
            Some(500),
            "the grant stops at the room"
        );
        assert_eq!(budget.grow(b, 500, 500), Some(500));
        assert_eq!(
            budget.grow(b, 501, 501),
            None,
            "501 against 500: b is the largest"
        );
        assert_eq!(budget.grow(b, 500, 500), Some(500));
        assert!(!a_cut.is_cut());
    }

    #[test]
    fn the_busiest_listener_gives_first() {
        let budget = MemoryBudget::new(1000);
        let (trusted, trusted_cut) = budget.register(owner(0, 1));
        let (guest, guest_cut) = budget.register(owner(1, 9));
        let (other, _) = budget.register(owner(1, 8));
        assert_eq!(budget.grow(trusted, 300, 300), Some(300));
        assert_eq!(budget.grow(guest, 350, 350), Some(350));
        assert_eq!(budget.grow(other, 300, 300), Some(300));
        // The trusted listener would hold 400, the guests' holds 650: a trusted
        // connection's growth cuts the guests' largest holder.
        assert_eq!(budget.grow(trusted, 400, 400), Some(400));
        assert!(guest_cut.is_cut() && !trusted_cut.is_cut());
    }
}
