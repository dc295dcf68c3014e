//! Errors returned by the worker's commands, one enum per command family.

use super::events::EndId;
use crate::ids::InvocationId;

/// Why a registration command (functions, trigger types, triggers) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// A required id field (`id`, `trigger_type` or `function_id`) is empty.
    #[error("`{0}` must not be empty")]
    EmptyField(&'static str),
    /// Something with this id is already registered.
    #[error("`{0}` is already registered")]
    Duplicate(String),
    /// Nothing with this id is registered.
    #[error("`{0}` is not registered")]
    NotFound(String),
    /// The worker was shut down or fatally rejected by the engine.
    #[error("the worker has stopped")]
    Stopped,
}

/// Why a call could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The function id is empty.
    #[error("the function id is empty")]
    EmptyFunctionId,
    /// The queue of control messages waiting for the connection or for credit would
    /// exceed `max_offline_queue_bytes`.
    #[error(
        "{queued} bytes are already queued; a message of {size} bytes exceeds the limit of {limit}"
    )]
    QueueFull {
        /// Bytes already queued.
        queued: usize,
        /// Size of the refused message.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The worker was shut down or fatally rejected by the engine.
    #[error("the worker has stopped")]
    Stopped,
    /// The engine has not been reachable for `connect_timeout`; the worker keeps trying.
    #[error("the engine is unreachable")]
    Unreachable,
}

/// Why a reply to the engine (`complete`, `trigger_registration_result`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompleteError {
    /// No invocation with this id is waiting for a result: it was already completed,
    /// never received, or dropped when the control connection was lost.
    #[error("no invocation {0} is waiting for a result")]
    UnknownInvocation(InvocationId),
    /// No trigger request with this id is waiting for a result.
    #[error("no trigger request `{0}` is waiting for a result")]
    UnknownTrigger(String),
}

/// Why a writer operation was refused. The messages are for the application's user and
/// name no internal id (the variants keep it, for `Debug`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// No end with this id exists (never opened, or released).
    #[error("the channel writer is not open (released or never opened)")]
    UnknownEnd(EndId),
    /// The end is a reader.
    #[error("this channel end is a reader, not a writer")]
    NotWriter(EndId),
    /// The end is over (closed, aborted, refused or lost): nothing more can be written.
    #[error("the channel writer has ended (closed, aborted, refused or lost)")]
    Ended(EndId),
    /// `channel_close` was already called: the end is flushing before its Close.
    #[error("the channel writer is closing")]
    Closing(EndId),
    /// The write window is full; retry after `ChannelWritable`.
    #[error("the channel writer is blocked: its write window is full")]
    Blocked(EndId),
    /// The worker was shut down.
    #[error("the worker has stopped")]
    Stopped,
}

/// Why a reader operation was refused (messages without internal ids, as for
/// [`WriteError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No end with this id exists (never opened, or released).
    #[error("the channel reader is not open (released or never opened)")]
    UnknownEnd(EndId),
    /// The end is a writer.
    #[error("this channel end is a writer, not a reader")]
    NotReader(EndId),
    /// The end is over: it cannot start reading any more.
    #[error("the channel reader has ended")]
    Ended(EndId),
    /// The worker was shut down.
    #[error("the worker has stopped")]
    Stopped,
}
