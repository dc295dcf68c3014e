//! One simulated WebSocket: two ordered pipes with latency, a rate, a socket window,
//! reader pause and stall switches.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use iii_core::{ConnId, Message, PeerClose};

/// What travels on a pipe.
#[derive(Debug, Clone)]
pub enum Item {
    /// A data or control message.
    Msg(Message),
    /// The sender's Close frame.
    Close(PeerClose),
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::Msg(message) => message.len(),
            Item::Close(_) => 0,
        }
    }
}

/// Shape of one direction of a link.
#[derive(Debug, Clone, Copy)]
pub struct PipeShape {
    /// One-way latency.
    pub latency: Duration,
    /// Bytes per second the pipe carries; `None` is unlimited.
    pub rate: Option<u64>,
    /// Bytes the pipe (the sender's and receiver's socket buffers) holds before the
    /// sender's writes stop completing.
    pub window: usize,
}

impl Default for PipeShape {
    fn default() -> Self {
        Self {
            latency: Duration::from_micros(100),
            rate: None,
            window: 256 * 1024,
        }
    }
}

/// One direction of a link.
#[derive(Debug)]
pub struct Pipe {
    /// The shape.
    pub shape: PipeShape,
    /// Written by the sender, not yet accepted into the socket buffers.
    waiting: VecDeque<Item>,
    /// Accepted (the sender was told they were sent), with the time each can be read.
    flight: VecDeque<(Instant, Item)>,
    flight_bytes: usize,
    tx_free_at: Option<Instant>,
    /// The receiver stopped reading (PauseRead).
    pub paused: bool,
    /// A fault: nothing is delivered until cleared.
    pub stalled: bool,
}

impl Pipe {
    /// An empty pipe.
    pub fn new(shape: PipeShape) -> Self {
        Self {
            shape,
            waiting: VecDeque::new(),
            flight: VecDeque::new(),
            flight_bytes: 0,
            tx_free_at: None,
            paused: false,
            stalled: false,
        }
    }

    /// The sender wrote `item`.
    pub fn push(&mut self, item: Item) {
        self.waiting.push_back(item);
    }

    /// Moves what fits into flight; returns how many messages count as sent.
    pub fn accept(&mut self, now: Instant) -> usize {
        let mut sent = 0;
        while let Some(front) = self.waiting.front() {
            let len = front.len();
            if self.flight_bytes > 0 && self.flight_bytes + len > self.shape.window {
                break;
            }
            let Some(item) = self.waiting.pop_front() else {
                break;
            };
            let start = self.tx_free_at.map_or(now, |t| t.max(now));
            let tx = match self.shape.rate {
                Some(rate) if rate > 0 => {
                    Duration::from_nanos((len as u128 * 1_000_000_000 / rate as u128) as u64)
                }
                _ => Duration::ZERO,
            };
            self.tx_free_at = Some(start + tx);
            let ready = start + tx + self.shape.latency;
            if matches!(item, Item::Msg(_)) {
                sent += 1;
            }
            self.flight_bytes += len;
            self.flight.push_back((ready, item));
        }
        sent
    }

    /// When the next item can be delivered, if the receiver is reading.
    pub fn next_ready(&self) -> Option<Instant> {
        if self.paused || self.stalled {
            return None;
        }
        self.flight.front().map(|(at, _)| *at)
    }

    /// Takes the next item if it is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<Item> {
        if self.next_ready()? > now {
            return None;
        }
        let (_, item) = self.flight.pop_front()?;
        self.flight_bytes -= item.len();
        Some(item)
    }

    /// The sender abandons what it wrote and the socket has not accepted (an aborted
    /// connection).
    pub fn abandon_waiting(&mut self) {
        self.waiting.clear();
    }

    /// Bytes written but not yet read (waiting plus in flight).
    pub fn unread_bytes(&self) -> usize {
        self.flight_bytes + self.waiting.iter().map(Item::len).sum::<usize>()
    }

    /// True when nothing is waiting or in flight.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.flight.is_empty()
    }
}

/// A simulated connection between worker `worker`'s `worker_conn` and the engine's
/// `engine_conn`.
#[derive(Debug)]
pub struct Link {
    /// Index of the worker.
    pub worker: usize,
    /// The worker's handle.
    pub worker_conn: ConnId,
    /// The engine's handle.
    pub engine_conn: ConnId,
    /// Worker → engine.
    pub up: Pipe,
    /// Engine → worker.
    pub down: Pipe,
    /// The worker side has been told the connection ended (or ended it).
    pub worker_done: bool,
    /// The engine side has been told the connection ended (or ended it).
    pub engine_done: bool,
}

impl Link {
    /// True when both sides are done and nothing is left to deliver.
    pub fn is_dead(&self) -> bool {
        self.worker_done && self.engine_done
    }
}
