//! Sans-IO state machines for the iii worker protocol and its data channels.
//!
//! `iii-core` decides everything and does nothing: it performs no IO, owns no clock,
//! spawns no threads, reads no ambient randomness and has no async code. An adapter
//! (`iii-tokio`, `iii-smol`, or your own runtime) moves WebSocket messages between
//! sockets and one of the two role machines:
//!
//! * [`engine::Engine`]: the broker. It validates upgrade requests, serves worker control
//!   connections (registration, invocation routing, triggers, built-in functions) and
//!   relays channel data from each writer to its reader under flow control.
//! * [`worker::Worker`]: the client SDK's core. It keeps a control session (announce,
//!   registrations replayed on reconnect, invocations with deadlines) and the local ends
//!   of channels (chunked writes under a send window, reads with backpressure).
//!
//! # The driving contract
//!
//! 1. Construct the machine with its config, a 32-byte seed (from the OS in production,
//!    fixed in tests) and the current time.
//! 2. Feed one input at a time: a command from the application (`invoke`, `channel_write`,
//!    ...) or an event from the network (`handle_connected`, `handle_message`,
//!    `handle_sent`, `handle_closed`) or the clock (`handle_timeout`). Every mutating call
//!    takes `now: Instant` right after `&mut self`; the adapter reads its clock once per
//!    loop iteration and passes the same value to every call in that iteration.
//!    [`Instant`] is `std::time::Instant` on native targets and `web_time::Instant` on
//!    the browser's wasm, where the standard one cannot be read.
//! 3. After each input, drain `poll_output()` until it returns `None`, executing each
//!    output in order:
//!    * `Transmit { conn, message }`: send the message on that connection. When it has
//!      been flushed to the socket, report it with `handle_sent(now, conn, 1)` (or a
//!      count for several). The machine never has more than its configured credit of
//!      messages in flight per connection, so the adapter's buffers stay bounded.
//!    * `Close { conn, code, reason }`: send a Close frame (without a status code when
//!      `code` is `None`) and drop the connection. Then report `handle_closed`.
//!    * `PauseRead { conn }` / `ResumeRead { conn }`: stop / restart reading that socket.
//!      After `PauseRead` the adapter must not deliver another message from that
//!      connection until `ResumeRead`; this is how a slow reader's pace reaches a fast
//!      writer as TCP backpressure.
//!    * `Event(..)`: something the application or the operator should know.
//!    * (worker only) `Connect { conn, target }`: open a WebSocket to that target, then
//!      report `handle_connected` or `handle_connect_failed`.
//! 4. Wait for the next input or for `poll_timeout()`, whichever comes first; at the
//!    deadline call `handle_timeout(now)`. Early or spurious calls are harmless.
//!
//! Inputs from peers never return errors: a peer's fault becomes an output (a `Close`
//! with a code) and a typed event. Commands from the local application return `Result`
//! with a [`thiserror`] enum; a command refused for lack of capacity reports how much it
//! accepted, so nothing is dropped silently.
//!
//! # Channels
//!
//! `engine::channels::create` mints a channel id and **two different keys**, one per
//! direction; a ref opens only its own end, once. The engine keeps the writer's text and
//! binary messages in one FIFO bounded in messages (`buffer_size`) and in bytes, pauses the
//! writer's socket when it is full, and releases messages to the reader under send credit.
//! Buffered data and the end of stream wait for a late reader. The reader sees a clean end
//! (Close without a code) only after the writer's clean Close; a lost writer, an expired
//! channel or an oversized message closes the reader with 1011. A channel is removed as
//! soon as both ends are done, and its refs are refused afterwards.
//!
//! All iterated collections are ordered, so the same seed and the same inputs give the
//! same outputs.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod channel;
pub mod chunk;
pub mod engine;
pub mod ids;
pub mod outbox;
pub mod timers;
pub mod upgrade;
pub mod wire;
pub mod worker;

pub use ids::{ConnId, InvocationId};
/// The time type every `now` argument takes.
///
/// On native targets this is `std::time::Instant` itself (the `web-time` crate re-exports
/// it), so adapters pass `std::time::Instant::now()` with no conversion or cost. On
/// `wasm32-unknown-unknown`, where `std::time::Instant::now()` panics, it is a type built
/// from the browser's `performance.now()` with the same API, so a browser adapter can
/// drive the same machines.
pub use web_time::Instant;
pub use wire::{CloseCode, Message, PeerClose, Text};
