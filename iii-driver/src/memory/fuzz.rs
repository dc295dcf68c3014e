//! The `upgrade_framing` fuzz driver: one engine connection from its HTTP upgrade head
//! through the metered WebSocket layer, against a scripted in-memory peer, with the
//! memory budget's accounting checked after every step (see FUZZING.md).
//!
//! Compiled for the fuzz target (`--cfg fuzzing`, re-exported as
//! `iii_driver::fuzzing::upgrade_framing`) and for this crate's unit tests, which replay
//! the committed inputs of `fuzz/corpus/upgrade_framing/` and
//! `fuzz/regressions/upgrade_framing/` on stable.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::{Sink, Stream};

use super::{grant_for, MemoryBudget, MemoryCut, Metered, Owner};
use crate::engine::{ws_config, EngineSettings};
use crate::handshake::{read_request, switch, HeadError, Request};

/// Bytes of configuration at the start of an input.
const CONFIG_BYTES: usize = 15;

/// The peer's side of the connection: the bytes it sends, released one chunk per step
/// (a read past the released bytes is `Pending`, so frame headers straddle reads), and
/// how many bytes of output it takes per step.
#[derive(Debug)]
struct Peer {
    chunks: VecDeque<Vec<u8>>,
    /// The released chunk the engine is reading.
    current: Vec<u8>,
    /// After the last chunk: end of stream (otherwise the peer stays silent).
    eof: bool,
    /// Output bytes the peer takes per step (0: a peer that does not read).
    drain: usize,
    /// Output bytes the socket can take now.
    room: usize,
}

impl Peer {
    /// The next step: the peer releases its next chunk and reads some output. `false`
    /// once nothing can change any more.
    fn step(&mut self) -> bool {
        self.room = self.room.saturating_add(self.drain);
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.current.extend_from_slice(&chunk);
                true
            }
            None => false,
        }
    }
}

impl AsyncRead for Peer {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.current.is_empty() {
            if this.chunks.is_empty() && this.eof {
                return Poll::Ready(Ok(0));
            }
            return Poll::Pending;
        }
        let n = buf.len().min(this.current.len());
        buf[..n].copy_from_slice(&this.current[..n]);
        this.current.drain(..n);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Peer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.room == 0 {
            return Poll::Pending;
        }
        let n = buf.len().min(this.room);
        this.room -= n;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The engine's end of the peer's socket (the driver steps the peer through another
/// handle while the engine's futures hold this one).
#[derive(Debug, Clone)]
struct PeerHandle(Rc<RefCell<Peer>>);

impl AsyncRead for PeerHandle {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerHandle {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

/// Reads the input from its start; missing bytes read as zero.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
}

/// A small deterministic generator for the chunk sizes (xorshift32).
fn next_random(state: &mut u32) -> u32 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x
}

/// The connection's limits and the engine's behaviour, from the input.
struct Setup {
    budget: Arc<MemoryBudget>,
    settings: EngineSettings,
    max_message: usize,
    unsent_cap: usize,
    /// The engine answers every data message with one as long (as a busy worker would
    /// cause), so output piles up for a peer that does not read.
    echo: bool,
    /// Bytes read past the request head.
    leftover: std::cell::Cell<usize>,
}

/// The most one connection may be charged: a whole message (one byte over the limit
/// reaches the WebSocket layer's check), plus what one read can bring past it (the
/// WebSocket layer reads up to its buffer's capacity, which starts as large as the bytes
/// read past the request head), a frame header and a control frame in progress, the
/// read buffer its largest frame left behind (a frame is at most a message), plus its
/// unsent output.
fn connection_cap(setup: &Setup, leftover: usize) -> usize {
    setup
        .max_message
        .saturating_add(1)
        .saturating_mul(2)
        .saturating_add(setup.settings.read_buffer_bytes.max(leftover))
        .saturating_add(14 + 14 + 125)
        .saturating_add(setup.unsent_cap)
}

/// Runs one input (see FUZZING.md for the layout); panics when a property fails.
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub fn upgrade_framing(data: &[u8]) {
    let mut input = Bytes(data);
    let limit = 4096 + usize::from(input.u16()) * 4;
    let max_message = 1 + usize::from(input.u16());
    let control_queue = 1 + usize::from(input.u16());
    let mut settings = EngineSettings {
        write_buffer_bytes: usize::from(input.u8()) * 64,
        read_buffer_bytes: 64 + usize::from(input.u8()) * 64,
        ..EngineSettings::default()
    };
    settings.core.max_control_queue_bytes = control_queue;
    let drain = usize::from(input.u8()) * 16;
    let max_chunk = 1 + usize::from(input.u8()) * 8;
    let flags = input.u8();
    let mut seed = u32::from(input.u16()) | 1;
    let head_len = usize::from(input.u16());
    let rest = data.get(CONFIG_BYTES..).unwrap_or_default();
    let unsent_cap = settings.unsent_cap(max_message);
    let setup = Setup {
        budget: Arc::new(MemoryBudget::new(limit)),
        settings,
        max_message,
        unsent_cap,
        echo: flags & 2 != 0,
        leftover: std::cell::Cell::new(0),
    };

    // The head is split at `head_len`, the rest in chunks of 1..=max_chunk bytes.
    let mut chunks = VecDeque::new();
    let (head, body) = rest.split_at(head_len.min(rest.len()));
    for part in [head, body] {
        let mut part = part;
        while !part.is_empty() {
            let size = 1 + next_random(&mut seed) as usize % max_chunk;
            let (chunk, tail) = part.split_at(size.min(part.len()));
            chunks.push_back(chunk.to_vec());
            part = tail;
        }
    }
    let peer = Rc::new(RefCell::new(Peer {
        chunks,
        current: Vec::new(),
        eof: flags & 1 != 0,
        drain,
        room: 0,
    }));
    run(&setup, &peer);
    assert_eq!(setup.budget.snapshot().used, 0, "everything given back");
}

fn run(setup: &Setup, peer: &Rc<RefCell<Peer>>) {
    let mut cx = Context::from_waker(Waker::noop());
    // The head: read_request must never panic; a refusal ends the exchange.
    let mut socket = PeerHandle(peer.clone());
    let request = {
        let mut reading = pin!(read_request(&mut socket, setup.settings.max_request_head));
        loop {
            if let Poll::Ready(out) = reading.as_mut().poll(&mut cx) {
                break out;
            }
            if !peer.borrow_mut().step() {
                return;
            }
        }
    };
    let request = match request {
        Ok(Request::Upgrade(request)) => request,
        Ok(Request::Plain(_))
        | Err(HeadError::Io(_) | HeadError::Closed | HeadError::Refuse(_)) => return,
    };
    // The 101 goes into the socket's buffer (a peer that sent a request takes it).
    peer.borrow_mut().room = 1024;
    let switched = pin!(switch(&mut socket, &request)).poll(&mut cx);
    assert!(
        matches!(switched, Poll::Ready(Ok(()))),
        "the 101 is written"
    );
    peer.borrow_mut().room = 0;
    setup.leftover.set(request.leftover.len());
    let metered = match Metered::new(
        socket,
        setup.budget.clone(),
        Owner::default(),
        setup.unsent_cap,
        &request.leftover,
    ) {
        Ok(metered) => metered,
        Err(error) => {
            let cut = MemoryCut::of(&error);
            assert_eq!(
                cut,
                Some(MemoryCut::Budget),
                "Metered::new fails only on the budget"
            );
            let held = request.leftover.len();
            assert!(held > ceiling(setup, 0, held), "refused a grantable charge");
            return;
        }
    };
    check(setup, &metered, None);
    let config = ws_config(&setup.settings, setup.unsent_cap, setup.max_message);
    let opening = pin!(WebSocketStream::from_partially_read(
        metered,
        request.leftover,
        Role::Server,
        Some(config),
    ))
    .poll(&mut cx);
    let Poll::Ready(mut ws) = opening else {
        unreachable!("from_partially_read does no I/O");
    };
    frames(setup, peer, &mut ws);
}

/// The WebSocket part: messages are read until the stream ends, fails or the peer has
/// nothing more; pongs are queued by the WebSocket layer, and echoes by the engine.
fn frames(setup: &Setup, peer: &Rc<RefCell<Peer>>, ws: &mut WebSocketStream<Metered<PeerHandle>>) {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let mut progressed = false;
        loop {
            let next = Pin::new(&mut *ws).poll_next(&mut cx);
            if let Poll::Ready(Some(Err(error))) = &next {
                check(setup, ws.get_ref(), Some(error));
                return;
            }
            check(setup, ws.get_ref(), None);
            let message = match next {
                Poll::Pending => break,
                Poll::Ready(None) | Poll::Ready(Some(Err(_))) => return,
                Poll::Ready(Some(Ok(message))) => message,
            };
            progressed = true;
            let len = match &message {
                Message::Text(text) => text.len(),
                Message::Binary(bytes) => bytes.len(),
                _ => continue,
            };
            if setup.echo {
                if let Err(error) = send(ws, &mut cx, Message::Binary(vec![b'e'; len].into())) {
                    check(setup, ws.get_ref(), Some(&error));
                    return;
                }
            }
        }
        // The engine's writer flushes what it queued.
        if let Poll::Ready(Err(error)) = Pin::new(&mut *ws).poll_flush(&mut cx) {
            check(setup, ws.get_ref(), Some(&error));
            return;
        }
        check(setup, ws.get_ref(), None);
        if !peer.borrow_mut().step() && !progressed {
            return;
        }
    }
}

/// Feeds `message` as the connection's writer does (ready, send, one flush attempt).
fn send(
    ws: &mut WebSocketStream<Metered<PeerHandle>>,
    cx: &mut Context<'_>,
    message: Message,
) -> Result<(), WsError> {
    match Pin::new(&mut *ws).poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(error)) => return Err(error),
        // The writer would wait here; the message is not sent.
        Poll::Pending => return Ok(()),
    }
    Pin::new(&mut *ws).start_send(message)?;
    match Pin::new(&mut *ws).poll_flush(cx) {
        Poll::Ready(Err(error)) => Err(error),
        _ => Ok(()),
    }
}

/// What the budget lets a connection that will hold `held` bytes reach, given `others`
/// held by the other connections (none here).
fn ceiling(setup: &Setup, others: usize, held: usize) -> usize {
    setup.budget.policy().ceiling(held).saturating_sub(others)
}

/// The properties after every step; `error` is how the step ended, if it failed.
fn check(setup: &Setup, metered: &Metered<PeerHandle>, error: Option<&WsError>) {
    let memory = setup.budget.snapshot();
    assert!(
        memory.used <= memory.limit,
        "used {} over the limit {}",
        memory.used,
        memory.limit
    );
    assert_eq!(
        memory.used, metered.charged,
        "one connection: used is its charge"
    );
    let cap = connection_cap(setup, setup.leftover.get());
    let held = metered.frames.held().saturating_add(metered.unsent);
    assert!(held <= cap, "holds {held}, over the connection's cap {cap}");
    assert!(
        metered.charged <= grant_for(cap),
        "charged {} over the grant of the connection's cap {cap}",
        metered.charged
    );
    let cut = match error {
        Some(WsError::Io(error)) => MemoryCut::of(error),
        _ => None,
    };
    match cut {
        Some(MemoryCut::Budget) => {
            assert_eq!(
                metered.charged, 0,
                "a refused connection gives its charge back"
            );
            assert!(
                held > ceiling(setup, 0, held),
                "growth to {held} refused under the ceiling {}",
                ceiling(setup, 0, held)
            );
            assert_eq!(memory.refused, 1);
        }
        Some(MemoryCut::Largest) => unreachable!("the only connection cut as the largest"),
        Some(MemoryCut::SlowConsumer) => {
            assert!(metered.slow);
            assert!(
                metered.unsent > metered.unsent_cap
                    || (metered.stalled && metered.frames.pings > metered.pong_room),
                "a slow-consumer cut of a connection within its caps"
            );
        }
        None => {
            assert_eq!(memory.refused, 0, "a refusal that did not cut");
            if !metered.slow && metered.cut.is_none() {
                // Charged in grants: never less than held, nothing for nothing, and
                // lowered once held falls to half the grant.
                assert!(
                    held <= metered.charged,
                    "held {held} over the charge {}",
                    metered.charged
                );
                assert_eq!(
                    held == 0,
                    metered.charged == 0,
                    "held {held}, charged {}",
                    metered.charged
                );
                assert!(
                    held == 0 || metered.charged < grant_for(held).saturating_mul(2),
                    "charged {} for {held} held",
                    metered.charged
                );
            }
        }
    }
}
