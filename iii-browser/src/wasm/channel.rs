//! Channel ends: the driver's record of each local end, and the `ChannelWriter` /
//! `ChannelReader` classes.
//!
//! Writers run their requests through the core's [`WriteQueue`]: `sendBinary` resolves
//! once the worker took every byte under its write window (a slow reader slows the
//! writer instead of growing memory), `close` once the Close went out. Readers connect
//! on their first `onBinary`, `onMessage`, `readAll` or `finished`; every chunk goes to
//! the `onBinary` callbacks and to each pending `readAll`, every text to the
//! `onMessage` callbacks, in arrival order. Only a clean end resolves `readAll` and
//! `finished`; an aborted, lost or refused stream rejects them with an `IIIError` of
//! kind `channel`.

use bytes::Bytes;
use iii_core::channel::{ChannelRef, ChannelRefs, Direction};
use iii_core::worker::{EndId, EndOutcome, WriteOp, WriteQueue};
use iii_core::{CloseCode, Instant, Text};
use js_sys::{Function, Promise, Uint8Array};
use wasm_bindgen::prelude::*;

use super::api::Iii;
use super::convert::{object, read_ref, ref_value};
use super::driver::Driver;
use super::{enter, js_error, Deferred, Effect, Shared};
use crate::errors::{ErrorInfo, ErrorKind};

/// The driver's record of one local end.
pub(crate) struct EndSlot {
    writes: WriteQueue<Deferred>,
    binary: Vec<Function>,
    text: Vec<Function>,
    /// Pending `readAll`s and what each collected.
    collectors: Vec<(Deferred, Vec<u8>)>,
    /// Pending `finished`.
    finished: Vec<Deferred>,
    started: bool,
    ended: Option<EndOutcome>,
}

impl EndSlot {
    fn new() -> Self {
        Self {
            writes: WriteQueue::new(),
            binary: Vec::new(),
            text: Vec::new(),
            collectors: Vec::new(),
            finished: Vec::new(),
            started: false,
            ended: None,
        }
    }
}

impl Driver {
    /// A local end for `channel_ref` and its JavaScript object.
    pub(super) fn end_handle(&mut self, now: Instant, channel_ref: ChannelRef) -> JsValue {
        let end = self.core.open_channel(now, channel_ref.clone());
        self.ends.insert(end, EndSlot::new());
        let Some(shared) = self.weak.upgrade() else {
            return JsValue::NULL;
        };
        match channel_ref.direction {
            Direction::Read => ChannelReader {
                shared,
                end,
                channel_ref,
            }
            .into(),
            Direction::Write => ChannelWriter {
                shared,
                end,
                channel_ref,
            }
            .into(),
        }
    }

    /// `createChannel`'s result: `{writer, reader, writerRef, readerRef}`.
    pub(super) fn channel_object(&mut self, now: Instant, refs: ChannelRefs) -> JsValue {
        let writer_ref = ref_value(&refs.writer);
        let reader_ref = ref_value(&refs.reader);
        let writer = self.end_handle(now, refs.writer);
        let reader = self.end_handle(now, refs.reader);
        object(&[
            ("writer", writer),
            ("reader", reader),
            ("writerRef", writer_ref),
            ("readerRef", reader_ref),
        ])
    }

    fn write(&mut self, now: Instant, end: EndId, op: WriteOp, deferred: Deferred) {
        match self.ends.get_mut(&end) {
            Some(slot) => slot.writes.push(op, deferred),
            None => self.effect(Effect::Reject(deferred, released())),
        }
        self.pump_writes(now, end);
    }

    /// Runs a writer's requests as far as its window allows.
    pub(super) fn pump_writes(&mut self, now: Instant, end: EndId) {
        let Some(slot) = self.ends.get_mut(&end) else {
            return;
        };
        let finished = slot.writes.pump(&mut self.core, now, end);
        for (deferred, result) in finished {
            self.effect(match result {
                Ok(_) => Effect::Resolve(deferred, JsValue::UNDEFINED),
                Err(failure) => Effect::Reject(deferred, ErrorInfo::from_write(&failure)),
            });
        }
    }

    /// Starts a reader (once).
    fn start_reading(&mut self, now: Instant, end: EndId) -> Result<(), ErrorInfo> {
        let slot = self.ends.get_mut(&end).ok_or_else(released)?;
        if slot.started || slot.ended.is_some() {
            return Ok(());
        }
        slot.started = true;
        self.core
            .channel_start_reading(now, end)
            .map_err(|error| ErrorInfo::from_read(&error))
    }

    pub(super) fn channel_data(&mut self, now: Instant, end: EndId, data: Bytes) {
        let Some(slot) = self.ends.get_mut(&end) else {
            return;
        };
        for (_, collected) in &mut slot.collectors {
            collected.extend_from_slice(&data);
        }
        let callbacks = slot.binary.clone();
        if !callbacks.is_empty() {
            self.notify(callbacks, Uint8Array::from(&data[..]).into());
        }
        // Delivered: the callbacks and collectors hold it now.
        let _ = self.core.channel_consumed(now, end, data.len());
    }

    pub(super) fn channel_text(&mut self, now: Instant, end: EndId, text: Text) {
        let Some(slot) = self.ends.get_mut(&end) else {
            return;
        };
        let callbacks = slot.text.clone();
        self.notify(callbacks, JsValue::from_str(text.as_str()));
        let _ = self.core.channel_consumed(now, end, text.len());
    }

    fn notify(&mut self, callbacks: Vec<Function>, value: JsValue) {
        for callback in callbacks {
            self.effect(Effect::Callback(callback, value.clone()));
        }
    }

    /// An end is over: settle everything waiting on it and free the core's record.
    pub(super) fn channel_ended(&mut self, now: Instant, end: EndId, outcome: EndOutcome) {
        let Some(slot) = self.ends.get_mut(&end) else {
            return;
        };
        slot.ended = Some(outcome.clone());
        slot.writes.end(outcome.clone());
        slot.binary.clear();
        slot.text.clear();
        let collectors = std::mem::take(&mut slot.collectors);
        let finished = std::mem::take(&mut slot.finished);
        self.pump_writes(now, end);
        let error = ErrorInfo::from_end(&outcome);
        for (deferred, collected) in collectors {
            let value = Uint8Array::from(&collected[..]).into();
            self.effect(end_effect(deferred, error.as_ref(), value));
        }
        for deferred in finished {
            self.effect(end_effect(deferred, error.as_ref(), JsValue::UNDEFINED));
        }
        self.core.channel_release(now, end);
    }

    /// Closes a reader here: it stops, pending `readAll`s fail with kind `closed`.
    fn close_reader(&mut self, now: Instant, end: EndId) {
        if self.ends.get(&end).is_some_and(|slot| slot.ended.is_none()) {
            self.core.channel_release(now, end);
            self.channel_ended(now, end, EndOutcome::Closed);
        }
    }
}

/// How a promise waiting on an end settles: with `value` at a clean end (`error` is
/// `None`), with the end's error otherwise.
fn end_effect(deferred: Deferred, error: Option<&ErrorInfo>, value: JsValue) -> Effect {
    match error {
        None => Effect::Resolve(deferred, value),
        Some(error) => Effect::Reject(deferred, error.clone()),
    }
}

fn released() -> ErrorInfo {
    ErrorInfo::new(ErrorKind::Closed, "the channel end was released")
}

/// The write end of a channel; connects on its first write or close. Close it (or
/// abort it): an end that is never closed leaves its reader waiting until the engine
/// expires the channel.
#[wasm_bindgen]
pub struct ChannelWriter {
    shared: Shared,
    end: EndId,
    channel_ref: ChannelRef,
}

#[wasm_bindgen]
impl ChannelWriter {
    /// Opens the writing end named by a ref received from another worker.
    #[wasm_bindgen(constructor)]
    pub fn new(
        iii: &Iii,
        #[wasm_bindgen(js_name = "channelRef", unchecked_param_type = "StreamChannelRef")]
        channel_ref: JsValue,
    ) -> Result<ChannelWriter, JsValue> {
        open(iii, &channel_ref, Direction::Write).map(|(shared, end, channel_ref)| Self {
            shared,
            end,
            channel_ref,
        })
    }

    /// Sends `data` (copied once), in frames of at most 64 KiB; resolves when the
    /// worker has taken every byte (waiting while the reader is slow).
    #[wasm_bindgen(js_name = sendBinary, unchecked_return_type = "Promise<void>")]
    pub fn send_binary(&self, data: &[u8]) -> Promise {
        let op = WriteOp::Bytes {
            data: Bytes::copy_from_slice(data),
            all: true,
        };
        self.request(op)
    }

    /// Sends one text message, in order with the binary data.
    #[wasm_bindgen(js_name = sendMessage, unchecked_return_type = "Promise<void>")]
    pub fn send_message(&self, text: String) -> Promise {
        self.request(WriteOp::Text(Text::from(text)))
    }

    /// Ends the stream cleanly after everything sent before; resolves once the Close
    /// went out. A writer that never connected connects first, so its reader ends.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        self.request(WriteOp::Close)
    }

    /// Aborts the stream at once: queued data is dropped and the reader fails (the
    /// engine closes it with 1011).
    pub fn abort(&self) {
        let _ = enter(&self.shared, |driver, now| {
            let _ = driver
                .core
                .channel_abort(now, self.end, CloseCode::INTERNAL);
        });
    }

    /// The ref of this end (`{channel_id, access_key, direction}`).
    #[wasm_bindgen(getter, js_name = channelRef, unchecked_return_type = "StreamChannelRef")]
    pub fn channel_ref(&self) -> JsValue {
        ref_value(&self.channel_ref)
    }

    /// `JSON.stringify` of an end is its ref, so a live end put into a payload travels
    /// as the ref.
    #[wasm_bindgen(js_name = toJSON, unchecked_return_type = "StreamChannelRef")]
    pub fn to_json(&self) -> JsValue {
        ref_value(&self.channel_ref)
    }

    fn request(&self, op: WriteOp) -> Promise {
        let (promise, deferred) = Deferred::new();
        let entered = enter(&self.shared, |driver, now| {
            driver.write(now, self.end, op, deferred)
        });
        entered.map_or_else(|error| Promise::reject(&error), |()| promise)
    }
}

/// The read end of a channel; connects on its first `onBinary`, `onMessage`, `readAll`
/// or `finished`.
#[wasm_bindgen]
pub struct ChannelReader {
    shared: Shared,
    end: EndId,
    channel_ref: ChannelRef,
}

#[wasm_bindgen]
impl ChannelReader {
    /// Opens the reading end named by a ref received from another worker.
    #[wasm_bindgen(constructor)]
    pub fn new(
        iii: &Iii,
        #[wasm_bindgen(js_name = "channelRef", unchecked_param_type = "StreamChannelRef")]
        channel_ref: JsValue,
    ) -> Result<ChannelReader, JsValue> {
        open(iii, &channel_ref, Direction::Read).map(|(shared, end, channel_ref)| Self {
            shared,
            end,
            channel_ref,
        })
    }

    /// Calls `callback` with every binary chunk (a `Uint8Array`), in order.
    #[wasm_bindgen(js_name = onBinary)]
    pub fn on_binary(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(data: Uint8Array) => void")] callback: Function,
    ) -> Result<(), JsValue> {
        self.listen(callback, true)
    }

    /// Calls `callback` with every text message, in order with the binary chunks.
    #[wasm_bindgen(js_name = onMessage)]
    pub fn on_message(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(text: string) => void")] callback: Function,
    ) -> Result<(), JsValue> {
        self.listen(callback, false)
    }

    /// Every binary byte from now until the clean end of the stream; rejects with an
    /// `IIIError` (kind `channel`) if the stream is aborted, lost or refused.
    #[wasm_bindgen(js_name = readAll, unchecked_return_type = "Promise<Uint8Array>")]
    pub fn read_all(&self) -> Promise {
        self.wait(true)
    }

    /// Resolves at the clean end of the stream, rejects like `readAll` otherwise.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn finished(&self) -> Promise {
        self.wait(false)
    }

    /// Stops reading and closes this end; pending `readAll`s reject (kind `closed`).
    pub fn close(&self) {
        let _ = enter(&self.shared, |driver, now| {
            driver.close_reader(now, self.end)
        });
    }

    /// The ref of this end (`{channel_id, access_key, direction}`).
    #[wasm_bindgen(getter, js_name = channelRef, unchecked_return_type = "StreamChannelRef")]
    pub fn channel_ref(&self) -> JsValue {
        ref_value(&self.channel_ref)
    }

    /// `JSON.stringify` of an end is its ref.
    #[wasm_bindgen(js_name = toJSON, unchecked_return_type = "StreamChannelRef")]
    pub fn to_json(&self) -> JsValue {
        ref_value(&self.channel_ref)
    }

    fn listen(&self, callback: Function, binary: bool) -> Result<(), JsValue> {
        let end = self.end;
        enter(&self.shared, |driver, now| {
            if let Some(slot) = driver.ends.get_mut(&end) {
                if slot.ended.is_none() {
                    if binary {
                        slot.binary.push(callback);
                    } else {
                        slot.text.push(callback);
                    }
                }
            }
            driver.start_reading(now, end)
        })?
        .map_err(|error| js_error(&error))
    }

    fn wait(&self, collect: bool) -> Promise {
        let (promise, deferred) = Deferred::new();
        let end = self.end;
        let entered = enter(&self.shared, |driver, now| {
            let Some(slot) = driver.ends.get_mut(&end) else {
                driver.effect(Effect::Reject(deferred, released()));
                return;
            };
            if let Some(outcome) = slot.ended.clone() {
                let value = if collect {
                    Uint8Array::new_with_length(0).into()
                } else {
                    JsValue::UNDEFINED
                };
                let error = ErrorInfo::from_end(&outcome);
                driver.effect(end_effect(deferred, error.as_ref(), value));
                return;
            }
            if collect {
                slot.collectors.push((deferred, Vec::new()));
            } else {
                slot.finished.push(deferred);
            }
            if driver.start_reading(now, end).is_err() {
                // The worker stopped: everything waiting on the end fails (`closed`).
                driver.channel_ended(now, end, EndOutcome::Closed);
            }
        });
        entered.map_or_else(|error| Promise::reject(&error), |()| promise)
    }
}

/// Reads a ref given to a constructor and opens its end.
fn open(
    iii: &Iii,
    channel_ref: &JsValue,
    direction: Direction,
) -> Result<(Shared, EndId, ChannelRef), JsValue> {
    let channel_ref = read_ref(channel_ref)
        .filter(|channel_ref| channel_ref.direction == direction)
        .ok_or_else(|| {
            js_error(&ErrorInfo::new(
                ErrorKind::Invalid,
                format!(
                    "expected a StreamChannelRef with direction \"{}\"",
                    direction.as_str()
                ),
            ))
        })?;
    let shared = iii.shared().clone();
    let end = enter(&shared, |driver, now| {
        let end = driver.core.open_channel(now, channel_ref.clone());
        driver.ends.insert(end, EndSlot::new());
        end
    })?;
    Ok((shared, end, channel_ref))
}
