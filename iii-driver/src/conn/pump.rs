//! The task of one WebSocket connection: its reader forwards whole messages to the
//! machine's task under read-ahead credit and watches the peer's liveness; its writer
//! sends what the machine transmits and reports flushed messages.

use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use async_tungstenite::tungstenite::error::ProtocolError;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use async_tungstenite::WebSocketStream;
use futures_channel::mpsc::UnboundedSender;
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::future::{self, Either};
use futures_util::{SinkExt, StreamExt};
use iii_core::{CloseCode, ConnId, Message, PeerClose, Text};

use super::{ConnEnds, ConnEvent, Outbound, CLOSE_GRACE};
use crate::log_limit::LogLimit;
use crate::memory::MemoryCut;
use crate::runtime::{now, Runtime};

/// How a connection's reader watches a quiet peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Liveness {
    /// Send a WebSocket Ping after this long without a frame from the peer.
    pub(crate) ping_after: Option<Duration>,
    /// Drop the connection after this long without a frame from the peer (pings
    /// included, so a live peer always answers in time).
    pub(crate) idle_timeout: Option<Duration>,
}

/// Why the reader stopped.
enum ReaderEnd {
    /// The peer closed, failed, or sent something too large.
    Peer(PeerClose),
    /// The peer stayed silent past the idle timeout.
    Silent,
    /// The memory budget cut the connection.
    Cut(MemoryCut),
}

/// The close code (RFC 6455 §7.4.1) owed to a peer whose input the WebSocket layer
/// refused; `None` when the peer is simply gone (nothing can be sent).
fn refusal_of(error: &WsError) -> Option<CloseCode> {
    match error {
        WsError::Capacity(_) => Some(CloseCode::TOO_BIG),
        WsError::Utf8(_) => Some(CloseCode::INVALID_DATA),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some(CloseCode::PROTOCOL_ERROR),
        _ => None,
    }
}

/// The memory budget's cut behind `error`, if that is what it is.
fn cut_of(error: &WsError) -> Option<MemoryCut> {
    match error {
        WsError::Io(error) => MemoryCut::of(error),
        _ => None,
    }
}

/// The reason sent with `code` when the reader refused the peer's input.
fn refusal_reason(code: CloseCode) -> &'static str {
    match code {
        CloseCode::TOO_BIG => "message too large",
        CloseCode::INVALID_DATA => "invalid UTF-8 in a text message",
        _ => "protocol error",
    }
}

/// Cuts by the memory budget are logged at info, at most this many per second.
static CUT_LOG: LogLimit = LogLimit::new(10, Duration::from_secs(1));

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

fn close_frame(code: CloseCode, reason: &str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: WsCloseCode::from(code.0),
        reason: reason.into(),
    }))
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
        abort,
        liveness,
    } = ends;
    let report = |event: ConnEvent| {
        let _ = events.unbounded_send(wrap(event));
    };
    let (ping_tx, mut ping_rx) = futures_channel::mpsc::unbounded::<()>();

    // The close code owed to the peer when the WebSocket layer refused its input (0:
    // none).
    let refused = AtomicU16::new(0);
    let reader = async {
        loop {
            credit.take().await;
            // Listening starts now: time spent waiting for credit is not silence.
            let since = now();
            let mut pinged = false;
            let message = loop {
                let deadline = match (pinged, liveness.ping_after, liveness.idle_timeout) {
                    (false, Some(ping), _) => since.checked_add(ping),
                    (_, _, Some(idle)) => since.checked_add(idle),
                    _ => None,
                };
                let next = stream.next();
                let Some(deadline) = deadline else {
                    break next.await;
                };
                match future::select(next, rt.sleep_until(deadline)).await {
                    Either::Left((message, _)) => break message,
                    Either::Right(((), _)) if !pinged && liveness.ping_after.is_some() => {
                        pinged = true;
                        let _ = ping_tx.unbounded_send(());
                        if liveness.idle_timeout.is_none() {
                            // Pings keep NATs open; nobody waits for the answer.
                            pinged = false;
                        }
                    }
                    Either::Right(((), _)) => return ReaderEnd::Silent,
                }
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    if let Some(cut) = cut_of(&error) {
                        return ReaderEnd::Cut(cut);
                    }
                    let Some(code) = refusal_of(&error) else {
                        return ReaderEnd::Peer(PeerClose::Lost);
                    };
                    refused.store(code.0, Ordering::Relaxed);
                    return ReaderEnd::Peer(PeerClose::Frame {
                        code: Some(code),
                        reason: refusal_reason(code).to_owned(),
                    });
                }
                None => return ReaderEnd::Peer(PeerClose::Lost),
            };
            match to_core(message) {
                None => credit.refund(),
                Some(Ok(message)) => {
                    credit.read(message.len());
                    report(ConnEvent::Message(conn, message));
                }
                Some(Err(close)) => return ReaderEnd::Peer(close),
            }
        }
    };

    let writer = async {
        loop {
            let first = match future::select(outbound.next(), ping_rx.next()).await {
                Either::Left((Some(item), _)) => item,
                Either::Left((None, _)) => return None,
                Either::Right((Some(()), _)) => {
                    if let Err(error) = sink.send(WsMessage::Ping(Vec::new().into())).await {
                        return cut_of(&error);
                    }
                    continue;
                }
                Either::Right((None, _)) => std::future::pending().await,
            };
            let mut next = Some(first);
            let mut sent = 0;
            // Feed everything already queued, then flush once.
            while let Some(item) = next.take() {
                match item {
                    Outbound::Message(message) => {
                        if let Err(error) = sink.feed(to_ws(message)).await {
                            return cut_of(&error);
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
                        return None;
                    }
                }
            }
            if let Err(error) = sink.flush().await {
                return cut_of(&error);
            }
            report(ConnEvent::Sent(conn, sent));
        }
    };

    enum Ended {
        /// The peer closed or vanished; the core has been told.
        Peer,
        /// The peer stayed silent past the idle timeout.
        Silent,
        /// The writer finished (we closed, or the machine dropped us).
        Writer,
        /// The machine asked to drop the connection at once.
        Aborted(CloseCode, &'static str),
        /// The memory budget cut the connection.
        Cut(MemoryCut),
    }
    let ended = {
        let reader = std::pin::pin!(reader);
        let writer = std::pin::pin!(writer);
        match future::select(future::select(reader, writer), abort).await {
            Either::Left((Either::Left((ReaderEnd::Peer(close), writer)), _)) => {
                // The peer closed or vanished: tell the core now. It drops this
                // connection's queue, which lets the writer finish what was queued before
                // (tungstenite also answers the peer's Close there); bounded by a grace.
                report(ConnEvent::Closed(conn, close));
                let grace = rt.sleep_until(now() + CLOSE_GRACE);
                let _ = future::select(writer, grace).await;
                Ended::Peer
            }
            Either::Left((Either::Left((ReaderEnd::Silent, _)), _)) => Ended::Silent,
            Either::Left((Either::Left((ReaderEnd::Cut(cut), _)), _))
            | Either::Left((Either::Right((Some(cut), _)), _)) => Ended::Cut(cut),
            Either::Left((Either::Right((None, _)), _)) => Ended::Writer,
            Either::Right((Ok((code, reason)), _)) => Ended::Aborted(code, reason),
            // The machine's task forgot the connection: nothing more to do for it.
            Either::Right((Err(_), _)) => Ended::Aborted(CloseCode::GOING_AWAY, "going away"),
        }
    };
    match ended {
        Ended::Peer => {}
        Ended::Silent => {
            tracing::debug!(%conn, "peer silent past the idle timeout; dropped");
            report(ConnEvent::Closed(conn, PeerClose::Lost));
            // Never wait on a peer that stopped answering.
            return;
        }
        Ended::Cut(cut) => {
            if let Some(suppressed) = CUT_LOG.admit(std::time::Instant::now()) {
                tracing::info!(%conn, reason = %cut, suppressed_since_last = suppressed,
                    "connection cut by the memory budget");
            }
            report(ConnEvent::Closed(conn, PeerClose::Lost));
            let reason = match cut {
                MemoryCut::Budget => Some("engine memory budget exhausted"),
                MemoryCut::Largest => Some("largest holder of the exhausted engine memory budget"),
                MemoryCut::SlowConsumer => None,
            };
            if let Some(reason) = reason {
                // Its socket still takes bytes: tell the peer why, briefly.
                let closing = std::pin::pin!(sink.send(close_frame(CloseCode::POLICY, reason)));
                let grace = rt.sleep_until(now() + CLOSE_GRACE);
                let _ = future::select(closing, grace).await;
            }
            // A slow consumer's socket takes nothing: dropping it frees what it held.
            return;
        }
        Ended::Aborted(code, reason) => {
            // Queued messages are abandoned; the Close frame gets a short chance.
            let closing = std::pin::pin!(sink.send(close_frame(code, reason)));
            let grace = rt.sleep_until(now() + CLOSE_GRACE);
            let _ = future::select(closing, grace).await;
            report(ConnEvent::Closed(conn, PeerClose::Lost));
            return;
        }
        Ended::Writer => {
            // We closed (or the core dropped us): read until the peer's Close reply,
            // briefly, then report. The core wants nothing more from this connection, so
            // what arrives meanwhile is dropped without read-ahead credit: a paused peer
            // still gets to read our Close and answer it, and its unread data does not
            // turn our close into a reset.
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
            let grace = rt.sleep_until(now() + CLOSE_GRACE);
            let close = match future::select(std::pin::pin!(reply), grace).await {
                Either::Left((close, _)) => close,
                Either::Right(_) => PeerClose::Lost,
            };
            report(ConnEvent::Closed(conn, close));
        }
    }
    let refused = refused.load(Ordering::Relaxed);
    if refused != 0 {
        // The WebSocket layer refused the peer's input before the core saw it: tell the
        // peer why (1002 protocol error, 1007 invalid UTF-8, 1009 too large).
        let code = CloseCode(refused);
        let _ = sink.send(close_frame(code, refusal_reason(code))).await;
    }
    let _ = SinkExt::close(&mut sink).await;
}
