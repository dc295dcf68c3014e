//! The invocation a handler is running for: its id, function, per-call metadata, trace
//! context and what the engine says about the caller, readable from inside the handler with [`Invocation::current`] (or
//! given to it by [`Iii::register_function_with_context`](super::Iii::register_function_with_context)).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use iii_core::wire::json::{CALLER_CONTEXT, CALLER_PREFIX, CALLER_WORKER_ID};
use serde_json::{Map, Value};

use super::TraceContext;

/// One invocation of a local function.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The invocation id (a UUID).
    pub invocation_id: String,
    /// The function being run.
    pub function_id: String,
    /// The caller's per-call metadata (for a trigger fire, the trigger's metadata).
    pub metadata: Option<Value>,
    /// The caller's W3C trace context. Calls made while handling this invocation carry
    /// it on (unless they set their own), and the result carries it back.
    pub trace: TraceContext,
    /// The engine's `_caller_*` keys, taken out of the input before the handler saw it
    /// (see [`Invocation::caller_worker_id`] and [`Invocation::caller_context`]).
    pub caller: CallerKeys,
}

/// The top-level `_caller_*` keys of an object input. Engines add them to the data of
/// every call (`_caller_worker_id`: the calling worker's id, on every call from a
/// worker; `_caller_context`: the caller's authentication context, on calls from an
/// RBAC listener). The worker takes every top-level key with that prefix out of the
/// input before the handler sees it, so that handlers get exactly what the caller sent
/// and typed inputs with `#[serde(deny_unknown_fields)]` accept it; the keys are kept
/// here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallerKeys(Map<String, Value>);

impl CallerKeys {
    /// Moves the top-level `_caller_*` keys of `input` (when it is an object) out into
    /// a `CallerKeys`; other inputs are left as they are.
    pub fn take_from(input: &mut Value) -> Self {
        let Value::Object(object) = input else {
            return Self::default();
        };
        if !object.keys().any(|key| key.starts_with(CALLER_PREFIX)) {
            return Self::default();
        }
        let (caller, rest) = std::mem::take(object)
            .into_iter()
            .partition(|(key, _)| key.starts_with(CALLER_PREFIX));
        *object = rest;
        Self(caller)
    }

    /// The calling worker's id (`_caller_worker_id`), if the engine gave it.
    pub fn worker_id(&self) -> Option<&str> {
        self.0.get(CALLER_WORKER_ID).and_then(Value::as_str)
    }

    /// The caller's authentication context (`_caller_context`), if the engine gave it.
    pub fn context(&self) -> Option<&Value> {
        self.0.get(CALLER_CONTEXT)
    }

    /// Any `_caller_*` key by its full name (e.g. `"_caller_worker_id"`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Every key taken out of the input, by full name.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Invocation>>> = const { RefCell::new(None) };
}

impl Invocation {
    /// The invocation whose handler is being polled on this thread, if any. Inside a
    /// function handler (its own future, not tasks it spawns) this is the call being
    /// served.
    pub fn current() -> Option<Invocation> {
        CURRENT.with(|current| current.borrow().as_deref().cloned())
    }

    /// The calling worker's id, as the engine gave it (`_caller_worker_id`); `None` for
    /// calls from the engine itself (trigger fires) and engines that do not say.
    pub fn caller_worker_id(&self) -> Option<&str> {
        self.caller.worker_id()
    }

    /// The caller's authentication context (`_caller_context`), given by the engine
    /// for calls that came in on an RBAC listener.
    pub fn caller_context(&self) -> Option<&Value> {
        self.caller.context()
    }

    /// The current invocation's trace context (empty outside a handler).
    pub(crate) fn current_trace() -> TraceContext {
        CURRENT.with(|current| {
            current
                .borrow()
                .as_ref()
                .map(|invocation| invocation.trace.clone())
                .unwrap_or_default()
        })
    }
}

/// A handler future that makes `invocation` current while it is polled.
pub(crate) struct WithInvocation<F> {
    pub(crate) invocation: Arc<Invocation>,
    pub(crate) future: F,
}

impl<F: Future + Unpin> Future for WithInvocation<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let previous = CURRENT.with(|current| current.replace(Some(this.invocation.clone())));
        let result = Pin::new(&mut this.future).poll(cx);
        CURRENT.with(|current| *current.borrow_mut() = previous);
        result
    }
}
