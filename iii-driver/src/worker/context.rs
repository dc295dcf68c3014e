//! The invocation a handler is running for: its id, function, per-call metadata and
//! trace context, readable from inside the handler with [`Invocation::current`] (or
//! given to it by [`Iii::register_function_with_context`](super::Iii::register_function_with_context)).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::Value;

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
