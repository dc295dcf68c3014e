//! What the engine asks of its adapter, and what it reports.

use crate::channel::Direction;
use crate::ids::ConnId;
use crate::wire::{CloseCode, DecodeError, Message};

/// One thing for the adapter to do; see the driving contract in the crate docs.
#[derive(Debug)]
pub enum EngineOutput {
    /// Send `message` on `conn`; report it with `handle_sent` once flushed.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: Message,
    },
    /// Send a Close frame (without a status code when `code` is `None`) and drop `conn`.
    Close {
        /// The connection.
        conn: ConnId,
        /// The status code.
        code: Option<CloseCode>,
        /// The reason text.
        reason: &'static str,
    },
    /// Stop reading from `conn` until `ResumeRead`.
    PauseRead {
        /// The connection.
        conn: ConnId,
    },
    /// Read from `conn` again.
    ResumeRead {
        /// The connection.
        conn: ConnId,
    },
    /// Something worth logging or counting.
    Event(EngineEvent),
}

/// How a channel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOutcome {
    /// The writer closed cleanly and the reader received everything.
    Completed,
    /// The writer's connection was lost or closed with an error code.
    WriterLost,
    /// The reader went away first.
    ReaderGone,
    /// The writer sent a message over the size limit.
    Oversized,
    /// An end never attached within the attach timeout.
    Expired,
    /// The engine shut down.
    Shutdown,
}

/// Counters of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelStats {
    /// Messages accepted from the writer.
    pub frames_in: u64,
    /// Payload bytes accepted from the writer.
    pub bytes_in: u64,
    /// Messages handed to the reader's connection.
    pub frames_out: u64,
    /// Time the writer's socket spent paused, in milliseconds.
    pub blocked_ms: u64,
}

/// A protocol fault of a peer; the message is dropped and the connection kept unless
/// stated otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A control message that could not be decoded.
    Undecodable(DecodeError),
    /// A message only the engine may send (`workerregistered`, `registrationrejected`).
    WrongDirection(&'static str),
    /// An `invocationresult` for an invocation this connection does not serve.
    UnknownResult,
    /// A `triggerregistrationresult` from a connection that does not provide that type.
    UnexpectedTriggerResult,
    /// A `reattach` with an unknown worker id or a wrong token.
    BadReattach,
    /// A text frame that is not UTF-8 (the connection is closed with 1007 by the
    /// WebSocket layer; reported here if it reaches the core).
    NotUtf8,
}

/// Something that happened inside the engine.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// A worker's control connection was accepted.
    WorkerConnected {
        /// The connection.
        conn: ConnId,
        /// The worker id sent in `workerregistered`.
        worker_id: String,
    },
    /// A worker announced itself with `engine::workers::register`.
    WorkerAnnounced {
        /// The connection.
        conn: ConnId,
        /// The announced name.
        name: String,
        /// The announced runtime.
        runtime: String,
    },
    /// A worker's control connection ended.
    WorkerDisconnected {
        /// The connection.
        conn: ConnId,
        /// Its worker id.
        worker_id: String,
    },
    /// A function was registered (or re-registered by its owner).
    FunctionRegistered {
        /// The owner's connection.
        conn: ConnId,
        /// The function id.
        function_id: String,
    },
    /// A registration was refused with `registrationrejected`.
    RegistrationRejected {
        /// The connection.
        conn: ConnId,
        /// The function id.
        function_id: String,
    },
    /// A channel was created.
    ChannelCreated {
        /// The channel id.
        channel_id: String,
        /// The creating worker, if the call came from one.
        owner: Option<String>,
    },
    /// An end of a channel attached.
    ChannelAttached {
        /// The channel id.
        channel_id: String,
        /// The end.
        direction: Direction,
        /// The end's connection.
        conn: ConnId,
    },
    /// A channel was removed.
    ChannelRemoved {
        /// The channel id.
        channel_id: String,
        /// Why.
        outcome: ChannelOutcome,
        /// Its counters.
        stats: ChannelStats,
    },
    /// A peer broke the protocol.
    ProtocolViolation {
        /// The connection.
        conn: ConnId,
        /// What was wrong.
        violation: Violation,
    },
    /// A well-formed control message of a type this engine does not know was ignored.
    MessageIgnored {
        /// The connection.
        conn: ConnId,
        /// The message type.
        kind: String,
    },
    /// A connection was closed because it did not read its messages.
    SlowConsumer {
        /// The connection.
        conn: ConnId,
    },
}
