//! Embedding `iii-core` in a runtime of one's own: a worker on one thread, with
//! `std::net` sockets and the `tungstenite` WebSocket library; no async runtime, no
//! `iii-driver`.
//!
//! The worker serves `example::echo`, which copies one channel into another, and then
//! calls it itself: it creates two channels through the engine, hands the echo the
//! reader of the first and the writer of the second, streams bytes into the first and
//! reads them back from the second. Every byte crosses the engine twice, under the
//! core's flow control.
//!
//! ```sh
//! cargo run -p iii-tokio --bin iii-engine &
//! cargo run -p iii-core --example blocking_worker -- ws://127.0.0.1:49134
//! ```
//!
//! Two parts: [`Driver`] is the IO around the core (the part to copy), [`echo_round_trip`]
//! is an application on top of it. README's "Embedding the core" walks through both, and
//! `iii-core/tests/embedding.rs` runs them against an engine started in the test.

// The workspace's clippy.toml keeps the clock and blocking calls out of the core; this
// file is the adapter, which owns both.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iii_core::channel::{channel_url, ChannelRef, ChannelRefs};
use iii_core::wire::control::to_payload;
use iii_core::worker::{
    CallOutcome, CompleteError, ConfigError, ConnectTarget, EndId, EndOutcome, FunctionSpec,
    InvokeError, ReadError, RegisterError, Worker, WorkerConfig, WorkerEvent, WorkerOutput,
    WriteError,
};
use iii_core::{ConnId, Message, PeerClose, Text};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::WebSocket;

/// How long the loop sleeps when no socket had anything and no deadline is due. A
/// production loop would wait in `poll(2)`/`epoll` (or `mio`) instead; the core only
/// needs to be fed when something happened or `poll_timeout()` passed.
const IDLE_TICK: Duration = Duration::from_millis(1);

/// One open WebSocket of the worker.
struct Link {
    ws: WebSocket<TcpStream>,
    /// Messages written since the last successful flush: reported to the core with
    /// `handle_sent` once the flush went through.
    unflushed: usize,
    /// The core said `PauseRead` (and not yet `ResumeRead`).
    paused: bool,
    /// The core said `Close`: the frame is queued, the link goes once it is flushed.
    closing: bool,
}

/// The IO around one [`Worker`]: its sockets, its clock and the order of the contract.
pub struct Driver {
    /// The state machine; the application calls its commands directly.
    pub worker: Worker,
    engine_url: String,
    links: BTreeMap<ConnId, Link>,
    /// Application events drained from the core and not handed out yet.
    events: VecDeque<WorkerEvent>,
}

impl Driver {
    /// A worker for the engine at `engine_url` (`ws://host:port`).
    pub fn new(engine_url: &str, config: WorkerConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            worker: Worker::new(config, os_seed(), Instant::now())?,
            engine_url: engine_url.to_owned(),
            links: BTreeMap::new(),
            events: VecDeque::new(),
        })
    }

    /// Runs the IO until the core has something for the application, or until `deadline`.
    pub fn next_event(&mut self, deadline: Instant) -> Option<WorkerEvent> {
        loop {
            // One clock reading per iteration, passed to every call in it.
            let now = Instant::now();
            // 1. Execute the core's outputs in order; keep its events for the caller.
            while let Some(output) = self.worker.poll_output() {
                self.execute(now, output);
            }
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            if now >= deadline {
                return None;
            }
            // 2. Flushes (acknowledged with `handle_sent`) and one message per socket.
            let mut busy = self.flush_links(now);
            busy |= self.read_links(now);
            // 3. Time: fire what is due.
            if let Some(at) = self.worker.poll_timeout().filter(|at| *at <= now) {
                self.worker.handle_timeout(at.max(now));
                busy = true;
            }
            if !busy {
                let wake = self.worker.poll_timeout().unwrap_or(deadline).min(deadline);
                std::thread::sleep(wake.saturating_duration_since(now).min(IDLE_TICK));
            }
        }
    }

    fn execute(&mut self, now: Instant, output: WorkerOutput) {
        match output {
            WorkerOutput::Connect { conn, target } => {
                let url = match target {
                    ConnectTarget::Control => self.engine_url.clone(),
                    ConnectTarget::Channel(channel_ref) => {
                        channel_url(&self.engine_url, &channel_ref)
                    }
                };
                // Blocking connect and handshake; the core is told how it went.
                match dial(&url) {
                    Ok(ws) => {
                        let link = Link {
                            ws,
                            unflushed: 0,
                            paused: false,
                            closing: false,
                        };
                        self.links.insert(conn, link);
                        self.worker.handle_connected(Instant::now(), conn);
                    }
                    Err(status) => self.worker.handle_connect_failed(now, conn, status),
                }
            }
            WorkerOutput::Transmit { conn, message } => {
                let frame = match message {
                    Message::Binary(data) => tungstenite::Message::Binary(data),
                    // `Text` is valid UTF-8 by construction, so this conversion succeeds.
                    Message::Text(text) => match text.into_bytes().try_into() {
                        Ok(text) => tungstenite::Message::Text(text),
                        Err(_) => return self.lost(now, conn),
                    },
                };
                let Some(link) = self.links.get_mut(&conn) else {
                    return;
                };
                // `write` queues the frame even when the socket would block.
                match link.ws.write(frame) {
                    Ok(()) => link.unflushed += 1,
                    Err(tungstenite::Error::Io(error)) if error.kind() == ErrorKind::WouldBlock => {
                        link.unflushed += 1
                    }
                    Err(_) => self.lost(now, conn),
                }
            }
            WorkerOutput::Close { conn, code, reason } => {
                if let Some(link) = self.links.get_mut(&conn) {
                    let frame = code.map(|code| CloseFrame {
                        code: code.0.into(),
                        reason: reason.into(),
                    });
                    // Queued even when it cannot be written yet; flushed by `flush_links`.
                    let _ = link.ws.close(frame);
                    link.closing = true;
                }
            }
            WorkerOutput::PauseRead { conn } => self.set_paused(conn, true),
            WorkerOutput::ResumeRead { conn } => self.set_paused(conn, false),
            WorkerOutput::Event(event) => self.events.push_back(event),
        }
    }

    fn set_paused(&mut self, conn: ConnId, paused: bool) {
        if let Some(link) = self.links.get_mut(&conn) {
            link.paused = paused;
        }
    }

    /// Flushes every link with unsent frames; true when any flush went through.
    fn flush_links(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        let conns: Vec<ConnId> = self.links.keys().copied().collect();
        for conn in conns {
            let Some(link) = self.links.get_mut(&conn) else {
                continue;
            };
            if link.unflushed == 0 && !link.closing {
                continue;
            }
            match link.ws.flush() {
                Ok(()) => {
                    progressed = true;
                    let sent = std::mem::take(&mut link.unflushed);
                    if link.closing {
                        // Our Close frame is out: drop the socket, then tell the core.
                        self.links.remove(&conn);
                        self.worker.handle_closed(now, conn, PeerClose::Lost);
                    } else {
                        self.worker.handle_sent(now, conn, sent);
                    }
                }
                Err(tungstenite::Error::Io(error)) if error.kind() == ErrorKind::WouldBlock => {}
                Err(_) => self.lost(now, conn),
            }
        }
        progressed
    }

    /// Reads at most one message from every link the core has not paused (so that a
    /// `PauseRead` caused by a message is executed before the next one is read); true
    /// when anything arrived.
    fn read_links(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        let conns: Vec<ConnId> = self.links.keys().copied().collect();
        for conn in conns {
            let Some(link) = self
                .links
                .get_mut(&conn)
                .filter(|l| !l.paused && !l.closing)
            else {
                continue;
            };
            let message = match link.ws.read() {
                Ok(tungstenite::Message::Binary(data)) => Message::Binary(data),
                Ok(tungstenite::Message::Text(text)) => match Text::from_utf8(text.into()) {
                    Ok(text) => Message::Text(text),
                    Err(_) => continue,
                },
                Ok(tungstenite::Message::Close(frame)) => {
                    // tungstenite queued the reply; send it on the way out.
                    let _ = link.ws.flush();
                    self.links.remove(&conn);
                    let close = PeerClose::Frame {
                        code: frame.as_ref().map(|f| iii_core::CloseCode(f.code.into())),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    };
                    self.worker.handle_closed(now, conn, close);
                    progressed = true;
                    continue;
                }
                // Pings are answered by tungstenite itself on the next flush or read.
                Ok(_) => continue,
                Err(tungstenite::Error::Io(error)) if error.kind() == ErrorKind::WouldBlock => {
                    continue
                }
                Err(_) => {
                    self.lost(now, conn);
                    continue;
                }
            };
            self.worker.handle_message(now, conn, message);
            progressed = true;
        }
        progressed
    }

    /// The socket failed: forget it and tell the core it ended without a Close frame.
    fn lost(&mut self, now: Instant, conn: ConnId) {
        if self.links.remove(&conn).is_some() {
            self.worker.handle_closed(now, conn, PeerClose::Lost);
        }
    }
}

/// Opens a WebSocket to `url` (blocking), then makes the socket non-blocking so that
/// one thread can serve every connection. `Err` carries the HTTP status of a refused
/// upgrade (a used channel ref is refused with 404).
fn dial(url: &str) -> Result<WebSocket<TcpStream>, Option<u16>> {
    let request = url.into_client_request().map_err(|_| None)?;
    let host = request.uri().host().ok_or(None)?.to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host.as_str(), port)).map_err(|_| None)?;
    tcp.set_nodelay(true).map_err(|_| None)?;
    let (ws, _response) = tungstenite::client(request, tcp).map_err(|error| match error {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response)) => {
            Some(response.status().as_u16())
        }
        _ => None,
    })?;
    ws.get_ref().set_nonblocking(true).map_err(|_| None)?;
    Ok(ws)
}

/// 32 bytes from the OS, through the standard library alone (its hash keys are seeded
/// from the OS). A real adapter would use `getrandom`.
fn os_seed() -> [u8; 32] {
    let mut seed = [0; 32];
    for chunk in seed.chunks_mut(8) {
        let word = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    seed
}

/// The function the example serves.
pub const ECHO: &str = "example::echo";

/// Why the round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    /// The worker's configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Registering the function was refused.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// A call could not be made.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// Answering an invocation was refused.
    #[error(transparent)]
    Complete(#[from] CompleteError),
    /// A channel write was refused.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A channel read was refused.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A call finished without a result.
    #[error("call failed: {0:?}")]
    Call(CallOutcome),
    /// A payload did not have the expected shape.
    #[error("unexpected payload: {0}")]
    Payload(#[from] serde_json::Error),
    /// A channel end ended other than cleanly.
    #[error("channel end ended: {0:?}")]
    End(EndOutcome),
    /// The round trip did not finish before the deadline.
    #[error("no result before the deadline")]
    Deadline,
}

/// A writer end being fed from a queue; when the bytes came from a reader end, each
/// accepted byte is reported to that reader as consumed (so its pace follows ours).
struct Forward {
    end: EndId,
    queue: VecDeque<Bytes>,
    consumed_from: Option<EndId>,
    close_when_empty: bool,
}

impl Forward {
    /// Writes what the window takes; closes the end once everything was written.
    fn pump(&mut self, worker: &mut Worker) -> Result<(), ExampleError> {
        let now = Instant::now();
        while let Some(front) = self.queue.front_mut() {
            let accepted = match worker.channel_write(now, self.end, front.clone()) {
                Ok(accepted) => accepted,
                // Full window: `ChannelWritable` says when to come back.
                Err(WriteError::Blocked(_)) => return Ok(()),
                Err(error) => return Err(error.into()),
            };
            if let Some(reader) = self.consumed_from {
                worker.channel_consumed(now, reader, accepted)?;
            }
            if accepted < front.len() {
                *front = front.slice(accepted..);
                return Ok(());
            }
            self.queue.pop_front();
        }
        if self.close_when_empty {
            self.close_when_empty = false;
            worker.channel_close(now, self.end)?;
        }
        Ok(())
    }
}

/// The `example::echo` invocation being served: its input end and its forward.
struct Serving {
    invocation_id: iii_core::InvocationId,
    input: EndId,
    forward: Forward,
}

/// Registers [`ECHO`], calls it with two fresh channels, streams `payload` through it
/// and returns the bytes that came back.
pub fn echo_round_trip(
    engine_url: &str,
    payload: Bytes,
    deadline: Instant,
) -> Result<Vec<u8>, ExampleError> {
    let mut config = WorkerConfig::default();
    config.identity.name = "blocking-example".to_owned();
    let mut driver = Driver::new(engine_url, config)?;
    let now = Instant::now();
    driver.worker.register_function(now, function_spec())?;
    let first = driver.worker.create_channel(now, None)?;
    let second = driver.worker.create_channel(now, None)?;

    let mut refs: BTreeMap<iii_core::InvocationId, ChannelRefs> = BTreeMap::new();
    let mut echo_call = None;
    let mut sending: Option<Forward> = None;
    let mut serving: Option<Serving> = None;
    let mut reader = None;
    let mut received = Vec::new();
    let mut echo_done = false;
    let mut read_done = false;
    while !(echo_done && read_done) {
        let event = driver.next_event(deadline).ok_or(ExampleError::Deadline)?;
        let now = Instant::now();
        let worker = &mut driver.worker;
        match event {
            // The caller: both channels exist, so call the echo and start streaming.
            WorkerEvent::CallCompleted {
                invocation_id,
                outcome,
                ..
            } if Some(invocation_id) != echo_call => {
                let CallOutcome::Ok(Some(result)) = outcome else {
                    return Err(ExampleError::Call(outcome));
                };
                refs.insert(invocation_id, serde_json::from_str(result.get())?);
                if let (Some(a), Some(b)) = (refs.get(&first), refs.get(&second)) {
                    let input = serde_json::json!({ "input": a.reader, "output": b.writer });
                    echo_call = Some(worker.invoke(now, ECHO, to_payload(&input), None)?);
                    let mut forward = Forward {
                        end: worker.open_channel(now, a.writer.clone()),
                        queue: VecDeque::from([payload.clone()]),
                        consumed_from: None,
                        close_when_empty: true,
                    };
                    forward.pump(worker)?;
                    sending = Some(forward);
                    let end = worker.open_channel(now, b.reader.clone());
                    worker.channel_start_reading(now, end)?;
                    reader = Some(end);
                }
            }
            WorkerEvent::CallCompleted { outcome, .. } => match outcome {
                CallOutcome::Ok(_) => echo_done = true,
                other => return Err(ExampleError::Call(other)),
            },
            // The server: the engine runs `example::echo` here.
            WorkerEvent::Invoked {
                invocation_id,
                data,
                ..
            } => {
                let ends: EchoInput = serde_json::from_str(data.get())?;
                let input = worker.open_channel(now, ends.input);
                worker.channel_start_reading(now, input)?;
                let forward = Forward {
                    end: worker.open_channel(now, ends.output),
                    queue: VecDeque::new(),
                    consumed_from: Some(input),
                    close_when_empty: false,
                };
                serving = Some(Serving {
                    invocation_id,
                    input,
                    forward,
                });
            }
            WorkerEvent::ChannelData { end, data } => {
                if Some(end) == reader {
                    received.extend_from_slice(&data);
                    worker.channel_consumed(now, end, data.len())?;
                } else if let Some(serving) = serving.as_mut().filter(|s| s.input == end) {
                    serving.forward.queue.push_back(data);
                    serving.forward.pump(worker)?;
                }
            }
            WorkerEvent::ChannelWritable { end } => {
                for forward in [sending.as_mut(), serving.as_mut().map(|s| &mut s.forward)] {
                    if let Some(forward) = forward.filter(|f| f.end == end) {
                        forward.pump(worker)?;
                    }
                }
            }
            WorkerEvent::ChannelEnded { end, outcome } => {
                worker.channel_release(now, end);
                let clean = matches!(outcome, EndOutcome::Clean | EndOutcome::Closed);
                if !clean {
                    return Err(ExampleError::End(outcome));
                }
                if Some(end) == reader {
                    read_done = true;
                } else if let Some(serving) = serving.as_mut().filter(|s| s.input == end) {
                    // The input ended cleanly: close the output after the last bytes,
                    // then answer the call.
                    serving.forward.close_when_empty = true;
                    serving.forward.pump(worker)?;
                    let reply = to_payload(&serde_json::json!({ "echoed": true }));
                    worker.complete(now, serving.invocation_id, Ok(Some(reply)))?;
                }
            }
            _ => {}
        }
    }
    driver.worker.shutdown(Instant::now());
    // Let the Close frames out before the sockets are dropped.
    let _ = driver.next_event(Instant::now() + Duration::from_millis(100));
    Ok(received)
}

/// What `example::echo` takes.
#[derive(serde::Deserialize)]
struct EchoInput {
    input: ChannelRef,
    output: ChannelRef,
}

fn function_spec() -> FunctionSpec {
    FunctionSpec {
        id: ECHO.to_owned(),
        description: Some("Copies the `input` channel into the `output` channel".to_owned()),
        request_format: None,
        response_format: None,
        metadata: None,
    }
}

/// Bytes of the pattern `main` streams (several windows' worth, so flow control works).
pub fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn main() -> Result<(), ExampleError> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:49134".to_owned());
    let payload = pattern(4 * 1024 * 1024);
    let deadline = Instant::now() + Duration::from_secs(60);
    let received = echo_round_trip(&url, payload.clone(), deadline)?;
    let same = received == payload;
    println!(
        "sent {} bytes, {} came back, same: {same}",
        payload.len(),
        received.len()
    );
    if !same {
        std::process::exit(1);
    }
    Ok(())
}
