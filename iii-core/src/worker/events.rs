//! What the worker asks of its adapter ([`WorkerOutput`]) and tells its application
//! ([`WorkerEvent`]), plus the specs of what it registers.

use crate::Instant;
use std::fmt;

use bytes::Bytes;

use crate::channel::ChannelRef;
use crate::ids::{ConnId, InvocationId};
use crate::wire::{CloseCode, ErrorBody, Message, Payload, Text};

/// Handle of a local channel end, allocated from a counter and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndId(pub u64);

impl fmt::Display for EndId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "end#{}", self.0)
    }
}

/// Where a [`WorkerOutput::Connect`] should dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTarget {
    /// The engine's control endpoint (`/`).
    Control,
    /// A channel end; build the URL with [`channel_url`](crate::channel::channel_url).
    Channel(ChannelRef),
}

/// An instruction for the adapter, drained with [`Worker::poll_output`](super::Worker::poll_output).
#[derive(Debug, Clone)]
pub enum WorkerOutput {
    /// Open a WebSocket, then report `handle_connected` or `handle_connect_failed`.
    Connect {
        /// The handle of the new connection.
        conn: ConnId,
        /// What to dial.
        target: ConnectTarget,
    },
    /// Send one message; report `handle_sent` once it is flushed.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: Message,
    },
    /// Send a Close frame (or abandon a connect still in progress) and drop the
    /// connection. Nothing more is emitted for `conn` afterwards.
    Close {
        /// The connection.
        conn: ConnId,
        /// The status code; `None` means a Close frame without a status.
        code: Option<CloseCode>,
        /// The reason text.
        reason: &'static str,
    },
    /// Stop reading the connection until `ResumeRead`.
    PauseRead {
        /// The connection.
        conn: ConnId,
    },
    /// Read the connection again.
    ResumeRead {
        /// The connection.
        conn: ConnId,
    },
    /// Something for the application.
    Event(WorkerEvent),
}

/// Something the application should know.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// The engine sent `workerregistered` on the control connection.
    Registered {
        /// The id of this connection at the engine.
        worker_id: String,
    },
    /// The control connection was lost (or shut down).
    Disconnected {
        /// When the next connect is attempted; `None` once the worker has stopped.
        reconnect_at: Option<Instant>,
    },
    /// The engine sent `registrationrejected`.
    Rejected {
        /// What the engine said.
        rejection: Rejection,
        /// True for a worker conflict or an unknown code: every pending call failed
        /// with [`CallOutcome::Rejected`] and the worker stopped (no reconnect).
        fatal: bool,
    },
    /// The engine asks a locally registered function to run; answer with
    /// [`Worker::complete`](super::Worker::complete).
    Invoked {
        /// The id to complete.
        invocation_id: InvocationId,
        /// The function to run.
        function_id: String,
        /// The input.
        data: Payload,
        /// Per-call metadata.
        metadata: Option<Payload>,
        /// W3C trace context.
        traceparent: Option<String>,
        /// W3C baggage.
        baggage: Option<String>,
    },
    /// A call made with `invoke` (or `create_channel`) finished; exactly once per call.
    CallCompleted {
        /// The call's id.
        invocation_id: InvocationId,
        /// How it finished.
        outcome: CallOutcome,
        /// The trace context the result carried back.
        trace: TraceContext,
    },
    /// A registration barrier finished (see [`Worker::sync`](super::Worker::sync)).
    Synced {
        /// The barrier.
        id: super::SyncId,
        /// How it finished.
        outcome: super::SyncOutcome,
    },
    /// No connection of this worker was registered for `connect_timeout` (or the
    /// adapter reported a definitive refusal:
    /// [`Worker::engine_refused`](super::Worker::engine_refused)): queued calls failed
    /// with [`CallOutcome::Unreachable`]. The worker keeps reconnecting.
    Unreachable,
    /// The engine asks this provider to bind a trigger of a locally registered type;
    /// answer with [`Worker::trigger_registration_result`](super::Worker::trigger_registration_result).
    TriggerRequested {
        /// The binding id.
        id: String,
        /// The trigger type.
        trigger_type: String,
        /// The function the trigger fires.
        function_id: String,
        /// Type-specific configuration.
        config: Payload,
        /// Delivered with every fire.
        metadata: Option<Payload>,
    },
    /// The engine asks this provider to drop a binding.
    TriggerRemoved {
        /// The binding id.
        id: String,
        /// The trigger type, when the engine sent it.
        trigger_type: Option<String>,
    },
    /// A trigger this worker registered was refused.
    TriggerFailed {
        /// The binding id.
        id: String,
        /// The trigger type.
        trigger_type: String,
        /// The bound function.
        function_id: String,
        /// Why.
        error: ErrorBody,
    },
    /// A binary message arrived at a reader end; report it with `channel_consumed`.
    ChannelData {
        /// The end.
        end: EndId,
        /// The bytes.
        data: Bytes,
    },
    /// A text message arrived at a reader end; report it with `channel_consumed`.
    ChannelText {
        /// The end.
        end: EndId,
        /// The text.
        text: Text,
    },
    /// A writer end has window space again after a refused or partial write.
    ChannelWritable {
        /// The end.
        end: EndId,
    },
    /// A channel end is over; nothing more happens on it.
    ChannelEnded {
        /// The end.
        end: EndId,
        /// How it ended.
        outcome: EndOutcome,
    },
    /// The engine sent a control frame that could not be decoded; it was ignored.
    ProtocolViolation {
        /// What was wrong.
        detail: String,
    },
}

/// How an outgoing call finished.
#[derive(Debug, Clone)]
pub enum CallOutcome {
    /// The function returned, with a result unless it was absent or `null`.
    Ok(Option<Payload>),
    /// The function (or the engine) reported an error, e.g. `function_not_found` or
    /// `invocation_stopped`.
    Error(ErrorBody),
    /// No result arrived before the deadline; a late result is ignored.
    TimedOut,
    /// The control connection was lost after the call was sent, or the worker shut down.
    Disconnected,
    /// The engine fatally rejected this worker.
    Rejected,
    /// The engine could not be reached within `connect_timeout`; the call was not sent.
    Unreachable,
}

/// What the engine said in a `registrationrejected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `WORKER_NAMESPACE_CONFLICT`, `FUNCTION_NAMESPACE_CONFLICT`, or another code.
    pub code: String,
    /// The namespace of the conflict.
    pub namespace: String,
    /// The worker name, for worker conflicts.
    pub worker_name: Option<String>,
    /// The function id, for function conflicts.
    pub function_id: Option<String>,
    /// The worker that holds the name or function (empty for reserved ids).
    pub owner_worker_id: String,
}

/// W3C trace context carried by a call or its result (`traceparent`, `baggage`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// W3C `traceparent`.
    pub traceparent: Option<String>,
    /// W3C `baggage`.
    pub baggage: Option<String>,
}

/// How a channel end finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// The engine sent a Close frame without a code or with 1000 (end of stream).
    Clean,
    /// The engine closed with another code.
    Aborted {
        /// The code.
        code: Option<CloseCode>,
        /// The reason text.
        reason: String,
    },
    /// The connection ended without a Close frame.
    Lost,
    /// The connection could not be opened (for example 404 for a used or unknown ref).
    Refused {
        /// The HTTP status of the refused upgrade, if there was one.
        status: Option<u16>,
    },
    /// This worker closed or aborted the end itself (or shut down).
    Closed,
}

/// A function this worker serves (`registerfunction`).
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The function id, e.g. `math::add`; must not be empty.
    pub id: String,
    /// Free text.
    pub description: Option<String>,
    /// Schema of the input.
    pub request_format: Option<Payload>,
    /// Schema of the output.
    pub response_format: Option<Payload>,
    /// Free metadata.
    pub metadata: Option<Payload>,
}

/// A trigger type this worker provides (`registertriggertype`).
#[derive(Debug, Clone)]
pub struct TriggerTypeSpec {
    /// The trigger type id; must not be empty.
    pub id: String,
    /// Free text (always sent).
    pub description: String,
    /// Schema of a trigger's config.
    pub trigger_request_format: Option<Payload>,
    /// Schema of the payload a fire delivers.
    pub call_request_format: Option<Payload>,
}

/// A trigger binding this worker asks for (`registertrigger`).
#[derive(Debug, Clone)]
pub struct TriggerSpec {
    /// The trigger type; must not be empty.
    pub trigger_type: String,
    /// The function to fire; must not be empty.
    pub function_id: String,
    /// Type-specific configuration (always sent, `null` included).
    pub config: Payload,
    /// Delivered with every fire.
    pub metadata: Option<Payload>,
}
