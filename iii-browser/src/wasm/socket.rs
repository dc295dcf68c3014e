//! One browser `WebSocket` for one core connection: its events become core inputs, the
//! core's messages are sent on it, and `bufferedAmount` tells when they were flushed
//! (the core's send credit). The browser cannot stop reading a socket, so a paused
//! connection's messages are held here until the core resumes it.

use std::collections::VecDeque;

use bytes::Bytes;
use iii_core::{CloseCode, ConnId, Message, PeerClose, Text};
use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use super::{deliver, Inner};

/// What a held connection yields once resumed, in arrival order.
pub(crate) enum Held {
    Message(Message),
    Closed(PeerClose),
}

/// One connection. See the [module docs](self).
pub(crate) struct Socket {
    ws: WebSocket,
    /// The `open` event came (a close before it is a failed connect).
    pub(crate) opened: bool,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    /// Bytes handed to `send` so far.
    sent_bytes: f64,
    /// For each message not yet reported flushed: `sent_bytes` after it.
    in_flight: VecDeque<f64>,
    paused: bool,
    held: VecDeque<Held>,
}

impl Socket {
    /// Opens `url` for connection `conn`; its events go to `shared`'s driver. `Err`
    /// when the browser refuses the URL at once.
    pub(crate) fn open(
        weak: &std::rc::Weak<Inner>,
        conn: ConnId,
        url: &str,
    ) -> Result<Socket, JsValue> {
        let ws = WebSocket::new(url)?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let on_open = {
            let weak = weak.clone();
            Closure::<dyn FnMut()>::new(move || {
                if let Some(shared) = weak.upgrade() {
                    deliver(
                        &shared,
                        Box::new(move |driver, now| driver.opened(now, conn)),
                    );
                }
            })
        };
        let on_message = {
            let weak = weak.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let Some(message) = message_of(&event) else {
                    return;
                };
                if let Some(shared) = weak.upgrade() {
                    deliver(
                        &shared,
                        Box::new(move |driver, now| driver.received(now, conn, message)),
                    );
                }
            })
        };
        let weak = weak.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let close = match event.code() {
                // No status code in the Close frame.
                1005 => PeerClose::Frame {
                    code: None,
                    reason: event.reason(),
                },
                // No Close frame at all (reset, refused upgrade, network error).
                1006 => PeerClose::Lost,
                code => PeerClose::Frame {
                    code: Some(CloseCode(code)),
                    reason: event.reason(),
                },
            };
            if let Some(shared) = weak.upgrade() {
                deliver(
                    &shared,
                    Box::new(move |driver, now| driver.ended(now, conn, close)),
                );
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            opened: false,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            sent_bytes: 0.0,
            in_flight: VecDeque::new(),
            paused: false,
            held: VecDeque::new(),
        })
    }

    /// Sends one message.
    pub(crate) fn send(&mut self, message: &Message) -> Result<(), JsValue> {
        match message {
            Message::Binary(bytes) => self.ws.send_with_u8_array(bytes)?,
            Message::Text(text) => self.ws.send_with_str(text.as_str())?,
        }
        self.sent_bytes += message.len() as f64;
        self.in_flight.push_back(self.sent_bytes);
        Ok(())
    }

    /// Messages flushed since the last call (their bytes left `bufferedAmount`).
    pub(crate) fn flushed(&mut self) -> usize {
        let flushed_bytes = self.sent_bytes - f64::from(self.ws.buffered_amount());
        let mut count = 0;
        while self
            .in_flight
            .front()
            .is_some_and(|end| *end <= flushed_bytes)
        {
            self.in_flight.pop_front();
            count += 1;
        }
        count
    }

    /// True while sent messages wait to be reported flushed.
    pub(crate) fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// A message arrived: `Some` to feed it now, `None` when it is held (paused).
    pub(crate) fn incoming(&mut self, message: Message) -> Option<Message> {
        if self.paused || !self.held.is_empty() {
            self.held.push_back(Held::Message(message));
            return None;
        }
        Some(message)
    }

    /// The peer ended the connection: `Some` to report it now, `None` when it waits
    /// behind held messages.
    pub(crate) fn peer_closed(&mut self, close: PeerClose) -> Option<PeerClose> {
        if self.paused || !self.held.is_empty() {
            self.held.push_back(Held::Closed(close));
            return None;
        }
        Some(close)
    }

    /// The core paused (`true`) or resumed reading.
    pub(crate) fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// The next held input of a resumed connection.
    pub(crate) fn next_held(&mut self) -> Option<Held> {
        if self.paused {
            return None;
        }
        self.held.pop_front()
    }

    /// Closes the socket (after what was sent) and stops its events. The browser lets
    /// a page send only 1000 and 3000–4999, so another code `c` goes out as
    /// `4000 + c % 1000` (1011 as 4011): still not a clean close for the engine.
    /// Its callbacks are detached when `self` drops, right after (the `Drop` impl).
    pub(crate) fn close(self, code: Option<CloseCode>, reason: &str) {
        let _ = match code {
            None => self.ws.close(),
            Some(code) => self
                .ws
                .close_with_code_and_reason(browser_close_code(code), reason),
        };
    }
}

/// A dropped socket stops its events: its callbacks die with it, and a live `WebSocket`
/// calling freed callbacks would throw on every event. One dropped any other way than
/// [`Socket::close`] (its worker was freed) and still connecting or open is closed with
/// 1000.
impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        if matches!(
            self.ws.ready_state(),
            WebSocket::CONNECTING | WebSocket::OPEN
        ) {
            let _ = self.ws.close();
        }
    }
}

/// The code a page may send for `code` (see [`Socket::close`]).
pub(crate) fn browser_close_code(code: CloseCode) -> u16 {
    match code.0 {
        1000 | 3000..=4999 => code.0,
        other => 4000 + other % 1000,
    }
}

fn message_of(event: &MessageEvent) -> Option<Message> {
    let data = event.data();
    if let Some(buffer) = data.dyn_ref::<ArrayBuffer>() {
        return Some(Message::Binary(Bytes::from(
            Uint8Array::new(buffer).to_vec(),
        )));
    }
    data.as_string().map(|text| Message::Text(Text::from(text)))
}
