//! When a channel writer is paused and resumed: each channel's byte and message limits
//! and the engine-wide budget for buffered channel bytes.
//!
//! After the core pauses a writer, more of its bytes may still arrive: the adapter reads
//! ahead of the core (at most `read_ahead_bytes`, plus the message it is reading), and the
//! message that triggered the pause already counted. So a writer is paused as soon as
//! its channel holds more than `channel_buffer_bytes - reserve`, where
//! `reserve = read_ahead_bytes + 2 × max_channel_message_bytes`: what the engine holds
//! for the channel, read-ahead included, then never exceeds `channel_buffer_bytes`.
//! It is resumed once the channel has drained to half of that (and half its messages).
//!
//! The engine-wide budget works the same way over everything committed: the bytes in all
//! channels plus, for every paused writer, the read-ahead its connection may still hold
//! (`read_ahead_bytes` + one message). A writer whose message brings that within
//! `reserve` of `max_buffered_channel_bytes` is paused, and writers paused only for the
//! budget are resumed in the order they were paused once it has fallen an eighth below
//! the budget. A writer that is not paused may have its read-ahead in transit on top
//! (at most `read_ahead_bytes` + one message each), which is what the engine can hold
//! beyond the budget.

use uuid::Uuid;

use super::{Engine, EngineOutput};
use crate::ids::ConnId;
use crate::Instant;

impl Engine {
    /// Bytes that may still arrive on a writer's connection after the core pauses it.
    fn writer_reserve(&self) -> usize {
        self.config
            .read_ahead_bytes
            .saturating_add(self.config.max_channel_message_bytes.saturating_mul(2))
    }

    /// The most a channel may hold before its writer is paused.
    fn channel_high_water(&self) -> usize {
        self.config
            .channel_buffer_bytes
            .saturating_sub(self.writer_reserve())
    }

    /// What a paused writer's connection may still hold in the adapter.
    fn read_ahead_reserve(&self) -> usize {
        self.config
            .read_ahead_bytes
            .saturating_add(self.config.max_channel_message_bytes)
    }

    /// Bytes counted against the engine-wide budget: every channel's buffer and the
    /// read-ahead of every paused writer.
    pub(super) fn committed_channel_bytes(&self) -> usize {
        self.channel_bytes.saturating_add(
            self.paused_writers
                .saturating_mul(self.read_ahead_reserve()),
        )
    }

    /// True when the engine-wide budget has no room for another writer's reserve.
    fn budget_spent(&self) -> bool {
        self.committed_channel_bytes()
            .saturating_add(self.writer_reserve())
            > self.config.max_buffered_channel_bytes
    }

    /// True when writers paused for the budget may be resumed.
    fn budget_recovered(&self) -> bool {
        let budget = self.config.max_buffered_channel_bytes;
        self.committed_channel_bytes()
            .saturating_add(self.writer_reserve())
            <= budget - budget / 8
    }

    /// A paused writer stopped counting (resumed, detached or removed).
    pub(super) fn writer_unpaused(&mut self) {
        self.paused_writers = self.paused_writers.saturating_sub(1);
    }

    /// Pauses the writer `conn` of channel `id` if its channel or the engine-wide budget
    /// is full.
    pub(super) fn pause_if_full(&mut self, now: Instant, id: Uuid, conn: ConnId) {
        let high_water = self.channel_high_water();
        let budget_spent = self.budget_spent();
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        let (bytes, frames) = channel.held();
        let own_full = frames >= channel.frame_limit() || bytes > high_water;
        if (own_full || budget_spent) && channel.paused_since.is_none() {
            channel.paused_since = Some(now);
            self.paused_writers += 1;
            self.metrics.writer_pauses += 1;
            self.out.push_back(EngineOutput::PauseRead { conn });
            if !own_full {
                // Only the budget holds it: its own reader may never make progress, so
                // it waits in line for the budget instead.
                channel.waiting_for_budget = true;
                self.budget_waiters.push_back(id);
            }
        }
    }

    /// The channel's reader made progress: resume its paused writer if the channel has
    /// drained, or queue it for the budget if only the budget holds it back.
    pub(super) fn resume_if_drained(&mut self, now: Instant, id: Uuid) {
        self.resume(now, id, false);
    }

    /// Resumes the writer of channel `id` if its channel has room again (drained to half
    /// its high water, or, when `only_budget` held it, merely below its high water) and
    /// the budget has recovered; otherwise queues it for the budget if only the budget
    /// holds it back.
    fn resume(&mut self, now: Instant, id: Uuid, only_budget: bool) {
        let high_water = self.channel_high_water();
        let budget_recovered = self.budget_recovered();
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        let Some(since) = channel.paused_since else {
            return;
        };
        let (bytes, frames) = channel.held();
        let limit = channel.frame_limit();
        let (byte_room, frame_room) = if only_budget {
            (high_water, limit.saturating_sub(1))
        } else {
            (high_water / 2, limit / 2)
        };
        if bytes > byte_room || frames > frame_room {
            return;
        }
        if !budget_recovered {
            if !channel.waiting_for_budget {
                channel.waiting_for_budget = true;
                self.budget_waiters.push_back(id);
            }
            return;
        }
        channel.paused_since = None;
        channel.waiting_for_budget = false;
        channel.add_blocked(since, now);
        self.paused_writers = self.paused_writers.saturating_sub(1);
        if let Some(writer) = channel.writer_conn() {
            if self.is_open(writer) {
                self.out
                    .push_back(EngineOutput::ResumeRead { conn: writer });
            }
        }
    }

    /// Channel bytes were freed: resume writers waiting for the budget, oldest first,
    /// while it has recovered.
    pub(super) fn release_budget(&mut self, now: Instant) {
        while self.budget_recovered() {
            let Some(id) = self.budget_waiters.pop_front() else {
                return;
            };
            let Some(channel) = self.channels.get_mut(&id) else {
                continue;
            };
            if !channel.waiting_for_budget {
                continue; // resumed or finished since it queued
            }
            channel.waiting_for_budget = false;
            self.resume(now, id, true);
        }
    }

    /// Writers currently paused only for the engine-wide budget.
    pub(super) fn budget_waiters_len(&self) -> usize {
        self.budget_waiters
            .iter()
            .filter(|id| self.channels.get(id).is_some_and(|c| c.waiting_for_budget))
            .count()
    }
}
