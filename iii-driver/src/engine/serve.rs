//! One connection from accept to its end: the HTTP head (within the handshake timeout),
//! the engine's decision, the upgrade, then the connection pump; `/metrics` and
//! `/healthz` are answered here too.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::WebSocketStream;
use futures_channel::oneshot;
use futures_util::future::{self, Either};
use iii_core::upgrade::{parse_target, Rejection};
use iii_core::PeerClose;
use subtle::ConstantTimeEq;

use super::task::Input;
use super::{EngineHandle, EngineSettings};
use crate::conn::{pump, ConnEvent};
use crate::handshake::{
    read_request, refusal_for, refuse, respond, switch, Endpoint, HeadError, PlainRequest, Refusal,
    Request,
};
use crate::log_limit::LogLimit;
use crate::memory::{Metered, Owner};
use crate::metrics;
use crate::read_batch::ReadBatch;
use crate::runtime::{now, Runtime};
use crate::slots::SlotGuard;
use crate::transport::Transport;
use crate::write_deadline::WriteDeadline;

/// Logs a refused upgrade at info (never the request target, which can hold a channel
/// key, nor any header). Limited per reason like the engine's other peer-provoked lines
/// ([`EngineSettings::log_lines_per_reason`] per [`EngineSettings::log_window`]), so a
/// worker reconnecting in a loop with a wrong token cannot fill the log; what is
/// suppressed is summarised in one line at the first refusal after its window.
pub(crate) fn log_refusal(
    engine: &EngineHandle,
    peer: SocketAddr,
    refusal: &Refusal,
    reason: &'static str,
) {
    let now = Instant::now();
    let Ok(mut limit) = engine.refusal_log.lock() else {
        return;
    };
    if let Some(suppressed) = limit.roll(now) {
        tracing::info!(%suppressed, "upgrade refusals suppressed");
    }
    let admitted = limit.admit(("upgrade_refused", reason), now);
    drop(limit);
    if admitted {
        tracing::info!(%peer, status = refusal.status, reason, "upgrade refused");
    }
}

/// Failed TLS handshakes are logged at info, at most this many per second.
static TLS_FAILURE_LOG: LogLimit = LogLimit::new(10, Duration::from_secs(1));

/// Counts and logs a failed TLS handshake (rate-limited: any peer can cause one). A peer
/// that merely closed (a TCP health check, a client giving up) is logged at debug only
/// and not counted, as a plain connection that closes before its request is.
fn log_tls_failure(engine: &EngineHandle, peer: SocketAddr, listener: usize, error: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
    if matches!(
        error.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted
    ) {
        tracing::debug!(%peer, listener, %error, "closed during the TLS handshake");
        return;
    }
    engine.transport.tls_failed();
    if let Some(suppressed) = TLS_FAILURE_LOG.admit(Instant::now()) {
        tracing::info!(
            %peer,
            listener,
            %error,
            suppressed_since_last = suppressed,
            "TLS handshake failed"
        );
    }
}

/// Opens a connection that arrived on `listener`: the TLS handshake on a TLS listener,
/// then the HTTP request head. `Err`: the TLS handshake failed.
async fn open<S>(
    engine: &EngineHandle,
    listener: usize,
    tcp: S,
) -> io::Result<(Transport<S>, Result<Request, HeadError>)>
where
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
{
    let mut stream = engine.tls.accept(listener, tcp).await?;
    let head = read_request(&mut stream, engine.settings.max_request_head).await;
    Ok((stream, head))
}

/// Serves one accepted TCP connection: completes the TLS handshake on a TLS listener,
/// reads the upgrade request, lets the engine decide (answering 400/401/403/404/426/503
/// before the upgrade when it refuses), then runs the WebSocket until it ends.
pub async fn serve_connection<R: Runtime>(
    rt: R,
    engine: EngineHandle,
    tcp: R::Tcp,
    peer: SocketAddr,
) {
    serve_counted(rt, engine, tcp, peer, 0, None).await;
}

/// [`serve_connection`] for a connection that arrived on listener `listener` (an index
/// into [`EngineSettings::listeners`](super::EngineSettings::listeners) plus one; 0 is the main listener).
pub async fn serve_connection_on<R: Runtime>(
    rt: R,
    engine: EngineHandle,
    tcp: R::Tcp,
    peer: SocketAddr,
    listener: usize,
) {
    serve_counted(rt, engine, tcp, peer, listener, None).await;
}

/// [`serve_connection_on`] holding `handshake`, the connection's pre-upgrade slot, until
/// the engine has its request (it gives it back when it decides, or when it defers the
/// decision to an authentication function: those are bounded in the core).
pub(crate) async fn serve_counted<R: Runtime>(
    rt: R,
    engine: EngineHandle,
    tcp: R::Tcp,
    peer: SocketAddr,
    listener: usize,
    handshake: Option<SlotGuard>,
) {
    let settings = engine.settings.clone();
    // The write timeout applies to the socket, under TLS; reads are batched under TLS
    // too, so a TLS record costs one system call, not one per 4 KiB rustls asks for.
    let tcp = WriteDeadline::new(&rt, tcp, Some(settings.write_timeout));
    let tcp = ReadBatch::new(tcp, settings.socket_read_bytes);
    let deadline = rt.sleep_until(now() + settings.handshake_timeout);
    let (mut stream, head) = {
        let opening = std::pin::pin!(open(&engine, listener, tcp));
        match future::select(opening, deadline).await {
            Either::Left((Ok(opened), _)) => opened,
            Either::Left((Err(error), _)) => {
                log_tls_failure(&engine, peer, listener, &error);
                return;
            }
            Either::Right(_) => {
                tracing::debug!(%peer, "no upgrade request within the handshake timeout");
                return;
            }
        }
    };
    let mut request = match head {
        Ok(Request::Upgrade(request)) => request,
        Ok(Request::Plain(request)) => {
            drop(handshake);
            // Operational endpoints are for operators: never on an untrusted listener.
            if settings
                .listener_policy(listener)
                .is_some_and(|policy| policy.rbac.is_some())
            {
                let refusal = refusal_for(Rejection::NotFound);
                engine.transport.refused(refusal.status);
                refuse(&mut stream, refusal).await;
            } else {
                serve_endpoint(&engine, &mut stream, request, peer).await;
            }
            return;
        }
        Err(HeadError::Refuse(refusal)) => {
            engine.transport.refused(refusal.status);
            log_refusal(&engine, peer, &refusal, refusal.body);
            refuse(&mut stream, refusal).await;
            return;
        }
        Err(HeadError::Io(error)) => {
            tracing::trace!(%peer, %error, "reading the request head failed");
            return;
        }
        Err(HeadError::Closed) => return,
    };
    // Pure routing first: no engine state is touched for a malformed URL.
    if let Err(rejection) = parse_target(&request.target) {
        let refusal = refusal_for(rejection);
        engine.transport.refused(refusal.status);
        log_refusal(&engine, peer, &refusal, rejection.reason());
        refuse(&mut stream, refusal).await;
        return;
    }
    let (reply, decision) = oneshot::channel();
    let asked = engine.tx.unbounded_send(Input::Accept {
        target: request.target.clone(),
        authorization: request.authorization.clone(),
        origin: request.origin.clone(),
        listener,
        peer: peer.ip(),
        headers: std::mem::take(&mut request.headers),
        slot: handshake,
        reply,
    });
    let decision = match (asked, decision.await) {
        (Ok(()), Ok(decision)) => decision,
        // The engine task is gone: a clear answer, so the client retries elsewhere.
        _ => Err(Rejection::Unavailable),
    };
    let (accepted, ends) = match decision {
        Ok(accepted) => accepted,
        Err(rejection) => {
            let refusal = refusal_for(rejection);
            log_refusal(&engine, peer, &refusal, rejection.reason());
            refuse(&mut stream, refusal).await;
            return;
        }
    };
    let conn = accepted.conn;
    if switch(&mut stream, &request).await.is_err() {
        let _ = engine
            .tx
            .unbounded_send(Input::Conn(ConnEvent::Closed(conn, PeerClose::Lost)));
        return;
    }
    tracing::debug!(%conn, %peer, kind = ?accepted.kind, "connection accepted");
    // What the connection holds outside the core's limits is charged to the engine-wide
    // budget, starting with the bytes read past the request.
    let unsent_cap = settings.unsent_cap(accepted.max_message_bytes);
    // Counted by address as the per-address limits count (an IPv6 client by its /64).
    let owner = Owner {
        listener,
        address: iii_core::upgrade::address_key(peer.ip()),
    };
    let stream = match Metered::new(
        stream,
        engine.memory.clone(),
        owner,
        unsent_cap,
        &request.leftover,
    ) {
        Ok(stream) => stream,
        Err(_) => {
            let _ = engine
                .tx
                .unbounded_send(Input::Conn(ConnEvent::Closed(conn, PeerClose::Lost)));
            return;
        }
    };
    let config = ws_config(&settings, unsent_cap, accepted.max_message_bytes);
    let ws =
        WebSocketStream::from_partially_read(stream, request.leftover, Role::Server, Some(config))
            .await;
    pump(rt, ws, conn, ends, engine.tx.clone(), Input::Conn).await;
}

/// The WebSocket layer's configuration for an engine connection whose messages are limited
/// to `max_message_bytes` and whose unsent output to `unsent_cap`.
pub(crate) fn ws_config(
    settings: &EngineSettings,
    unsent_cap: usize,
    max_message_bytes: usize,
) -> WebSocketConfig {
    // One byte over the core's limit reaches the core, which answers with its close code;
    // anything larger is cut off by the WebSocket layer (reported as 1009). The write
    // buffer's own bound stays above the connection's unsent cap, which the metered
    // stream enforces first (cutting the peer as a slow consumer).
    WebSocketConfig::default()
        .read_buffer_size(settings.read_buffer_bytes)
        .write_buffer_size(settings.write_buffer_bytes)
        .max_write_buffer_size(
            unsent_cap
                .saturating_add(max_message_bytes)
                .max(settings.write_buffer_bytes.saturating_add(1)),
        )
        .max_message_size(Some(max_message_bytes.saturating_add(1)))
        .max_frame_size(Some(max_message_bytes.saturating_add(1)))
}

/// Answers `GET /metrics` or `GET /healthz`: the same token and origin rules as
/// upgrades (see [`EngineSettings::metrics_token`]).
async fn serve_endpoint<S>(
    engine: &EngineHandle,
    tcp: &mut S,
    request: PlainRequest,
    peer: SocketAddr,
) where
    S: futures_io::AsyncWrite + Unpin,
{
    let settings = &engine.settings;
    let foreign = request
        .origin
        .as_deref()
        .is_some_and(|origin| !settings.core.origin_allowed(origin));
    let authorized = settings.endpoint_token().is_none_or(|expected| {
        let presented = request
            .authorization
            .as_deref()
            .and_then(iii_core::upgrade::bearer_token)
            .unwrap_or("");
        bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
    });
    let refusal = if foreign {
        Some((Rejection::Forbidden, "origin not allowed"))
    } else if !authorized {
        Some((Rejection::Unauthorized, "missing or wrong token"))
    } else {
        None
    };
    if let Some((rejection, reason)) = refusal {
        let refusal = refusal_for(rejection);
        engine.transport.refused(refusal.status);
        log_refusal(engine, peer, &refusal, reason);
        refuse(tcp, refusal).await;
        return;
    }
    match request.endpoint {
        Endpoint::Health if engine.is_serving() => {
            respond(tcp, (200, "OK"), "text/plain", "ok\n").await
        }
        Endpoint::Health => {
            let body = if engine.is_running() {
                "draining\n"
            } else {
                "stopped\n"
            };
            respond(tcp, (503, "Service Unavailable"), "text/plain", body).await
        }
        Endpoint::Metrics => match engine.snapshot().await {
            Some(snapshot) => {
                let text = snapshot.encode();
                respond(tcp, (200, "OK"), metrics::CONTENT_TYPE, &text).await
            }
            None => respond(tcp, (503, "Service Unavailable"), "text/plain", "stopped\n").await,
        },
    }
}
