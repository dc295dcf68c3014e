//! One WebSocket connection between the network and a core machine's task.
//!
//! Each connection runs [`pump`]: its read half forwards whole messages to the machine's
//! task and its write half sends what the machine transmits, reporting flushed messages
//! back as send completions. The machine's task keeps a [`Conns`] table that turns the
//! core's `PauseRead`/`ResumeRead` into exact backpressure: a paused connection's messages
//! are held (at most [`READ_AHEAD`] of them) and not fed to the core, and its reader stops
//! reading the socket once its read-ahead credit is spent.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use async_tungstenite::WebSocketStream;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::future::{self, Either};
use futures_util::task::AtomicWaker;
use futures_util::{SinkExt, StreamExt};
use iii_core::{CloseCode, ConnId, Message, PeerClose, Text};

use crate::runtime::Runtime;

/// Messages a connection may read ahead of the core: the most the adapter holds for a
/// paused connection.
pub(crate) const READ_AHEAD: usize = 4;

/// How long a connection waits for the peer's reply to our Close before dropping it.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the machine's task sends to a connection.
#[derive(Debug)]
pub(crate) enum Outbound {
    Message(Message),
    Close(Option<CloseCode>, &'static str),
}

/// What a connection reports to the machine's task.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    Message(ConnId, Message),
    Sent(ConnId, usize),
    Closed(ConnId, PeerClose),
}

/// Read-ahead credit of one connection: the reader takes one unit per message, the
/// machine's task gives it back once the core has consumed the message.
#[derive(Debug)]
pub(crate) struct ReadCredit {
    available: AtomicUsize,
    waker: AtomicWaker,
}

impl ReadCredit {
    fn new() -> Self {
        Self {
            available: AtomicUsize::new(READ_AHEAD),
            waker: AtomicWaker::new(),
        }
    }

    async fn take(&self) {
        future::poll_fn(|cx| loop {
            let n = self.available.load(Ordering::Acquire);
            if n == 0 {
                self.waker.register(cx.waker());
                if self.available.load(Ordering::Acquire) == 0 {
                    return Poll::Pending;
                }
                continue;
            }
            if self
                .available
                .compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Poll::Ready(());
            }
        })
        .await;
    }

    fn give(&self) {
        self.available.fetch_add(1, Ordering::AcqRel);
        self.waker.wake();
    }
}

struct Slot {
    out: UnboundedSender<Outbound>,
    credit: Arc<ReadCredit>,
    paused: bool,
    held: VecDeque<Message>,
    /// The peer's close, waiting behind held messages.
    closed: Option<PeerClose>,
}

/// Something the core may be fed now, in the order the connection produced it.
#[derive(Debug)]
pub(crate) enum Ready {
    /// A message that was held while its connection was paused.
    Message(ConnId, Message),
    /// The connection's end, after all its held messages.
    Closed(ConnId, PeerClose),
}

/// The machine task's view of its connections.
#[derive(Default)]
pub(crate) struct Conns {
    slots: BTreeMap<ConnId, Slot>,
}

/// The connection's side of a new slot: hand these to [`pump`].
pub(crate) struct ConnEnds {
    pub(crate) outbound: UnboundedReceiver<Outbound>,
    pub(crate) credit: Arc<ReadCredit>,
}

impl Conns {
    /// Registers `conn`; messages for it may be queued before its socket is ready.
    pub(crate) fn open(&mut self, conn: ConnId) -> ConnEnds {
        let (out, outbound) = futures_channel::mpsc::unbounded();
        let credit = Arc::new(ReadCredit::new());
        self.slots.insert(
            conn,
            Slot {
                out,
                credit: credit.clone(),
                paused: false,
                held: VecDeque::new(),
                closed: None,
            },
        );
        ConnEnds { outbound, credit }
    }

    /// Queues `message` for sending on `conn`.
    pub(crate) fn transmit(&mut self, conn: ConnId, message: Message) {
        if let Some(slot) = self.slots.get(&conn) {
            let _ = slot.out.unbounded_send(Outbound::Message(message));
        }
    }

    /// Asks `conn` to close with `code` after what is queued. If the peer already ended
    /// the connection (its end waiting behind held messages), those messages are moot:
    /// the end is returned for the core at once.
    pub(crate) fn close(
        &mut self,
        conn: ConnId,
        code: Option<CloseCode>,
        reason: &'static str,
    ) -> Option<PeerClose> {
        let slot = self.slots.get_mut(&conn)?;
        if let Some(close) = slot.closed.take() {
            self.slots.remove(&conn);
            return Some(close);
        }
        let _ = slot.out.unbounded_send(Outbound::Close(code, reason));
        None
    }

    /// The peer ended `conn`: returns the end if the core may have it now, or keeps it
    /// behind the connection's held messages (see [`Conns::next_ready`]).
    pub(crate) fn peer_closed(&mut self, conn: ConnId, close: PeerClose) -> Option<PeerClose> {
        let slot = self.slots.get_mut(&conn)?;
        if slot.paused || !slot.held.is_empty() {
            slot.closed = Some(close);
            return None;
        }
        self.slots.remove(&conn);
        Some(close)
    }

    /// The core paused reading `conn`.
    pub(crate) fn pause(&mut self, conn: ConnId) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            slot.paused = true;
        }
    }

    /// The core resumed reading `conn`.
    pub(crate) fn resume(&mut self, conn: ConnId) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            slot.paused = false;
        }
    }

    /// A message arrived on `conn`: returns it if the core may have it now (then call
    /// [`Conns::consumed`] after feeding it), or holds it while `conn` is paused.
    pub(crate) fn incoming(&mut self, conn: ConnId, message: Message) -> Option<Message> {
        let slot = self.slots.get_mut(&conn)?;
        if slot.paused || !slot.held.is_empty() {
            slot.held.push_back(message);
            return None;
        }
        Some(message)
    }

    /// The core consumed one message of `conn`: its reader may read another.
    pub(crate) fn consumed(&mut self, conn: ConnId) {
        if let Some(slot) = self.slots.get(&conn) {
            slot.credit.give();
        }
    }

    /// The next held message, or held end, of a connection that is no longer paused.
    pub(crate) fn next_ready(&mut self) -> Option<Ready> {
        let (conn, slot) = self
            .slots
            .iter_mut()
            .find(|(_, slot)| !slot.paused && (!slot.held.is_empty() || slot.closed.is_some()))?;
        let conn = *conn;
        if let Some(message) = slot.held.pop_front() {
            return Some(Ready::Message(conn, message));
        }
        let close = slot.closed.take()?;
        self.slots.remove(&conn);
        Some(Ready::Closed(conn, close))
    }

    /// Forgets `conn`.
    pub(crate) fn remove(&mut self, conn: ConnId) {
        self.slots.remove(&conn);
    }

    /// Number of connections.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

pub(crate) fn to_core(message: WsMessage) -> Option<Result<Message, PeerClose>> {
    match message {
        WsMessage::Text(text) => {
            // tungstenite has validated UTF-8; the core's constructor checks again.
            Some(
                Text::from_utf8(text.into())
                    .map(Message::Text)
                    .map_err(|_| PeerClose::Lost),
            )
        }
        WsMessage::Binary(bytes) => Some(Ok(Message::Binary(bytes))),
        WsMessage::Close(frame) => Some(Err(PeerClose::Frame {
            code: frame.as_ref().map(|f| CloseCode(u16::from(f.code))),
            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
        })),
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => None,
    }
}

pub(crate) fn to_ws(message: Message) -> WsMessage {
    match message {
        Message::Binary(bytes) => WsMessage::Binary(bytes),
        Message::Text(text) => match text.into_bytes().try_into() {
            Ok(utf8) => WsMessage::Text(utf8),
            Err(_) => WsMessage::Text("".into()),
        },
    }
}

/// Runs one connection until both directions are done, then reports `Closed` exactly once.
pub(crate) async fn pump<R, S, In>(
    rt: R,
    ws: WebSocketStream<S>,
    conn: ConnId,
    ends: ConnEnds,
    events: UnboundedSender<In>,
    wrap: fn(ConnEvent) -> In,
) where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    In: Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let ConnEnds {
        mut outbound,
        credit,
    } = ends;
    let report = |event: ConnEvent| {
        let _ = events.unbounded_send(wrap(event));
    };

    let too_big = std::sync::atomic::AtomicBool::new(false);
    let reader = async {
        loop {
            credit.take().await;
            let message = match stream.next().await {
                Some(Ok(message)) => message,
                Some(Err(WsError::Capacity(_))) => {
                    too_big.store(true, Ordering::Relaxed);
                    return PeerClose::Frame {
                        code: Some(CloseCode::TOO_BIG),
                        reason: "message too large".to_owned(),
                    };
                }
                Some(Err(_)) | None => return PeerClose::Lost,
            };
            match to_core(message) {
                None => credit.give(),
                Some(Ok(message)) => report(ConnEvent::Message(conn, message)),
                Some(Err(close)) => return close,
            }
        }
    };

    let writer = async {
        while let Some(first) = outbound.next().await {
            let mut next = Some(first);
            let mut sent = 0;
            // Feed everything already queued, then flush once.
            while let Some(item) = next.take() {
                match item {
                    Outbound::Message(message) => {
                        if sink.feed(to_ws(message)).await.is_err() {
                            return;
                        }
                        sent += 1;
                        if let Ok(item) = outbound.try_recv() {
                            next = Some(item);
                        }
                    }
                    Outbound::Close(code, reason) => {
                        let frame = code.map(|code| CloseFrame {
                            code: WsCloseCode::from(code.0),
                            reason: reason.into(),
                        });
                        let _ = sink.send(WsMessage::Close(frame)).await;
                        if sent > 0 {
                            report(ConnEvent::Sent(conn, sent));
                        }
                        return;
                    }
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
            report(ConnEvent::Sent(conn, sent));
        }
    };

    let we_closed = {
        let reader = std::pin::pin!(reader);
        let writer = std::pin::pin!(writer);
        match future::select(reader, writer).await {
            Either::Left((close, writer)) => {
                // The peer closed or vanished: tell the core now. It drops this
                // connection's queue, which lets the writer finish what was queued before
                // (tungstenite also answers the peer's Close there); bounded by a grace.
                report(ConnEvent::Closed(conn, close));
                let grace = rt.sleep_until(crate::runtime::now() + CLOSE_GRACE);
                let _ = future::select(writer, grace).await;
                false
            }
            Either::Right(((), _reader)) => true,
        }
    };
    if we_closed {
        // We closed (or the core dropped us): read until the peer's Close reply, briefly,
        // then report. The core wants nothing more from this connection, so what arrives
        // meanwhile is dropped without read-ahead credit: a paused peer still gets to
        // read our Close and answer it, and its unread data does not turn our close into
        // a reset.
        let reply = async {
            loop {
                match stream.next().await {
                    Some(Ok(message)) => {
                        if let Some(Err(close)) = to_core(message) {
                            return close;
                        }
                    }
                    Some(Err(_)) | None => return PeerClose::Lost,
                }
            }
        };
        let grace = rt.sleep_until(crate::runtime::now() + CLOSE_GRACE);
        let close = match future::select(std::pin::pin!(reply), grace).await {
            Either::Left((close, _)) => close,
            Either::Right(_) => PeerClose::Lost,
        };
        report(ConnEvent::Closed(conn, close));
    }
    if too_big.load(Ordering::Relaxed) {
        // The WebSocket layer refused an oversized message before the core saw it: tell
        // the peer why, with the code the core uses for that (1009).
        let frame = CloseFrame {
            code: WsCloseCode::from(CloseCode::TOO_BIG.0),
            reason: "message too large".into(),
        };
        let _ = sink.send(WsMessage::Close(Some(frame))).await;
    }
    let _ = SinkExt::close(&mut sink).await;
}
