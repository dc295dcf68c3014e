//! What the engine asks of its adapter, and what it reports.

use crate::channel::Direction;
use crate::ids::ConnId;
use crate::wire::codes;
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
    /// Drop `conn` at once: discard what was transmitted and not yet written (the peer
    /// is not reading it), try briefly to send a Close frame with `code`, then close the
    /// socket. Report `handle_closed` afterwards, as for `Close`. Used for peers that
    /// stopped reading (slow consumers) and for connections replaced by a reattach.
    Abort {
        /// The connection.
        conn: ConnId,
        /// The status code of the Close frame, if it can still be sent.
        code: CloseCode,
        /// The reason text.
        reason: &'static str,
    },
    /// The decision on an upgrade that [`super::Engine::accept`] deferred: on `Ok`
    /// complete the handshake and drive the connection (as for
    /// [`super::Admission::Accepted`]), on `Err` answer with the rejection's status.
    /// It comes before any output for the new connection (its `workerregistered`), so
    /// a driver that opens the connection when it sees this loses nothing.
    Admitted {
        /// The ticket `accept` returned.
        ticket: super::Ticket,
        /// The decision.
        admission: Result<super::Accepted, crate::upgrade::Rejection>,
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

/// A per-worker limit of [`super::WorkerQuotas`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quota {
    /// `functions`.
    Functions,
    /// `trigger_types`.
    TriggerTypes,
    /// `bindings`.
    Bindings,
    /// `engine_bindings`.
    EngineBindings,
    /// `pending_invocations`.
    PendingInvocations,
    /// `channels`.
    Channels,
    /// `registration_bytes`.
    RegistrationBytes,
    /// `total_registration_bytes`.
    TotalRegistrationBytes,
}

impl Quota {
    /// The setting's name.
    pub fn name(self) -> &'static str {
        match self {
            Quota::Functions => "functions",
            Quota::TriggerTypes => "trigger_types",
            Quota::Bindings => "bindings",
            Quota::EngineBindings => "engine_bindings",
            Quota::PendingInvocations => "pending_invocations",
            Quota::Channels => "channels",
            Quota::RegistrationBytes => "registration_bytes",
            Quota::TotalRegistrationBytes => "total_registration_bytes",
        }
    }
}

/// Why the engine refused something a worker asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// A per-worker quota would be exceeded.
    Quota(Quota),
    /// A payload nests deeper than `max_payload_depth`.
    TooDeep,
    /// The id is reserved for the engine (`engine::…`) or empty.
    Reserved,
    /// Another live worker provides this trigger type.
    TriggerTypeOwned,
    /// Another live worker owns this function id.
    FunctionOwned,
    /// The engine's channel limit (`max_channels`) is reached.
    ChannelLimit,
    /// The listener's policy does not allow it (RBAC).
    Forbidden,
    /// A registration hook refused it, failed, or did not answer in time.
    NotApproved,
    /// The session called the engine's own functions faster than its listener's
    /// `builtin_calls_per_sec` (after its `builtin_call_burst`), or with the other
    /// workers of its client address faster than the listener's `builtin_calls_per_ip`,
    /// or (a guest) with every other guest faster than `guest_builtin_calls`; the error
    /// message names the bound.
    RateLimited,
}

impl RefusalReason {
    /// The error code sent to the worker.
    pub fn code(self) -> &'static str {
        match self {
            RefusalReason::Quota(_) => codes::QUOTA_EXCEEDED,
            RefusalReason::TooDeep => codes::PAYLOAD_TOO_DEEP,
            RefusalReason::Reserved => codes::RESERVED_ID,
            RefusalReason::TriggerTypeOwned => codes::TRIGGER_TYPE_CONFLICT,
            RefusalReason::FunctionOwned => codes::FUNCTION_NAMESPACE_CONFLICT,
            RefusalReason::ChannelLimit => codes::CHANNEL_LIMIT,
            RefusalReason::Forbidden => codes::FORBIDDEN,
            RefusalReason::NotApproved => codes::REGISTRATION_NOT_APPROVED,
            RefusalReason::RateLimited => codes::RATE_LIMITED,
        }
    }
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
        /// The client's address, when the driver gave it.
        peer: Option<std::net::IpAddr>,
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
        /// The name it announced with `engine::workers::register`, if it did.
        name: Option<String>,
        /// The client's address, when the driver gave it.
        peer: Option<std::net::IpAddr>,
    },
    /// A function was registered (or re-registered by its owner).
    FunctionRegistered {
        /// The owner's connection.
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
    /// A connection was dropped because it did not read its messages.
    SlowConsumer {
        /// The connection.
        conn: ConnId,
    },
    /// A request of a worker was refused (and answered with a typed error where the
    /// protocol has an answer).
    Refused {
        /// The connection.
        conn: ConnId,
        /// The message type (or built-in function) that was refused.
        what: &'static str,
        /// The id it named (function, trigger type, binding), when it had one.
        id: Option<String>,
        /// Why.
        reason: RefusalReason,
    },
    /// An upgrade to an RBAC listener was refused by (or for lack of) its authentication
    /// function. The reason never holds the request's credentials.
    AuthFailed {
        /// The listener.
        listener: usize,
        /// Why.
        reason: String,
    },
    /// A worker logged a line through `engine::log::*` (within its budget).
    WorkerLog {
        /// The connection.
        conn: ConnId,
        /// The worker's id.
        worker_id: String,
        /// The name it announced (empty if none).
        worker_name: String,
        /// The severity.
        level: super::LogLevel,
        /// The message, cleaned of control characters and cut to `max_worker_log_bytes`.
        message: String,
        /// Its `data` (raw JSON, cleaned and cut to what the message left of
        /// `max_worker_log_bytes`), if any.
        data: Option<String>,
        /// Its `trace_id`, if any.
        trace_id: Option<String>,
        /// Its `span_id`, if any.
        span_id: Option<String>,
        /// Its `service_name`, if any.
        service_name: Option<String>,
        /// Lines of this worker dropped over any log bound since the last one logged.
        dropped: u64,
    },
    /// Workers' `engine::log::*` lines were dropped over a bound in the last second
    /// (at most one such event a second, while lines are dropped).
    WorkerLogSuppressed {
        /// Over a worker's own `worker_log_lines_per_second`.
        per_worker: u64,
        /// Over a client address's `worker_log_lines_per_second_per_ip`.
        per_address: u64,
        /// Over the engine-wide `worker_log_lines_per_second_total`.
        engine_wide: u64,
    },
    /// An invocation routed to a worker was not answered within `invocation_timeout`;
    /// its caller got a `timeout` error.
    InvocationTimedOut {
        /// The worker that did not answer.
        conn: ConnId,
        /// The function.
        function_id: String,
    },
}
