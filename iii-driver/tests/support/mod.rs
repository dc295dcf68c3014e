//! Test support: a smol [`Runtime`] and a minimal loopback engine that drives
//! `iii_core::engine::Engine` behind a mutex (good enough for tests; the real engine
//! server lives in `iii_driver::engine`).

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::result_large_err
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_channel::mpsc::{unbounded, UnboundedSender};
use futures_util::StreamExt;
use iii_core::engine::{Engine, EngineConfig, EngineOutput};
use iii_core::{CloseCode, ConnId, Message, PeerClose, Text};
use iii_driver::{BoxFuture, Runtime};

/// The smol runtime.
#[derive(Clone, Copy, Debug)]
pub struct Smol;

impl Runtime for Smol {
    type Tcp = smol::net::TcpStream;

    fn spawn(&self, future: BoxFuture<'static, ()>) {
        smol::spawn(future).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::at(deadline).await;
        })
    }

    fn connect(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        Box::pin(async move {
            let stream = smol::net::TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    }
}

enum Out {
    Message(Message),
    Close(Option<CloseCode>, &'static str),
}

struct State {
    engine: Engine,
    out: BTreeMap<ConnId, UnboundedSender<Out>>,
    paused: BTreeSet<ConnId>,
}

impl State {
    fn drain(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                EngineOutput::Transmit { conn, message } => {
                    if let Some(tx) = self.out.get(&conn) {
                        let _ = tx.unbounded_send(Out::Message(message));
                    }
                }
                EngineOutput::Close { conn, code, reason } => {
                    if let Some(tx) = self.out.get(&conn) {
                        let _ = tx.unbounded_send(Out::Close(code, reason));
                    }
                }
                EngineOutput::PauseRead { conn } => {
                    self.paused.insert(conn);
                }
                EngineOutput::ResumeRead { conn } => {
                    self.paused.remove(&conn);
                }
                _ => {}
            }
        }
    }

    fn incoming(&mut self, conn: ConnId, message: Message) {
        self.engine.handle_message(Instant::now(), conn, message);
        self.drain();
    }
}

/// A running loopback engine.
pub struct TestEngine {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl TestEngine {
    /// Starts an engine on an ephemeral port.
    pub async fn start(config: EngineConfig) -> TestEngine {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let engine = Engine::new(config, [7; 32], Instant::now()).unwrap();
        let state = Arc::new(Mutex::new(State {
            engine,
            out: BTreeMap::new(),
            paused: BTreeSet::new(),
        }));
        let ticking = Arc::downgrade(&state);
        smol::spawn(async move {
            loop {
                smol::Timer::after(Duration::from_millis(20)).await;
                let Some(state) = ticking.upgrade() else {
                    return;
                };
                let mut state = state.lock().unwrap();
                state.engine.handle_timeout(Instant::now());
                state.drain();
            }
        })
        .detach();
        let accepting = state.clone();
        smol::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                stream.set_nodelay(true).unwrap();
                smol::spawn(serve(accepting.clone(), stream)).detach();
            }
        })
        .detach();
        TestEngine { url, state }
    }

    /// Live channels at the engine.
    pub fn channels(&self) -> usize {
        self.state.lock().unwrap().engine.stats().channels
    }
}

async fn serve(state: Arc<Mutex<State>>, stream: smol::net::TcpStream) {
    let accepted: Arc<Mutex<Option<ConnId>>> = Arc::default();
    let slot = accepted.clone();
    let (tx, mut rx) = unbounded::<Out>();
    let decide = state.clone();
    let callback = move |request: &Request, response: Response| {
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let auth = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut state = decide.lock().unwrap();
        match state
            .engine
            .accept(Instant::now(), &target, auth.as_deref())
        {
            Ok(accepted) => {
                state.out.insert(accepted.conn, tx);
                *slot.lock().unwrap() = Some(accepted.conn);
                state.drain();
                Ok(response)
            }
            Err(rejection) => {
                let mut refused = ErrorResponse::new(Some(rejection.body().to_owned()));
                *refused.status_mut() =
                    async_tungstenite::tungstenite::http::StatusCode::from_u16(rejection.status())
                        .unwrap();
                Err(refused)
            }
        }
    };
    let ws = async_tungstenite::accept_hdr_async(stream, callback).await;
    let conn = *accepted.lock().unwrap();
    let Some(conn) = conn else {
        return;
    };
    let Ok(ws) = ws else {
        let mut state = state.lock().unwrap();
        state
            .engine
            .handle_closed(Instant::now(), conn, PeerClose::Lost);
        state.drain();
        return;
    };
    let (mut sink, mut source) = ws.split();
    let writing = state.clone();
    smol::spawn(async move {
        while let Some(out) = rx.next().await {
            match out {
                Out::Message(message) => {
                    let message = match message {
                        Message::Binary(bytes) => WsMessage::Binary(bytes),
                        Message::Text(text) => {
                            WsMessage::Text(text.into_bytes().try_into().unwrap())
                        }
                    };
                    if sink.send(message).await.is_err() {
                        return;
                    }
                    let mut state = writing.lock().unwrap();
                    state.engine.handle_sent(Instant::now(), conn, 1);
                    state.drain();
                }
                Out::Close(code, reason) => {
                    let frame = code.map(|code| CloseFrame {
                        code: WsCloseCode::from(code.0),
                        reason: reason.into(),
                    });
                    let _ = sink.close(frame).await;
                    return;
                }
            }
        }
    })
    .detach();
    let close = loop {
        // Backpressure: read nothing while the engine has paused this connection.
        while state.lock().unwrap().paused.contains(&conn) {
            smol::Timer::after(Duration::from_millis(2)).await;
        }
        match source.next().await {
            Some(Ok(WsMessage::Binary(bytes))) => {
                state.lock().unwrap().incoming(conn, Message::Binary(bytes));
            }
            Some(Ok(WsMessage::Text(text))) => {
                let text = Text::from_utf8(text.into()).unwrap();
                state.lock().unwrap().incoming(conn, Message::Text(text));
            }
            Some(Ok(WsMessage::Close(frame))) => {
                // Reading on flushes the Close reply that tungstenite queued.
                let _ = source.next().await;
                break PeerClose::Frame {
                    code: frame.as_ref().map(|f| CloseCode(u16::from(f.code))),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break PeerClose::Lost,
        }
    };
    let mut state = state.lock().unwrap();
    state.engine.handle_closed(Instant::now(), conn, close);
    state.out.remove(&conn);
    state.paused.remove(&conn);
    state.drain();
}
