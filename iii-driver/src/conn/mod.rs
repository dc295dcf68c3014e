//! One WebSocket connection between the network and a core machine's task.
//!
//! Each connection runs [`pump`]: its read half forwards whole messages to the machine's
//! task and its write half sends what the machine transmits, reporting flushed messages
//! back as send completions. The machine's task keeps a [`Conns`] table that turns the
//! core's `PauseRead`/`ResumeRead` into exact backpressure: a paused connection's messages
//! are held (at most [`READ_AHEAD`] of them, and at most its read-ahead bytes plus one
//! message) and not fed to the core, and its reader stops reading the socket once its
//! read-ahead credit is spent. A connection the core aborts is dropped without writing
//! what is queued for it.

mod credit;
mod pump;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures_channel::oneshot;
use iii_core::{CloseCode, ConnId, Message, PeerClose};

pub(crate) use credit::ReadCredit;
pub(crate) use pump::Liveness;
pub(crate) use pump::{pump, to_core, to_ws};

/// How long a connection waits for the peer's reply to our Close before dropping it.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the machine's task sends to a connection.
#[derive(Debug)]
pub(crate) enum Outbound {
    Message(Message),
    Close(Option<CloseCode>, &'static str),
}

/// What a connection reports to the machine's task.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    Message(ConnId, Message),
    Sent(ConnId, usize),
    Closed(ConnId, PeerClose),
}

struct Slot {
    out: UnboundedSender<Outbound>,
    credit: Arc<ReadCredit>,
    /// Drops the connection at once (see [`Conns::abort`]).
    abort: Option<oneshot::Sender<(CloseCode, &'static str)>>,
    paused: bool,
    held: VecDeque<Message>,
    /// The peer's close, waiting behind held messages.
    closed: Option<PeerClose>,
    /// In [`Conns::ready`].
    queued: bool,
    /// Size of the message last handed to the machine, returned to the credit by
    /// [`Conns::consumed`].
    handed: usize,
}

impl Slot {
    /// True when the machine may be fed this connection's next held message or end.
    fn is_ready(&self) -> bool {
        !self.paused && (!self.held.is_empty() || self.closed.is_some())
    }
}

/// What a new connection's reader may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnOptions {
    /// Bytes it may read ahead of the machine (see [`ReadCredit`]).
    pub(crate) read_ahead_bytes: usize,
    /// Pings and the idle timeout.
    pub(crate) liveness: Liveness,
}

impl Default for ConnOptions {
    fn default() -> Self {
        Self {
            read_ahead_bytes: usize::MAX,
            liveness: Liveness::default(),
        }
    }
}

/// Something the core may be fed now, in the order the connection produced it.
#[derive(Debug)]
pub(crate) enum Ready {
    /// A message that was held while its connection was paused.
    Message(ConnId, Message),
    /// The connection's end, after all its held messages.
    Closed(ConnId, PeerClose),
}

/// The machine task's view of its connections.
///
/// Connections with something to feed (held messages or a held end, and not paused) are
/// queued in `ready`, so finding the next one costs nothing however many idle
/// connections there are.
#[derive(Default)]
pub(crate) struct Conns {
    slots: BTreeMap<ConnId, Slot>,
    ready: VecDeque<ConnId>,
}

/// The connection's side of a new slot: hand these to [`pump`].
pub(crate) struct ConnEnds {
    pub(crate) outbound: UnboundedReceiver<Outbound>,
    pub(crate) credit: Arc<ReadCredit>,
    pub(crate) abort: oneshot::Receiver<(CloseCode, &'static str)>,
    pub(crate) liveness: Liveness,
}

impl Conns {
    /// Registers `conn` with default options (unbounded read-ahead bytes, no pings).
    pub(crate) fn open(&mut self, conn: ConnId) -> ConnEnds {
        self.open_with(conn, ConnOptions::default())
    }

    /// Registers `conn`; messages for it may be queued before its socket is ready.
    pub(crate) fn open_with(&mut self, conn: ConnId, options: ConnOptions) -> ConnEnds {
        let (out, outbound) = futures_channel::mpsc::unbounded();
        let (abort, abort_rx) = oneshot::channel();
        let credit = Arc::new(ReadCredit::new(options.read_ahead_bytes));
        self.slots.insert(
            conn,
            Slot {
                out,
                credit: credit.clone(),
                abort: Some(abort),
                paused: false,
                held: VecDeque::new(),
                closed: None,
                queued: false,
                handed: 0,
            },
        );
        ConnEnds {
            outbound,
            credit,
            abort: abort_rx,
            liveness: options.liveness,
        }
    }

    /// Queues `conn` for feeding if it has become ready.
    fn mark(&mut self, conn: ConnId) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            if slot.is_ready() && !slot.queued {
                slot.queued = true;
                self.ready.push_back(conn);
            }
        }
    }

    /// Queues `message` for sending on `conn`.
    pub(crate) fn transmit(&mut self, conn: ConnId, message: Message) {
        if let Some(slot) = self.slots.get(&conn) {
            let _ = slot.out.unbounded_send(Outbound::Message(message));
        }
    }

    /// Asks `conn` to close with `code` after what is queued. If the peer already ended
    /// the connection (its end waiting behind held messages), those messages are moot:
    /// the end is returned for the core at once.
    pub(crate) fn close(
        &mut self,
        conn: ConnId,
        code: Option<CloseCode>,
        reason: &'static str,
    ) -> Option<PeerClose> {
        let slot = self.slots.get_mut(&conn)?;
        if let Some(close) = slot.closed.take() {
            self.slots.remove(&conn);
            return Some(close);
        }
        let _ = slot.out.unbounded_send(Outbound::Close(code, reason));
        None
    }

    /// Asks `conn` to drop at once, abandoning what is queued (its Close frame with
    /// `code` gets a short chance). Like [`Conns::close`], returns the peer's end if it
    /// was already waiting.
    pub(crate) fn abort(
        &mut self,
        conn: ConnId,
        code: CloseCode,
        reason: &'static str,
    ) -> Option<PeerClose> {
        let slot = self.slots.get_mut(&conn)?;
        if let Some(close) = slot.closed.take() {
            self.slots.remove(&conn);
            return Some(close);
        }
        if let Some(abort) = slot.abort.take() {
            let _ = abort.send((code, reason));
        }
        None
    }

    /// The peer ended `conn`: returns the end if the core may have it now, or keeps it
    /// behind the connection's held messages (see [`Conns::next_ready`]).
    pub(crate) fn peer_closed(&mut self, conn: ConnId, close: PeerClose) -> Option<PeerClose> {
        let slot = self.slots.get_mut(&conn)?;
        if slot.paused || !slot.held.is_empty() {
            slot.closed = Some(close);
            self.mark(conn);
            return None;
        }
        self.slots.remove(&conn);
        Some(close)
    }

    /// The core paused reading `conn`.
    pub(crate) fn pause(&mut self, conn: ConnId) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            slot.paused = true;
        }
    }

    /// The core resumed reading `conn`.
    pub(crate) fn resume(&mut self, conn: ConnId) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            slot.paused = false;
        }
        self.mark(conn);
    }

    /// A message arrived on `conn`: returns it if the core may have it now (then call
    /// [`Conns::consumed`] after feeding it), or holds it while `conn` is paused.
    pub(crate) fn incoming(&mut self, conn: ConnId, message: Message) -> Option<Message> {
        let slot = self.slots.get_mut(&conn)?;
        if slot.paused || !slot.held.is_empty() {
            slot.held.push_back(message);
            self.mark(conn);
            return None;
        }
        slot.handed = message.len();
        Some(message)
    }

    /// The core consumed the message of `conn` last handed to it: its reader may read
    /// another.
    pub(crate) fn consumed(&mut self, conn: ConnId) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            slot.credit.give(std::mem::take(&mut slot.handed));
        }
    }

    /// The next held message, or held end, of a connection that is no longer paused.
    /// Connections take turns, one message each.
    pub(crate) fn next_ready(&mut self) -> Option<Ready> {
        loop {
            let conn = self.ready.pop_front()?;
            let Some(slot) = self.slots.get_mut(&conn) else {
                continue;
            };
            slot.queued = false;
            if !slot.is_ready() {
                continue; // paused again since it was queued
            }
            if let Some(message) = slot.held.pop_front() {
                slot.handed = message.len();
                self.mark(conn);
                return Some(Ready::Message(conn, message));
            }
            let close = slot.closed.take()?;
            self.slots.remove(&conn);
            return Some(Ready::Closed(conn, close));
        }
    }

    /// Forgets `conn`.
    pub(crate) fn remove(&mut self, conn: ConnId) {
        self.slots.remove(&conn);
    }

    /// Number of connections.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}
