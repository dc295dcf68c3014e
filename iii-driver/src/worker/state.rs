//! The connection state as the handles see it: the value now and a stream of changes.

use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures_core::Stream;
use futures_util::StreamExt;
use iii_core::worker::ConnectionState;

/// The state published by the worker task.
#[derive(Debug)]
pub(crate) struct StateCell {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: ConnectionState,
    subscribers: Vec<UnboundedSender<ConnectionState>>,
}

impl Default for StateCell {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: ConnectionState::Connecting,
                subscribers: Vec::new(),
            }),
        }
    }
}

impl StateCell {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self) -> ConnectionState {
        self.lock().state
    }

    /// (task) Publishes `state` if it changed; subscribers hear of it, and the streams
    /// end after `Stopped`.
    pub(crate) fn set(&self, state: ConnectionState) {
        let mut inner = self.lock();
        if inner.state == state {
            return;
        }
        inner.state = state;
        inner
            .subscribers
            .retain(|subscriber| subscriber.unbounded_send(state).is_ok());
        if state == ConnectionState::Stopped {
            inner.subscribers.clear();
        }
    }

    pub(crate) fn subscribe(&self) -> ConnectionStates {
        let (tx, rx) = futures_channel::mpsc::unbounded();
        let mut inner = self.lock();
        let _ = tx.unbounded_send(inner.state);
        if inner.state != ConnectionState::Stopped {
            inner.subscribers.push(tx);
        }
        ConnectionStates { rx }
    }
}

/// The connection state now, then every change (from
/// [`Iii::connection_states`](super::Iii::connection_states)); it ends after
/// [`ConnectionState::Stopped`]. States a slow reader missed are not dropped.
#[derive(Debug)]
pub struct ConnectionStates {
    rx: UnboundedReceiver<ConnectionState>,
}

impl Stream for ConnectionStates {
    type Item = ConnectionState;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_next_unpin(cx)
    }
}
