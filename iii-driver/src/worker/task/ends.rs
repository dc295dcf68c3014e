//! Channel end slots: opening, writer operations under the window, reader delivery,
//! ends and releases.

use std::collections::VecDeque;
use std::time::Instant;

use futures_channel::mpsc::UnboundedSender;
use iii_core::channel::ChannelRef;
use iii_core::worker::{EndId, EndOutcome, WriteError};
use iii_core::CloseCode;

use super::{ReaderItem, Slot, Task, WriterOp};
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
            ops: VecDeque::new(),
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
        let closing = slot
            .ops
            .iter()
            .any(|op| matches!(op, WriterOp::Close { .. }));
        if !closing {
            let _ = self.core.channel_abort(now, slot.end, CloseCode::INTERNAL);
        }
    }

    pub(super) fn release(&mut self, now: Instant, key: u64) {
        if let Some(slot) = self.slots.remove(&key) {
            self.keys.remove(&slot.end);
            self.core.channel_release(now, slot.end);
            for op in slot.ops {
                op.fail(Error::Closed);
            }
        }
    }

    /// Runs a writer's queued operations as far as its window allows.
    pub(super) fn pump_writer(&mut self, now: Instant, key: u64) {
        loop {
            let Some(slot) = self.slots.get_mut(&key) else {
                return;
            };
            let end = slot.end;
            if let Some(outcome) = slot.ended.clone() {
                for op in slot.ops.drain(..) {
                    match op {
                        WriterOp::Close { reply, .. } if outcome == EndOutcome::Closed => {
                            let _ = reply.send(Ok(()));
                        }
                        op => op.fail(Error::Channel(outcome.clone())),
                    }
                }
                return;
            }
            let Some(op) = slot.ops.front_mut() else {
                return;
            };
            let error = match op {
                WriterOp::Write {
                    data,
                    all,
                    accepted,
                    ..
                } => {
                    if *accepted < data.len() {
                        match self.core.channel_write(now, end, data.slice(*accepted..)) {
                            Ok(n) => {
                                *accepted += n;
                                if *accepted < data.len() && (*all || n == 0) {
                                    return;
                                }
                                None
                            }
                            Err(WriteError::Blocked(_)) => return,
                            Err(error) => Some(error),
                        }
                    } else {
                        None
                    }
                }
                WriterOp::Text { text, .. } => {
                    match self.core.channel_send_text(now, end, text.clone()) {
                        Ok(()) => None,
                        Err(WriteError::Blocked(_)) => return,
                        Err(error) => Some(error),
                    }
                }
                WriterOp::Close { requested, .. } => {
                    if *requested {
                        return;
                    }
                    match self.core.channel_close(now, end) {
                        Ok(()) => {
                            *requested = true;
                            // Answered at `ChannelEnded`, which may already be queued.
                            return;
                        }
                        Err(error) => Some(error),
                    }
                }
            };
            let Some(op) = slot.ops.pop_front() else {
                return;
            };
            match (op, error) {
                (op, Some(error)) => op.fail(write_error(error, slot.ended.as_ref())),
                (
                    WriterOp::Write {
                        accepted, reply, ..
                    },
                    None,
                ) => {
                    let _ = reply.send(Ok(accepted));
                }
                (WriterOp::Text { reply, .. } | WriterOp::Close { reply, .. }, None) => {
                    let _ = reply.send(Ok(()));
                }
            }
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

fn write_error(error: WriteError, ended: Option<&EndOutcome>) -> Error {
    match (error, ended) {
        (WriteError::Ended(_), Some(outcome)) => Error::Channel(outcome.clone()),
        (WriteError::Stopped, _) => Error::Closed,
        (error, _) => Error::Write(error),
    }
}
