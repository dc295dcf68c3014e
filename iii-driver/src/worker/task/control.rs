//! The control connection, read and written by the worker task itself.
//!
//! Channel ends run on their own pump tasks (they stream and need no low latency), but
//! every call crosses the control connection twice; going through a pump would add a
//! task hop in each direction on both the caller and the callee. Here the task feeds
//! what the core transmits straight into the socket and reads the socket in its own
//! poll loop, so a call costs no hop at the callee and none between the caller's task
//! and its socket.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use async_tungstenite::WebSocketStream;
use futures_util::{Sink, StreamExt};
use iii_core::{CloseCode, ConnId, Message, PeerClose};

use crate::conn::{to_core, to_ws};
use crate::runtime::Runtime;
use crate::worker::dial::Socket;

/// What the control connection has for the task.
pub(super) enum ControlEvent {
    /// A message from the engine.
    Message(Message),
    /// This many transmitted messages were flushed to the socket.
    Sent(usize),
    /// The connection is over: the peer's end, or the end of our own close.
    Closed(PeerClose),
}

/// The open control connection.
pub(super) struct ControlSocket<R: Runtime> {
    pub(super) conn: ConnId,
    ws: WebSocketStream<Socket<R>>,
    /// Messages not handed to the WebSocket yet.
    queue: VecDeque<WsMessage>,
    /// Messages handed to the WebSocket and not flushed yet.
    unflushed: usize,
    /// We sent (or queued) a Close: once it is flushed, the connection is over.
    pub(super) closing: bool,
}

impl<R: Runtime> ControlSocket<R> {
    pub(super) fn new(conn: ConnId, ws: WebSocketStream<Socket<R>>) -> Self {
        Self {
            conn,
            ws,
            queue: VecDeque::new(),
            unflushed: 0,
            closing: false,
        }
    }

    /// Queues a message; it goes out on the next poll.
    pub(super) fn transmit(&mut self, message: Message) {
        if !self.closing {
            self.queue.push_back(to_ws(message));
        }
    }

    /// Queues a Close after what is queued.
    pub(super) fn close(&mut self, code: Option<CloseCode>, reason: &'static str) {
        if self.closing {
            return;
        }
        let frame = code.map(|code| CloseFrame {
            code: WsCloseCode::from(code.0),
            reason: reason.into(),
        });
        self.queue.push_back(WsMessage::Close(frame));
        self.closing = true;
    }

    /// Hands what is queued to the WebSocket (its write buffer; the socket is written
    /// when that fills or at [`poll_flush`](Self::poll_flush)). `Ready` only when the
    /// connection failed.
    pub(super) fn poll_feed(&mut self, cx: &mut Context<'_>) -> Poll<ControlEvent> {
        let mut ws = std::pin::Pin::new(&mut self.ws);
        while !self.queue.is_empty() {
            match ws.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(ControlEvent::Closed(PeerClose::Lost)),
                Poll::Pending => break,
            }
            let Some(message) = self.queue.pop_front() else {
                break;
            };
            let counted = !matches!(message, WsMessage::Close(_));
            if ws.as_mut().start_send(message).is_err() {
                return Poll::Ready(ControlEvent::Closed(PeerClose::Lost));
            }
            if counted {
                self.unflushed += 1;
            }
        }
        Poll::Pending
    }

    /// Flushes what was fed: `Sent` once it is on the socket; the end of our close.
    /// Called when nothing else is ready, so that one flush covers a whole batch.
    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<ControlEvent> {
        if let Poll::Ready(event) = self.poll_feed(cx) {
            return Poll::Ready(event);
        }
        match std::pin::Pin::new(&mut self.ws).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                if self.unflushed > 0 {
                    return Poll::Ready(ControlEvent::Sent(std::mem::take(&mut self.unflushed)));
                }
                if self.closing && self.queue.is_empty() {
                    // Our Close is out; the engine's reply is not waited for.
                    return Poll::Ready(ControlEvent::Closed(PeerClose::Lost));
                }
                Poll::Pending
            }
            Poll::Ready(Err(_)) => Poll::Ready(ControlEvent::Closed(PeerClose::Lost)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The next message from the engine, or its end.
    pub(super) fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<ControlEvent> {
        loop {
            let message = match self.ws.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(message))) => message,
                Poll::Ready(Some(Err(WsError::Capacity(_)))) => {
                    return Poll::Ready(ControlEvent::Closed(PeerClose::Frame {
                        code: Some(CloseCode::TOO_BIG),
                        reason: "message too large".to_owned(),
                    }))
                }
                Poll::Ready(Some(Err(_)) | None) => {
                    return Poll::Ready(ControlEvent::Closed(PeerClose::Lost))
                }
            };
            match to_core(message) {
                // Ping/pong: tungstenite queues the pong; the next flush sends it.
                None => {}
                Some(Ok(message)) => return Poll::Ready(ControlEvent::Message(message)),
                Some(Err(close)) => return Poll::Ready(ControlEvent::Closed(close)),
            }
        }
    }
}
