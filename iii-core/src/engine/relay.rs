//! Channels on the engine: pairing of ends by key and direction, and the relay of the
//! writer's messages to the reader under byte, frame and credit limits.

use crate::Instant;
use std::collections::{BTreeSet, VecDeque};

use serde::Serialize;
use uuid::Uuid;

use super::{
    ChannelOutcome, ChannelStats, CreateChannelError, Engine, EngineEvent, EngineOutput, Timer,
};
use crate::channel::{ChannelRef, ChannelRefs, Direction};
use crate::engine::Quota;
use crate::ids::{ConnId, Secret};
use crate::upgrade::Rejection;
use crate::wire::{CloseCode, Message, PeerClose};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Never attached yet.
    Waiting,
    Attached(ConnId),
    /// Attached once and finished; the ref is spent.
    Done,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::Waiting => "waiting",
            End::Attached(_) => "attached",
            End::Done => "done",
        }
    }
}

/// How the stream ends once the buffer is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    Clean,
    Failed(ChannelOutcome),
}

#[derive(Debug)]
pub(super) struct Channel {
    id: Uuid,
    writer_key: Secret,
    reader_key: Secret,
    owner: Option<String>,
    /// The control connection that created it, while that connection lives.
    pub(super) owner_conn: Option<ConnId>,
    frame_limit: usize,
    writer: End,
    reader: End,
    /// Messages from the writer; the first `transmitted` were handed to the reader's
    /// connection and wait for `handle_sent`.
    buffer: VecDeque<Message>,
    transmitted: usize,
    bytes: usize,
    pub(super) paused_since: Option<Instant>,
    /// The writer is paused and only the engine-wide budget keeps it so.
    pub(super) waiting_for_budget: bool,
    end: Option<StreamEnd>,
    stats: ChannelStats,
}

/// A live channel as listed by `engine::channels::list` and [`Engine::channels`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelInfo {
    /// The channel id.
    pub channel_id: String,
    /// The worker that created it.
    pub owner_worker_id: Option<String>,
    /// The name that worker announced (`engine::workers::register`), while it is
    /// connected and has announced one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
    /// Its buffer limit in messages.
    pub buffer_size: usize,
    /// `waiting`, `attached` or `done`.
    pub writer: &'static str,
    /// `waiting`, `attached` or `done`.
    pub reader: &'static str,
    /// Bytes held (queued plus in flight to the reader).
    pub buffered_bytes: usize,
    /// Messages held.
    pub buffered_frames: usize,
    /// Whether the writer's socket is paused.
    pub writer_paused: bool,
    /// Messages accepted from the writer.
    pub frames_in: u64,
    /// Bytes accepted from the writer.
    pub bytes_in: u64,
    /// Messages handed to the reader.
    pub frames_out: u64,
    /// Milliseconds the writer spent paused, the pause under way included (when the
    /// listing knows the time: `engine::channels::list` does).
    pub blocked_ms: u64,
}

impl Channel {
    /// True when it holds no data and no end is attached (nothing to drain).
    pub(super) fn is_idle(&self) -> bool {
        self.bytes == 0
            && !matches!(self.reader, End::Attached(_))
            && !matches!(self.writer, End::Attached(_))
    }

    /// True while an end has never attached (the channel can still expire).
    pub(super) fn half_attached(&self) -> bool {
        self.reader == End::Waiting || self.writer == End::Waiting
    }

    /// The writer's connection, while attached.
    pub(super) fn writer_conn(&self) -> Option<ConnId> {
        match self.writer {
            End::Attached(conn) => Some(conn),
            _ => None,
        }
    }

    /// Bytes and messages held.
    pub(super) fn held(&self) -> (usize, usize) {
        (self.bytes, self.buffer.len())
    }

    /// Its buffer limit in messages.
    pub(super) fn frame_limit(&self) -> usize {
        self.frame_limit
    }

    /// Adds the time the writer spent paused since `since` to its counters.
    pub(super) fn add_blocked(&mut self, since: Instant, now: Instant) {
        self.stats.blocked_ms += now.saturating_duration_since(since).as_millis() as u64;
    }

    /// Its listing row; with `now`, the current pause counts toward `blocked_ms`.
    pub(super) fn info(&self, now: Option<Instant>, owner_name: Option<String>) -> ChannelInfo {
        let current = match (now, self.paused_since) {
            (Some(now), Some(since)) => now.saturating_duration_since(since).as_millis() as u64,
            _ => 0,
        };
        ChannelInfo {
            channel_id: self.id.to_string(),
            owner_worker_id: self.owner.clone(),
            owner_name,
            buffer_size: self.frame_limit,
            writer: self.writer.label(),
            reader: self.reader.label(),
            buffered_bytes: self.bytes,
            buffered_frames: self.buffer.len(),
            writer_paused: self.paused_since.is_some(),
            frames_in: self.stats.frames_in,
            bytes_in: self.stats.bytes_in,
            frames_out: self.stats.frames_out,
            blocked_ms: self.stats.blocked_ms.saturating_add(current),
        }
    }
}

fn failure_reason(outcome: ChannelOutcome) -> &'static str {
    match outcome {
        ChannelOutcome::WriterLost => "writer lost",
        ChannelOutcome::Oversized => "writer sent a message over the size limit",
        ChannelOutcome::Expired => "channel expired before both ends attached",
        ChannelOutcome::Shutdown => "engine shutting down",
        ChannelOutcome::ReaderGone => "reader gone",
        ChannelOutcome::Completed => "end of stream",
    }
}

impl Engine {
    /// Creates a channel for `owner` (a worker's control connection and its worker id),
    /// or for the application when `owner` is `None`.
    pub(super) fn new_channel(
        &mut self,
        now: Instant,
        buffer_size: Option<u64>,
        owner: Option<(ConnId, String)>,
    ) -> Result<ChannelRefs, CreateChannelError> {
        if self.channels.len() >= self.config.max_channels {
            return Err(CreateChannelError::TooManyChannels(
                self.config.max_channels,
            ));
        }
        if let Some((conn, _)) = &owner {
            let limit = self.quotas_of(*conn).channels;
            let owned = self.channels_by_owner.get(conn).map_or(0, BTreeSet::len);
            if owned >= limit {
                return Err(CreateChannelError::Quota(Quota::Channels, limit));
            }
        }
        let (owner_conn, owner) = match owner {
            Some((conn, worker_id)) => (Some(conn), Some(worker_id)),
            None => (None, None),
        };
        let max = self.config.max_channel_buffer;
        let frame_limit = match buffer_size {
            None => self.config.default_channel_buffer.min(max),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX).clamp(1, max),
        };
        let id = self.ids.uuid();
        let writer_key = self.new_secret();
        let reader_key = self.new_secret();
        let refs = ChannelRefs {
            writer: ChannelRef {
                channel_id: id.to_string(),
                access_key: writer_key.to_hex(),
                direction: Direction::Write,
            },
            reader: ChannelRef {
                channel_id: id.to_string(),
                access_key: reader_key.to_hex(),
                direction: Direction::Read,
            },
        };
        self.channels.insert(
            id,
            Channel {
                id,
                writer_key,
                reader_key,
                owner: owner.clone(),
                owner_conn,
                frame_limit,
                writer: End::Waiting,
                reader: End::Waiting,
                buffer: VecDeque::new(),
                transmitted: 0,
                bytes: 0,
                paused_since: None,
                waiting_for_budget: false,
                end: None,
                stats: ChannelStats::default(),
            },
        );
        if let Some(conn) = owner_conn {
            self.channels_by_owner.entry(conn).or_default().insert(id);
        }
        self.metrics.channels_created += 1;
        self.timers.set_after(
            Timer::ChannelExpiry(id),
            now,
            self.config.channel_attach_timeout,
        );
        self.emit(EngineEvent::ChannelCreated {
            channel_id: id.to_string(),
            owner,
        });
        Ok(refs)
    }

    /// Checks a channel upgrade: the channel exists, the key is the one for `direction`
    /// (constant-time), and that end was never taken. Every failure is the same 404.
    pub(super) fn authorize_end(
        &self,
        channel_id: &str,
        key: &str,
        direction: Direction,
    ) -> Result<Uuid, Rejection> {
        let id = Uuid::try_parse(channel_id).map_err(|_| Rejection::NotFound)?;
        let channel = self.channels.get(&id).ok_or(Rejection::NotFound)?;
        let presented = Secret::parse(key).ok_or(Rejection::NotFound)?;
        let (expected, end) = match direction {
            Direction::Read => (&channel.reader_key, channel.reader),
            Direction::Write => (&channel.writer_key, channel.writer),
        };
        if !expected.matches(&presented) || end != End::Waiting {
            return Err(Rejection::NotFound);
        }
        Ok(id)
    }

    pub(super) fn attach_end(
        &mut self,
        now: Instant,
        id: Uuid,
        direction: Direction,
        conn: ConnId,
    ) {
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        match direction {
            Direction::Read => channel.reader = End::Attached(conn),
            Direction::Write => channel.writer = End::Attached(conn),
        }
        let paired = channel.reader != End::Waiting && channel.writer != End::Waiting;
        let failed = match channel.end {
            Some(StreamEnd::Failed(outcome)) => Some(outcome),
            _ => None,
        };
        self.emit(EngineEvent::ChannelAttached {
            channel_id: id.to_string(),
            direction,
            conn,
        });
        if paired {
            self.timers.cancel(&Timer::ChannelExpiry(id));
        }
        if direction == Direction::Read {
            match failed {
                Some(outcome) => self.fail_reader(now, id, outcome),
                None => self.pump(now, id),
            }
        }
    }

    /// A message from the writer: buffer it, pause the writer if the channel's or the
    /// engine's byte budget could be exceeded by what may still arrive, and pass what
    /// credit allows to the reader.
    pub(super) fn writer_message(
        &mut self,
        now: Instant,
        id: Uuid,
        conn: ConnId,
        message: Message,
    ) {
        let max_message = self.config.max_channel_message_bytes;
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        if channel.writer != End::Attached(conn) {
            return;
        }
        let len = message.len();
        if len > max_message {
            channel.writer = End::Done;
            self.close(
                now,
                conn,
                Some(CloseCode::TOO_BIG),
                "channel message too large",
            );
            self.fail_reader(now, id, ChannelOutcome::Oversized);
            return;
        }
        channel.buffer.push_back(message);
        channel.bytes += len;
        channel.stats.frames_in += 1;
        channel.stats.bytes_in += len as u64;
        self.metrics.channel_messages += 1;
        self.metrics.channel_bytes += len as u64;
        self.channel_bytes += len;
        self.channel_frames += 1;
        self.pause_if_full(now, id, conn);
        self.pump(now, id);
    }

    /// The reader's connection flushed `returned` of the messages handed to it.
    pub(super) fn reader_flushed(&mut self, now: Instant, id: Uuid, conn: ConnId, returned: usize) {
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        if channel.reader != End::Attached(conn) {
            return;
        }
        let mut freed = 0;
        for _ in 0..returned.min(channel.transmitted) {
            if let Some(message) = channel.buffer.pop_front() {
                channel.bytes -= message.len();
                channel.transmitted -= 1;
                freed += message.len();
                self.channel_frames -= 1;
            }
        }
        self.channel_bytes -= freed;
        self.resume_if_drained(now, id);
        self.pump(now, id);
        if freed > 0 {
            self.release_budget(now);
        }
    }

    /// Hands buffered messages to the reader while its connection has credit, and ends
    /// the stream once everything is handed over after a clean writer close.
    fn pump(&mut self, now: Instant, id: Uuid) {
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        let End::Attached(reader) = channel.reader else {
            return;
        };
        let Some(state) = self.conns.get_mut(&reader) else {
            return;
        };
        if state.closing {
            return;
        }
        while channel.transmitted < channel.buffer.len() && state.outbox.take_credit() {
            let message = channel.buffer[channel.transmitted].clone();
            channel.transmitted += 1;
            channel.stats.frames_out += 1;
            self.out.push_back(EngineOutput::Transmit {
                conn: reader,
                message,
            });
        }
        if channel.transmitted == channel.buffer.len() && channel.end == Some(StreamEnd::Clean) {
            channel.reader = End::Done;
            self.close(now, reader, None, "end of stream");
            self.remove_channel(now, id, ChannelOutcome::Completed);
        }
    }

    /// The stream failed: an attached reader is closed with 1011 now, a reader that has
    /// not attached yet will be when it does (its buffered data is dropped).
    fn fail_reader(&mut self, now: Instant, id: Uuid, outcome: ChannelOutcome) {
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        match channel.reader {
            End::Attached(reader) => {
                channel.reader = End::Done;
                self.close(
                    now,
                    reader,
                    Some(CloseCode::INTERNAL),
                    failure_reason(outcome),
                );
                self.remove_channel(now, id, outcome);
            }
            End::Waiting => {
                channel.end = Some(StreamEnd::Failed(outcome));
                let dropped_bytes = channel.bytes;
                let dropped_frames = channel.buffer.len();
                channel.buffer.clear();
                channel.transmitted = 0;
                channel.bytes = 0;
                self.channel_bytes -= dropped_bytes;
                self.channel_frames -= dropped_frames;
                self.release_budget(now);
            }
            End::Done => self.remove_channel(now, id, outcome),
        }
    }

    /// A channel end's connection went away (`close` is the peer's close, `None` when
    /// the engine closed it).
    pub(super) fn end_detached(
        &mut self,
        now: Instant,
        id: Uuid,
        direction: Direction,
        conn: ConnId,
        close: Option<&PeerClose>,
    ) {
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        match direction {
            Direction::Write => {
                if channel.writer != End::Attached(conn) {
                    return;
                }
                channel.writer = End::Done;
                channel.waiting_for_budget = false;
                let was_paused = channel.paused_since.take().map(|since| {
                    channel.add_blocked(since, now);
                });
                if close.is_some_and(PeerClose::is_clean) {
                    channel.end = Some(StreamEnd::Clean);
                }
                if was_paused.is_some() {
                    self.writer_unpaused();
                }
                if close.is_some_and(PeerClose::is_clean) {
                    self.pump(now, id);
                } else {
                    self.fail_reader(now, id, ChannelOutcome::WriterLost);
                }
            }
            Direction::Read => {
                if channel.reader != End::Attached(conn) {
                    return;
                }
                channel.reader = End::Done;
                let delivered = channel.end == Some(StreamEnd::Clean)
                    && channel.transmitted == channel.buffer.len();
                if let End::Attached(writer) = channel.writer {
                    channel.writer = End::Done;
                    self.close(now, writer, Some(CloseCode::GOING_AWAY), "reader gone");
                }
                let outcome = if delivered {
                    ChannelOutcome::Completed
                } else {
                    ChannelOutcome::ReaderGone
                };
                self.remove_channel(now, id, outcome);
            }
        }
    }

    /// The attach timeout of channel `id` passed: if an end never attached, close the
    /// attached one with 1011 and remove the channel.
    pub(super) fn expire_channel(&mut self, now: Instant, id: Uuid) {
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        if channel.reader != End::Waiting && channel.writer != End::Waiting {
            return;
        }
        let reason = failure_reason(ChannelOutcome::Expired);
        let ends = [channel.writer, channel.reader];
        channel.writer = End::Done;
        channel.reader = End::Done;
        for end in ends {
            if let End::Attached(conn) = end {
                self.close(now, conn, Some(CloseCode::INTERNAL), reason);
            }
        }
        self.remove_channel(now, id, ChannelOutcome::Expired);
    }

    pub(super) fn remove_channel(&mut self, now: Instant, id: Uuid, outcome: ChannelOutcome) {
        let Some(channel) = self.channels.remove(&id) else {
            return;
        };
        self.channel_bytes -= channel.bytes;
        self.channel_frames -= channel.buffer.len();
        self.timers.cancel(&Timer::ChannelExpiry(id));
        self.metrics.channel_removed(outcome);
        if channel.paused_since.is_some() {
            self.writer_unpaused();
        }
        if let Some(owner) = channel.owner_conn {
            if let Some(owned) = self.channels_by_owner.get_mut(&owner) {
                owned.remove(&id);
                if owned.is_empty() {
                    self.channels_by_owner.remove(&owner);
                }
            }
        }
        if channel.bytes > 0 || channel.paused_since.is_some() {
            self.release_budget(now);
        }
        self.emit(EngineEvent::ChannelRemoved {
            channel_id: id.to_string(),
            outcome,
            stats: channel.stats,
        });
    }
}
