//! Channel end slots: opening, writer operations under the window, reader delivery,
//! ends and releases.

use std::time::Instant;

use futures_channel::mpsc::UnboundedSender;
use iii_core::channel::ChannelRef;
use iii_core::worker::{EndId, EndOutcome, WriteError, WriteFailure, WriteQueue};
use iii_core::CloseCode;

use super::{ReaderItem, Slot, Task};
use crate::runtime::Runtime;
use crate::worker::error::reader_end;
use crate::worker::Error;

impl<R: Runtime> Task<R> {
    pub(super) fn open_end(
        &mut self,
        now: Instant,
        key: u64,
        channel_ref: ChannelRef,
        items: Option<UnboundedSender<ReaderItem>>,
    ) {
        let end = self.core.open_channel(now, channel_ref);
        self.keys.insert(end, key);
        let slot = Slot {
            end,
            items,
            writes: WriteQueue::new(),
            ended: None,
            dropped: false,
        };
        self.slots.insert(key, slot);
    }

    /// Forgets an end whose handle is gone: at once for a reader or an ended writer;
    /// a writer still going is aborted unless it is closing, and released when over.
    pub(super) fn drop_end(&mut self, now: Instant, key: u64) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        slot.dropped = true;
        if slot.items.is_some() || slot.ended.is_some() {
            self.release(now, key);
            return;
        }
        if !slot.writes.has_close() {
            let _ = self.core.channel_abort(now, slot.end, CloseCode::INTERNAL);
        }
    }

    pub(super) fn release(&mut self, now: Instant, key: u64) {
        if let Some(mut slot) = self.slots.remove(&key) {
            self.keys.remove(&slot.end);
            self.core.channel_release(now, slot.end);
            let closed = WriteFailure::Refused(WriteError::Stopped);
            for (reply, result) in slot.writes.fail_all(closed) {
                reply.send(result.map_err(write_error));
            }
        }
    }

    /// Runs a writer's queued operations as far as its window allows.
    pub(super) fn pump_writer(&mut self, now: Instant, key: u64) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        for (reply, result) in slot.writes.pump(&mut self.core, now, slot.end) {
            reply.send(result.map_err(write_error));
        }
    }

    pub(super) fn deliver(&mut self, end: EndId, item: ReaderItem) {
        let slot = self.keys.get(&end).and_then(|key| self.slots.get(key));
        if let Some(items) = slot.and_then(|slot| slot.items.as_ref()) {
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
        slot.writes.end(outcome.clone());
        if let Some(items) = &slot.items {
            let _ = items.unbounded_send(ReaderItem::End(reader_end(outcome)));
        }
        let dropped = slot.dropped;
        self.pump_writer(now, key);
        if dropped {
            self.release(now, key);
        }
    }
}

fn write_error(failure: WriteFailure) -> Error {
    match failure {
        WriteFailure::Ended(outcome) => Error::Channel(outcome),
        WriteFailure::Refused(WriteError::Stopped) => Error::Closed,
        WriteFailure::Refused(error) => Error::Write(error),
    }
}
