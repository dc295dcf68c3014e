//! Local channel ends: writers (chunked writes under a byte window and send credit)
//! and readers (delivery with backpressure), each on its own connection.

use crate::Instant;
use std::collections::VecDeque;

use bytes::Bytes;

use super::{
    ConnectTarget, EndId, EndOutcome, ReadError, Worker, WorkerEvent, WorkerOutput, WriteError,
};
use crate::channel::{ChannelRef, Direction};
use crate::chunk::chunks;
use crate::ids::ConnId;
use crate::outbox::Outbox;
use crate::wire::{CloseCode, Message, PeerClose, Text};

/// Where an end's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndState {
    /// Never connected (lazy).
    Idle,
    /// `Connect` emitted.
    Connecting(ConnId),
    /// Connected.
    Open(ConnId),
    /// Over; nothing more happens.
    Ended,
}

/// One local channel end.
#[derive(Debug)]
pub(super) struct End {
    channel_ref: ChannelRef,
    state: EndState,
    /// Writer: frames waiting for the connection or for credit.
    outbox: Outbox,
    /// Writer: sizes of transmitted frames not yet reported sent, oldest first.
    in_flight: VecDeque<usize>,
    /// Writer: queued plus in-flight bytes. Reader: delivered, unconsumed bytes.
    used: usize,
    /// Writer: a write was refused or partial; report `ChannelWritable` on space.
    blocked: bool,
    /// Reader: `PauseRead` is in force.
    paused: bool,
    /// Close requested, with its code: a writer's clean close (`None`) or abort, or a
    /// reader's early close (1001).
    close: Option<Option<CloseCode>>,
}

impl End {
    fn is_writer(&self) -> bool {
        self.channel_ref.direction == Direction::Write
    }

    fn conn(&self) -> Option<ConnId> {
        match self.state {
            EndState::Connecting(conn) | EndState::Open(conn) => Some(conn),
            EndState::Idle | EndState::Ended => None,
        }
    }
}

impl Worker {
    /// Makes a local end for `channel_ref`; it connects lazily, on its first write,
    /// close or `channel_start_reading`.
    pub fn open_channel(&mut self, now: Instant, channel_ref: ChannelRef) -> EndId {
        let _ = now;
        self.next_end += 1;
        let id = EndId(self.next_end);
        let end = End {
            channel_ref,
            state: if self.shut_down {
                EndState::Ended
            } else {
                EndState::Idle
            },
            outbox: Outbox::new(self.config.send_credit),
            in_flight: VecDeque::new(),
            used: 0,
            blocked: false,
            paused: false,
            close: None,
        };
        self.ends.insert(id, end);
        id
    }

    fn writer(&mut self, id: EndId) -> Result<&mut End, WriteError> {
        if self.shut_down {
            return Err(WriteError::Stopped);
        }
        let end = self.ends.get_mut(&id).ok_or(WriteError::UnknownEnd(id))?;
        if !end.is_writer() {
            return Err(WriteError::NotWriter(id));
        }
        if end.state == EndState::Ended {
            return Err(WriteError::Ended(id));
        }
        if end.close.is_some() {
            return Err(WriteError::Closing(id));
        }
        Ok(end)
    }

    fn reader(&mut self, id: EndId) -> Result<&mut End, ReadError> {
        if self.shut_down {
            return Err(ReadError::Stopped);
        }
        let end = self.ends.get_mut(&id).ok_or(ReadError::UnknownEnd(id))?;
        if end.is_writer() {
            return Err(ReadError::NotReader(id));
        }
        Ok(end)
    }

    /// Writes up to the free window of a writer end, in frames of at most
    /// `chunk_size`; returns the bytes accepted. `Err(Blocked)` when none fit.
    pub fn channel_write(
        &mut self,
        now: Instant,
        end: EndId,
        data: Bytes,
    ) -> Result<usize, WriteError> {
        let _ = now;
        let window = self.config.writer_window_bytes;
        let chunk_size = self.config.chunk_size;
        let state = self.writer(end)?;
        let free = window.saturating_sub(state.used);
        if free == 0 && !data.is_empty() {
            state.blocked = true;
            return Err(WriteError::Blocked(end));
        }
        let accept = data.len().min(free);
        if accept < data.len() {
            state.blocked = true;
        }
        for piece in chunks(data.slice(..accept), chunk_size) {
            state.used += piece.len();
            // Small writes that wait for credit merge into frames of up to chunk_size.
            state.outbox.push_stream_chunk(piece, chunk_size);
        }
        self.ensure_connected(end);
        self.pump_end(end);
        Ok(accept)
    }

    /// Sends one text message on a writer end; it counts against the window and is
    /// refused with `Blocked` when it does not fit (unless the window is empty).
    pub fn channel_send_text(
        &mut self,
        now: Instant,
        end: EndId,
        text: Text,
    ) -> Result<(), WriteError> {
        let _ = now;
        let window = self.config.writer_window_bytes;
        let state = self.writer(end)?;
        if state.used > 0 && state.used.saturating_add(text.len()) > window {
            state.blocked = true;
            return Err(WriteError::Blocked(end));
        }
        state.used = state.used.saturating_add(text.len());
        let _ = state.outbox.push(Message::Text(text), usize::MAX);
        self.ensure_connected(end);
        self.pump_end(end);
        Ok(())
    }

    /// Ends a writer cleanly: a Close without a code follows every queued frame. An end
    /// that never connected connects first, so its reader ends at once.
    pub fn channel_close(&mut self, now: Instant, end: EndId) -> Result<(), WriteError> {
        let _ = now;
        self.writer(end)?.close = Some(None);
        self.ensure_connected(end);
        self.pump_end(end);
        Ok(())
    }

    /// Aborts a writer: drops its queue and closes with `code` at once (after
    /// connecting, for an end that never connected).
    pub fn channel_abort(
        &mut self,
        now: Instant,
        end: EndId,
        code: CloseCode,
    ) -> Result<(), WriteError> {
        let _ = now;
        let credit = self.config.send_credit;
        let state = match self.writer(end) {
            Err(WriteError::Closing(_)) => {
                self.ends.get_mut(&end).ok_or(WriteError::UnknownEnd(end))?
            }
            other => other?,
        };
        state.close = Some(Some(code));
        state.outbox = Outbox::new(credit);
        self.ensure_connected(end);
        self.pump_end(end);
        Ok(())
    }

    /// Starts reading a reader end: connects it (once; later calls do nothing).
    pub fn channel_start_reading(&mut self, now: Instant, end: EndId) -> Result<(), ReadError> {
        let _ = now;
        if self.reader(end)?.state == EndState::Ended {
            return Err(ReadError::Ended(end));
        }
        self.ensure_connected(end);
        Ok(())
    }

    /// The application consumed `bytes` delivered at a reader end; reading resumes
    /// when the unconsumed bytes fall to half the window. Accepted on an ended reader
    /// (the data may still be in the application's hands), where it does nothing.
    pub fn channel_consumed(
        &mut self,
        now: Instant,
        end: EndId,
        bytes: usize,
    ) -> Result<(), ReadError> {
        let _ = now;
        let half = self.config.reader_window_bytes / 2;
        let state = self.reader(end)?;
        state.used = state.used.saturating_sub(bytes);
        if state.paused && state.used <= half {
            if let EndState::Open(conn) = state.state {
                state.paused = false;
                self.emit(WorkerOutput::ResumeRead { conn });
            }
        }
        Ok(())
    }

    /// The application dropped its handle of `end`; returns `true` while the end still
    /// has work to finish (the adapter calls [`channel_release`](Self::channel_release)
    /// after its [`WorkerEvent::ChannelEnded`]).
    ///
    /// * An end that never attached (no write, close or read started it) is forgotten
    ///   without a trace: nothing is dialed, so the ref it came from keeps working in
    ///   whichever worker it was handed to.
    /// * A reader is released (its connection, if any, closed with 1001).
    /// * A writer that attached and is not closing is aborted (1011 after it connects):
    ///   its reader sees an error, never a clean end. A closing writer finishes its
    ///   flush and its clean Close first.
    pub fn channel_drop(&mut self, now: Instant, end: EndId) -> bool {
        let Some(state) = self.ends.get(&end) else {
            return false;
        };
        let finishing = state.is_writer() && state.state != EndState::Ended;
        if state.state == EndState::Idle || !finishing {
            self.channel_release(now, end);
            return false;
        }
        if state.close.is_none() {
            // Cannot fail: the end exists, is a writer and has not ended.
            let _ = self.channel_abort(now, end, CloseCode::INTERNAL);
        }
        true
    }

    /// Bytes a writer end accepts now without refusing (`writer_window_bytes` minus what
    /// it holds); 0 for a reader, an ended or closing writer, or an unknown end.
    pub fn channel_free_window(&self, end: EndId) -> usize {
        match self.ends.get(&end) {
            Some(state)
                if state.is_writer() && state.state != EndState::Ended && state.close.is_none() =>
            {
                self.config.writer_window_bytes.saturating_sub(state.used)
            }
            _ => 0,
        }
    }

    /// Asks for a [`WorkerEvent::ChannelWritable`] the next time the writer's window
    /// grows (after frames are flushed), as after a refused write. Adapters that hand
    /// window space to an application ahead of its writes use this to hear of more.
    pub fn channel_want_writable(&mut self, now: Instant, end: EndId) -> Result<(), WriteError> {
        let _ = now;
        self.writer(end)?.blocked = true;
        Ok(())
    }

    /// Closes a reader end before its stream ended: the engine hears 1001 (going away)
    /// and fails the writer's next write. A reader that never attached connects first,
    /// so that its writer learns it too. Closing an ended reader does nothing.
    pub fn channel_close_reader(&mut self, now: Instant, end: EndId) -> Result<(), ReadError> {
        let _ = now;
        let state = self.reader(end)?;
        if state.state == EndState::Ended || state.close.is_some() {
            return Ok(());
        }
        state.close = Some(Some(CloseCode::GOING_AWAY));
        self.ensure_connected(end);
        self.pump_end(end);
        Ok(())
    }

    /// Forgets an end, closing its connection (code 1001) if it has one. No event.
    pub fn channel_release(&mut self, now: Instant, end: EndId) {
        let _ = now;
        let Some(state) = self.ends.remove(&end) else {
            return;
        };
        if let Some(conn) = state.conn() {
            self.end_conns.remove(&conn);
            self.emit(WorkerOutput::Close {
                conn,
                code: Some(CloseCode::GOING_AWAY),
                reason: "released",
            });
        }
    }

    fn ensure_connected(&mut self, end: EndId) {
        let target = match self.ends.get(&end) {
            Some(state) if state.state == EndState::Idle => state.channel_ref.clone(),
            _ => return,
        };
        let conn = self.alloc_conn();
        if let Some(state) = self.ends.get_mut(&end) {
            state.state = EndState::Connecting(conn);
        }
        self.end_conns.insert(conn, end);
        self.emit(WorkerOutput::Connect {
            conn,
            target: ConnectTarget::Channel(target),
        });
    }

    /// Releases a writer's frames under credit, then its Close once requested and
    /// (for a clean close) the queue is empty.
    fn pump_end(&mut self, end: EndId) {
        let Some(state) = self.ends.get_mut(&end) else {
            return;
        };
        let EndState::Open(conn) = state.state else {
            return;
        };
        let mut out = Vec::new();
        while let Some(message) = state.outbox.release() {
            state.in_flight.push_back(message.len());
            out.push(WorkerOutput::Transmit { conn, message });
        }
        let closing = state.close.filter(|_| state.outbox.queued() == 0);
        let writer = state.is_writer();
        self.outputs.extend(out);
        if let Some(code) = closing {
            let reason = match (writer, code) {
                (false, _) => "reader closed",
                (true, Some(_)) => "abort",
                (true, None) => "channel_close",
            };
            self.end_conns.remove(&conn);
            self.emit(WorkerOutput::Close { conn, code, reason });
            self.end_finished(end, EndOutcome::Closed);
        }
    }

    /// Marks an end over and reports it.
    pub(super) fn end_finished(&mut self, end: EndId, outcome: EndOutcome) {
        if let Some(state) = self.ends.get_mut(&end) {
            if state.state == EndState::Ended {
                return;
            }
            state.state = EndState::Ended;
            state.outbox = Outbox::new(1);
            state.in_flight.clear();
            self.event(WorkerEvent::ChannelEnded { end, outcome });
        }
    }

    /// An end's connection opened.
    pub(super) fn end_connected(&mut self, now: Instant, end: EndId, conn: ConnId) {
        let _ = now;
        if let Some(state) = self.ends.get_mut(&end) {
            if state.state == EndState::Connecting(conn) {
                state.state = EndState::Open(conn);
            }
        }
        self.pump_end(end);
    }

    /// A message arrived on an end's connection.
    pub(super) fn end_message(&mut self, end: EndId, conn: ConnId, message: Message) {
        let window = self.config.reader_window_bytes;
        let Some(state) = self.ends.get_mut(&end) else {
            return;
        };
        if state.is_writer() {
            // The engine never sends on a writer's connection; ignore it.
            return;
        }
        match state.state {
            EndState::Open(open) if open == conn => {}
            // A message before `handle_connected` proves the connection is open.
            EndState::Connecting(pending) if pending == conn => state.state = EndState::Open(conn),
            _ => return,
        }
        if state.close.is_some() {
            // Closed by the application: what arrives now is nobody's.
            self.pump_end(end);
            return;
        }
        state.used = state.used.saturating_add(message.len());
        let pause = !state.paused && state.used >= window;
        if pause {
            state.paused = true;
        }
        let event = match message {
            Message::Binary(data) => WorkerEvent::ChannelData { end, data },
            Message::Text(text) => WorkerEvent::ChannelText { end, text },
        };
        self.event(event);
        if pause {
            self.emit(WorkerOutput::PauseRead { conn });
        }
    }

    /// Frames transmitted on a writer's connection were flushed.
    pub(super) fn end_sent(&mut self, end: EndId, count: usize) {
        let window = self.config.writer_window_bytes;
        let Some(state) = self.ends.get_mut(&end) else {
            return;
        };
        let returned = state.outbox.sent(count);
        for _ in 0..returned {
            let size = state.in_flight.pop_front().unwrap_or(0);
            state.used = state.used.saturating_sub(size);
        }
        self.pump_end(end);
        let Some(state) = self.ends.get_mut(&end) else {
            return;
        };
        if state.blocked && state.state != EndState::Ended && state.used < window {
            state.blocked = false;
            self.event(WorkerEvent::ChannelWritable { end });
        }
    }

    /// An end's connection ended (its mapping is already removed).
    pub(super) fn end_closed(&mut self, end: EndId, close: PeerClose) {
        let writer = self.ends.get(&end).is_some_and(End::is_writer);
        let outcome = match close {
            PeerClose::Lost => EndOutcome::Lost,
            PeerClose::Frame { code, reason }
                if writer || !code.is_none_or(CloseCode::is_normal) =>
            {
                EndOutcome::Aborted { code, reason }
            }
            PeerClose::Frame { .. } => EndOutcome::Clean,
        };
        self.end_finished(end, outcome);
    }

    /// Shutdown: closes every end's connection and ends every end.
    pub(super) fn close_all_ends(&mut self) {
        let ids: Vec<EndId> = self.ends.keys().copied().collect();
        for end in ids {
            let conn = self.ends.get(&end).and_then(End::conn);
            if let Some(conn) = conn {
                self.end_conns.remove(&conn);
                self.emit(WorkerOutput::Close {
                    conn,
                    code: Some(CloseCode::GOING_AWAY),
                    reason: "shutdown",
                });
            }
            self.end_finished(end, EndOutcome::Closed);
        }
    }
}
