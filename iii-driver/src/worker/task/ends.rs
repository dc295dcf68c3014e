//! Channel end slots: opening, writer data under the shared window, reader delivery,
//! ends and releases.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use iii_core::channel::ChannelRef;
use iii_core::worker::{EndId, EndOutcome, ReadError, WriteError};
use iii_core::{CloseCode, Text};

use super::{EndKind, Queued, ReaderItem, Slot, SlotKind, Task, WriterSlot};
use crate::runtime::Runtime;
use crate::worker::error::reader_end;
use crate::worker::Error;

impl<R: Runtime> Task<R> {
    pub(super) fn open_end(
        &mut self,
        now: Instant,
        key: u64,
        channel_ref: ChannelRef,
        kind: EndKind,
    ) {
        let end = self.core.open_channel(now, channel_ref);
        self.keys.insert(end, key);
        let kind = match kind {
            EndKind::Reader(items) => SlotKind::Reader(items),
            EndKind::Writer(credit) => SlotKind::Writer(WriterSlot {
                credit,
                arrived: 0,
                queue: VecDeque::new(),
                queued: 0,
                close: None,
                close_sent: false,
            }),
        };
        let slot = Slot {
            end,
            kind,
            ended: None,
            dropped: false,
        };
        self.slots.insert(key, slot);
    }

    fn writer_slot(&mut self, key: u64) -> Option<&mut WriterSlot> {
        match self.slots.get_mut(&key).map(|slot| &mut slot.kind) {
            Some(SlotKind::Writer(writer)) => Some(writer),
            _ => None,
        }
    }

    /// Data from a writer handle: queued in order, then fed to the core.
    pub(super) fn writer_data(&mut self, now: Instant, key: u64, data: Bytes, credited: bool) {
        let Some(writer) = self.writer_slot(key) else {
            return;
        };
        if credited {
            writer.arrived += data.len() as u64;
        }
        writer.queued += data.len();
        writer.queue.push_back(Queued::Binary(data));
        self.pump_writer(now, key);
    }

    /// A text message from a writer handle.
    pub(super) fn writer_text(&mut self, now: Instant, key: u64, text: Text, cost: usize) {
        let Some(writer) = self.writer_slot(key) else {
            return;
        };
        writer.arrived += cost as u64;
        writer.queued += cost;
        writer.queue.push_back(Queued::Text(text, cost));
        self.pump_writer(now, key);
    }

    /// The handle's clean close, after everything it queued.
    pub(super) fn writer_close(
        &mut self,
        now: Instant,
        key: u64,
        reply: futures_channel::oneshot::Sender<Result<(), Error>>,
    ) {
        match self.slots.get_mut(&key) {
            Some(Slot {
                kind: SlotKind::Writer(writer),
                ..
            }) => writer.close = Some(reply),
            _ => {
                let _ = reply.send(Err(Error::Closed));
                return;
            }
        }
        self.pump_writer(now, key);
    }

    /// Forgets an end whose handle is gone. The core decides: an end that never
    /// attached vanishes without a trace, a reader is released, a writer still going is
    /// aborted unless it is closing; an end with work left is released once it is over.
    pub(super) fn drop_end(&mut self, now: Instant, key: u64) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        slot.dropped = true;
        let end = slot.end;
        if slot.ended.is_some() || !self.core.channel_drop(now, end) {
            self.release(now, key);
        }
    }

    pub(super) fn release(&mut self, now: Instant, key: u64) {
        if let Some(slot) = self.slots.remove(&key) {
            self.keys.remove(&slot.end);
            self.core.channel_release(now, slot.end);
            if let SlotKind::Writer(writer) = slot.kind {
                writer.credit.fail(Error::Closed);
                if let Some(reply) = writer.close {
                    let _ = reply.send(Err(Error::Closed));
                }
            }
        }
    }

    pub(super) fn abort(&mut self, now: Instant, key: u64) {
        if let Some(slot) = self.slots.get(&key) {
            let _ = self.core.channel_abort(now, slot.end, CloseCode::INTERNAL);
        }
    }

    pub(super) fn start_reading(&mut self, now: Instant, key: u64) {
        let Some(slot) = self.slots.get(&key) else {
            return;
        };
        let error = match self.core.channel_start_reading(now, slot.end) {
            Ok(()) | Err(ReadError::Ended(_)) => return,
            Err(error) => error,
        };
        if let SlotKind::Reader(items) = &slot.kind {
            let _ = items.unbounded_send(ReaderItem::End(Err(error.into())));
        }
    }

    pub(super) fn close_reader(&mut self, now: Instant, key: u64) {
        let Some(slot) = self.slots.get(&key) else {
            return;
        };
        if let Err(error) = self.core.channel_close_reader(now, slot.end) {
            if let SlotKind::Reader(items) = &slot.kind {
                let _ = items.unbounded_send(ReaderItem::End(Err(error.into())));
            }
        }
    }

    /// Feeds a writer's queue to the core as far as its window allows, sends the close
    /// once the queue is empty, then grants the handle the space left.
    pub(super) fn pump_writer(&mut self, now: Instant, key: u64) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        let end = slot.end;
        let SlotKind::Writer(writer) = &mut slot.kind else {
            return;
        };
        if slot.ended.is_some() {
            return;
        }
        while let Some(front) = writer.queue.front_mut() {
            let result = match front {
                Queued::Binary(data) => match self.core.channel_write(now, end, data.clone()) {
                    Ok(n) if n == data.len() => Ok(n),
                    Ok(n) => {
                        // Partial: the rest waits for space.
                        *data = data.slice(n..);
                        writer.queued -= n;
                        Err(None)
                    }
                    Err(WriteError::Blocked(_)) => Err(None),
                    Err(error) => Err(Some(error)),
                },
                Queued::Text(text, cost) => {
                    match self.core.channel_send_text(now, end, text.clone()) {
                        Ok(()) => Ok(*cost),
                        Err(WriteError::Blocked(_)) => Err(None),
                        Err(error) => Err(Some(error)),
                    }
                }
            };
            match result {
                Ok(cost) => {
                    writer.queued -= cost;
                    writer.queue.pop_front();
                }
                Err(None) => break,
                Err(Some(error)) => {
                    // The core refused for good: the end is over or gone.
                    tracing::debug!(%error, "channel data dropped");
                    writer.queue.clear();
                    writer.queued = 0;
                    break;
                }
            }
        }
        if writer.queue.is_empty() && writer.close.is_some() && !writer.close_sent {
            writer.close_sent = true;
            if let Err(error) = self.core.channel_close(now, end) {
                if let Some(reply) = writer.close.take() {
                    let _ = reply.send(Err(write_error(error)));
                }
            }
        }
        self.grant(now, key);
    }

    /// Grants the writer's handle the window space nobody holds yet, and asks the core
    /// to report when more frees up.
    fn grant(&mut self, now: Instant, key: u64) {
        let Some(slot) = self.slots.get(&key) else {
            return;
        };
        let SlotKind::Writer(writer) = &slot.kind else {
            return;
        };
        let free = self.core.channel_free_window(slot.end);
        let target = writer.arrived + free.saturating_sub(writer.queued) as u64;
        writer.credit.grant_up_to(target);
        let _ = self.core.channel_want_writable(now, slot.end);
    }

    pub(super) fn deliver(&mut self, end: EndId, item: ReaderItem) {
        let slot = self.keys.get(&end).and_then(|key| self.slots.get(key));
        if let Some(SlotKind::Reader(items)) = slot.map(|slot| &slot.kind) {
            let _ = items.unbounded_send(item);
        }
    }

    pub(super) fn ended(&mut self, now: Instant, end: EndId, outcome: EndOutcome) {
        let Some(key) = self.keys.get(&end).copied() else {
            return;
        };
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        slot.ended = Some(outcome.clone());
        match &mut slot.kind {
            SlotKind::Reader(items) => {
                let _ = items.unbounded_send(ReaderItem::End(reader_end(outcome)));
            }
            SlotKind::Writer(writer) => {
                let error = match &outcome {
                    EndOutcome::Closed => Error::Closed,
                    other => Error::Channel(other.clone()),
                };
                writer.credit.fail(error.clone());
                writer.queue.clear();
                writer.queued = 0;
                if let Some(reply) = writer.close.take() {
                    let result = match outcome {
                        EndOutcome::Closed if writer.close_sent => Ok(()),
                        _ => Err(error),
                    };
                    let _ = reply.send(result);
                }
            }
        }
        if slot.dropped {
            self.release(now, key);
        }
    }
}

fn write_error(error: WriteError) -> Error {
    match error {
        WriteError::Stopped | WriteError::Closing(_) => Error::Closed,
        error => Error::Write(error),
    }
}
