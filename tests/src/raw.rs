//! A raw harness around one [`Engine`]: connect with a target path, send JSON text,
//! read back what the engine transmitted, per connection. For wire-exact tests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use iii_core::engine::{
    Accepted, Admission, Engine, EngineConfig, EngineEvent, EngineOutput, Ticket,
};
use iii_core::upgrade::{Rejection, UpgradeRequest};
use iii_core::{CloseCode, ConnId, Message, PeerClose, Text};
use serde_json::Value;

/// What a connection has received.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Messages, in order.
    pub messages: Vec<Message>,
    /// The Close the engine sent, if any.
    pub closed: Option<(Option<CloseCode>, String)>,
    /// The engine paused reading this connection.
    pub paused: bool,
    /// The engine aborted it (dropping what was not written) rather than closing it.
    pub aborted: bool,
}

impl Inbox {
    /// The text messages parsed as JSON.
    pub fn json(&self) -> Vec<Value> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::Text(t) => serde_json::from_str(t.as_str()).ok(),
                Message::Binary(_) => None,
            })
            .collect()
    }
}

/// One engine driven by hand. Every transmitted message is immediately reported sent.
pub struct RawEngine {
    /// The engine.
    pub engine: Engine,
    /// The clock.
    pub now: Instant,
    /// What each connection received.
    pub inboxes: BTreeMap<ConnId, Inbox>,
    /// Engine events.
    pub events: Vec<EngineEvent>,
    /// Report sends at once (true) or leave them to `flush`.
    pub auto_sent: bool,
    /// Decisions on deferred upgrades (RBAC listeners), by ticket.
    pub admitted: BTreeMap<Ticket, Result<Accepted, Rejection>>,
    unsent: BTreeMap<ConnId, usize>,
    calls: u64,
}

impl RawEngine {
    /// An engine with `config`.
    pub fn new(config: EngineConfig) -> Self {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let engine = Engine::new(config, [9; 32], now).expect("valid config");
        Self {
            engine,
            now,
            inboxes: BTreeMap::new(),
            events: Vec::new(),
            auto_sent: true,
            admitted: BTreeMap::new(),
            unsent: BTreeMap::new(),
            calls: 0,
        }
    }

    /// Upgrades to `target`.
    pub fn connect(&mut self, target: &str) -> Result<Accepted, Rejection> {
        self.connect_with(target, None)
    }

    /// Upgrades to `target` with an `Authorization` header.
    pub fn connect_with(
        &mut self,
        target: &str,
        auth: Option<&str>,
    ) -> Result<Accepted, Rejection> {
        let request = UpgradeRequest::to(target).with_authorization(auth);
        match self.upgrade(&request) {
            Admission::Accepted(accepted) => Ok(accepted),
            Admission::Refused(rejection) => Err(rejection),
            Admission::Deferred(ticket) => panic!("the main listener deferred {ticket:?}"),
        }
    }

    /// Upgrades with `request` as it is (any listener, headers, peer address).
    pub fn upgrade(&mut self, request: &UpgradeRequest<'_>) -> Admission {
        let admission = self.engine.accept(self.now, request);
        if let Admission::Accepted(accepted) = &admission {
            self.inboxes.entry(accepted.conn).or_default();
        }
        self.drain();
        admission
    }

    /// A control connection on `listener` with `headers` from `peer`, admitted at once
    /// or after its authentication function answered (which the caller drives); returns
    /// the connection and its worker id, or why it was not admitted.
    pub fn control_on(
        &mut self,
        listener: usize,
        target: &str,
        headers: &[(String, String)],
    ) -> Result<(ConnId, String), Rejection> {
        let request = UpgradeRequest::to(target).on_listener(
            listener,
            Some(std::net::IpAddr::from([127, 0, 0, 1])),
            headers,
        );
        let accepted = match self.upgrade(&request) {
            Admission::Accepted(accepted) => accepted,
            Admission::Refused(rejection) => return Err(rejection),
            Admission::Deferred(ticket) => match self.admitted.remove(&ticket) {
                Some(decision) => decision?,
                None => return Err(Rejection::Unavailable),
            },
        };
        let hello = self.take_json(accepted.conn).remove(0);
        assert_eq!(hello["type"], "workerregistered");
        Ok((
            accepted.conn,
            hello["worker_id"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    /// A control connection; returns it and its worker id.
    pub fn control(&mut self) -> (ConnId, String) {
        let conn = self.connect("/").expect("control accepted").conn;
        let hello = self.take_json(conn).remove(0);
        assert_eq!(hello["type"], "workerregistered");
        (
            conn,
            hello["worker_id"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Sends a JSON value as a text message.
    pub fn send(&mut self, conn: ConnId, value: Value) {
        self.send_text(conn, &value.to_string());
    }

    /// Sends raw text.
    pub fn send_text(&mut self, conn: ConnId, text: &str) {
        self.engine
            .handle_message(self.now, conn, Message::Text(Text::from(text.to_owned())));
        self.drain();
    }

    /// Sends binary.
    pub fn send_binary(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.engine
            .handle_message(self.now, conn, Message::Binary(bytes.into()));
        self.drain();
    }

    /// Calls `function_id` from `conn` with `data` under a fresh invocation id and
    /// returns the `invocationresult` that answers it (other messages `conn` received
    /// meanwhile are dropped). Panics if no answer arrived.
    pub fn call(&mut self, conn: ConnId, function_id: &str, data: Value) -> Value {
        let id = self.call_async(conn, function_id, data);
        self.take_json(conn)
            .into_iter()
            .find(|m| m["type"] == "invocationresult" && m["invocation_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no answer to {function_id}"))
    }

    /// Sends a call of `function_id` from `conn` with `data` under a fresh invocation
    /// id, and returns the id (the answer, if any, lands in `conn`'s inbox).
    pub fn call_async(&mut self, conn: ConnId, function_id: &str, data: Value) -> String {
        self.calls += 1;
        let id = format!("00000000-0000-4000-8000-{:012x}", self.calls);
        self.send(
            conn,
            serde_json::json!({"type": "invokefunction", "invocation_id": id,
                               "function_id": function_id, "data": data}),
        );
        id
    }

    /// The peer closes `conn`.
    pub fn close(&mut self, conn: ConnId, close: PeerClose) {
        self.engine.handle_closed(self.now, conn, close);
        self.drain();
    }

    /// Advances the clock and runs due timers.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.engine.handle_timeout(self.now);
        self.drain();
    }

    /// Reports every unsent message of `conn` as sent.
    pub fn flush(&mut self, conn: ConnId) {
        let count = self.unsent.remove(&conn).unwrap_or(0);
        self.engine.handle_sent(self.now, conn, count);
        self.drain();
    }

    /// Takes the JSON messages `conn` received so far.
    pub fn take_json(&mut self, conn: ConnId) -> Vec<Value> {
        let inbox = self.inboxes.entry(conn).or_default();
        let json = inbox.json();
        inbox.messages.clear();
        json
    }

    fn closed(&mut self, conn: ConnId, code: Option<CloseCode>, reason: &str, aborted: bool) {
        let inbox = self.inboxes.entry(conn).or_default();
        assert!(inbox.closed.is_none(), "second close on {conn}");
        inbox.closed = Some((code, reason.to_owned()));
        inbox.aborted = aborted;
        self.engine.handle_closed(
            self.now,
            conn,
            PeerClose::Frame {
                code,
                reason: reason.to_owned(),
            },
        );
    }

    /// Runs the engine's outputs into the inboxes.
    pub fn drain(&mut self) {
        loop {
            let mut sent = Vec::new();
            while let Some(output) = self.engine.poll_output() {
                match output {
                    EngineOutput::Transmit { conn, message } => {
                        // A driver opens a connection when its upgrade is decided:
                        // nothing may be sent to it before.
                        let Some(inbox) = self.inboxes.get_mut(&conn) else {
                            panic!("transmit to {conn} before its upgrade was decided");
                        };
                        assert!(inbox.closed.is_none(), "transmit after close on {conn}");
                        inbox.messages.push(message);
                        if self.auto_sent {
                            sent.push(conn);
                        } else {
                            *self.unsent.entry(conn).or_default() += 1;
                        }
                    }
                    EngineOutput::Close { conn, code, reason } => {
                        self.closed(conn, code, reason, false);
                    }
                    EngineOutput::Abort { conn, code, reason } => {
                        self.closed(conn, Some(code), reason, true);
                    }
                    EngineOutput::PauseRead { conn } => {
                        self.inboxes.entry(conn).or_default().paused = true
                    }
                    EngineOutput::ResumeRead { conn } => {
                        self.inboxes.entry(conn).or_default().paused = false
                    }
                    EngineOutput::Event(event) => self.events.push(event),
                    EngineOutput::Admitted { ticket, admission } => {
                        if let Ok(accepted) = &admission {
                            self.inboxes.entry(accepted.conn).or_default();
                        }
                        self.admitted.insert(ticket, admission);
                    }
                }
            }
            if sent.is_empty() {
                return;
            }
            for conn in sent {
                self.engine.handle_sent(self.now, conn, 1);
            }
        }
    }
}
