//! The browser half: the driver of the core worker over the browser's `WebSocket` and
//! `setTimeout`, and the `#[wasm_bindgen]` exports.
//!
//! One [`Shared`] per worker holds the [`Driver`] (the core machine, the sockets, the
//! timer and every waiting promise) in a `RefCell`. Every input (an API call, a socket
//! event, the timer) goes through [`enter`]: borrow, read the clock once, feed the
//! core, drain its outputs (the driving contract of `iii_core`), re-arm the timer,
//! release. Whatever calls back into JavaScript (a function handler, an `onBinary`
//! callback, a promise) is queued as an [`Effect`] and run after the borrow is released,
//! in order, so user code may call the API from anywhere without re-entering the core.

mod api;
mod channel;
mod convert;
mod discovery;
mod driver;
mod socket;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use iii_core::wire::{ErrorBody, Payload};
use iii_core::{Instant, InvocationId};
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::errors::{ErrorInfo, ErrorKind};
use driver::Driver;

/// One worker's state, shared by its JavaScript objects and its event callbacks.
pub(crate) struct Inner {
    driver: RefCell<Driver>,
    /// JavaScript calls waiting for the driver to be released, in order.
    effects: RefCell<VecDeque<Effect>>,
    /// Effects are being run (by an outer [`enter`]).
    running: Cell<bool>,
    /// Socket and timer events that arrived while the driver was borrowed.
    postponed: RefCell<VecDeque<Input>>,
}

/// The handle every object of one worker keeps.
pub(crate) type Shared = Rc<Inner>;

/// An event from the browser, fed to the driver by [`deliver`].
pub(crate) type Input = Box<dyn FnOnce(&mut Driver, Instant)>;

/// A promise's resolving functions.
pub(crate) struct Deferred {
    resolve: Function,
    reject: Function,
}

impl Deferred {
    /// A new promise and the functions that settle it.
    pub(crate) fn new() -> (Promise, Deferred) {
        let mut functions = None;
        let promise = Promise::new(&mut |resolve, reject| functions = Some((resolve, reject)));
        let (resolve, reject) =
            functions.unwrap_or_else(|| (Function::new_no_args(""), Function::new_no_args("")));
        (promise, Deferred { resolve, reject })
    }
}

/// A call into JavaScript, run once the driver is released.
pub(crate) enum Effect {
    /// Fulfil a promise.
    Resolve(Deferred, JsValue),
    /// Reject a promise with an `IIIError`.
    Reject(Deferred, ErrorInfo),
    /// Call a user callback (`onBinary`, `onMessage`, a state listener) with one
    /// argument; a throw is logged.
    Callback(Function, JsValue),
    /// Run a function handler on an invocation's input; its result completes it.
    Invoke {
        invocation: InvocationId,
        handler: Function,
        input: JsValue,
    },
    /// Call `registerTrigger` / `unregisterTrigger` of a trigger type's handler object;
    /// with `reply`, its result answers the engine's request `id`.
    TriggerHook {
        id: String,
        handler: JsValue,
        method: &'static str,
        argument: JsValue,
        reply: bool,
    },
    /// `console.warn`.
    Warn(String),
}

impl Inner {
    fn new(driver: Driver) -> Inner {
        Inner {
            driver: RefCell::new(driver),
            effects: RefCell::default(),
            running: Cell::new(false),
            postponed: RefCell::default(),
        }
    }
}

/// Feeds one input from JavaScript (an API call) to the driver; see the
/// [module docs](self). Fails only when called from inside the driver, which the
/// effect queue prevents.
pub(crate) fn enter<R>(
    shared: &Shared,
    input: impl FnOnce(&mut Driver, Instant) -> R,
) -> Result<R, JsValue> {
    let result = {
        let Ok(mut driver) = shared.driver.try_borrow_mut() else {
            return Err(js_error(&ErrorInfo::new(
                ErrorKind::Invalid,
                "the iii worker was called re-entrantly",
            )));
        };
        let now = Instant::now();
        let result = input(&mut driver, now);
        settle(shared, &mut driver, now);
        result
    };
    run_effects(shared);
    Ok(result)
}

/// Feeds an event from the browser (socket, timer); postponed if the driver is busy.
pub(crate) fn deliver(shared: &Shared, input: Input) {
    match shared.driver.try_borrow_mut() {
        Ok(mut driver) => {
            let now = Instant::now();
            input(&mut driver, now);
            settle(shared, &mut driver, now);
        }
        Err(_) => {
            shared.postponed.borrow_mut().push_back(input);
            return;
        }
    }
    run_effects(shared);
}

/// After an input: feed postponed events, drain the core, re-arm the timer, move the
/// effects out.
fn settle(shared: &Shared, driver: &mut Driver, now: Instant) {
    loop {
        driver.drain(now);
        let next = shared.postponed.borrow_mut().pop_front();
        match next {
            Some(input) => input(driver, now),
            None => break,
        }
    }
    driver.arm_timer(now);
    shared.effects.borrow_mut().extend(driver.take_effects());
}

/// Runs queued effects in order (only the outermost caller does; nested inputs add to
/// the same queue).
fn run_effects(shared: &Shared) {
    if shared.running.replace(true) {
        return;
    }
    loop {
        let next = shared.effects.borrow_mut().pop_front();
        let Some(effect) = next else { break };
        run(shared, effect);
    }
    shared.running.set(false);
}

fn run(shared: &Shared, effect: Effect) {
    match effect {
        Effect::Resolve(deferred, value) => {
            let _ = deferred.resolve.call1(&JsValue::UNDEFINED, &value);
        }
        Effect::Reject(deferred, info) => {
            let _ = deferred.reject.call1(&JsValue::UNDEFINED, &js_error(&info));
        }
        Effect::Callback(callback, argument) => {
            if let Err(error) = callback.call1(&JsValue::UNDEFINED, &argument) {
                warn_value("an iii callback threw", &error);
            }
        }
        Effect::Invoke {
            invocation,
            handler,
            input,
        } => {
            let outcome = handler.call1(&JsValue::UNDEFINED, &input);
            let shared = shared.clone();
            settle_later(outcome, move |result| {
                let result = result.and_then(convert::to_payload).map(Some);
                let _ = enter(&shared, |driver, now| {
                    driver.complete(now, invocation, result)
                });
            });
        }
        Effect::TriggerHook {
            id,
            handler,
            method,
            argument,
            reply,
        } => {
            let outcome = Reflect::get(&handler, &JsValue::from_str(method))
                .ok()
                .and_then(|f| f.dyn_into::<Function>().ok())
                .ok_or_else(|| {
                    ErrorBody::new(
                        "invalid_handler",
                        format!("the trigger handler has no {method}"),
                    )
                })
                .and_then(|f| f.call1(&handler, &argument).map_err(|e| error_body(&e)));
            let shared = shared.clone();
            let outcome = outcome.map_err(|body| JsValue::from(js_error(&ErrorInfo::remote(body))));
            settle_later(outcome, move |result| {
                if let Err(error) = &result {
                    if !reply {
                        warn(&format!("unregisterTrigger failed: {}", error.message));
                    }
                }
                if reply {
                    let result = result.map(|_| ());
                    let _ = enter(&shared, |driver, now| {
                        driver.trigger_result(now, &id, result)
                    });
                }
            });
        }
        Effect::Warn(message) => warn(&message),
    }
}

/// Waits for what a JavaScript function returned (a value or a promise) and hands the
/// result on, a throw or rejection as an [`ErrorBody`].
fn settle_later(
    outcome: Result<JsValue, JsValue>,
    then: impl FnOnce(Result<JsValue, ErrorBody>) + 'static,
) {
    match outcome {
        Err(error) => then(Err(error_body(&error))),
        Ok(value) => {
            let promise = Promise::resolve(&value);
            wasm_bindgen_futures::spawn_local(async move {
                then(JsFuture::from(promise).await.map_err(|e| error_body(&e)));
            });
        }
    }
}

/// What a thrown value becomes for the caller: `{code, message}` when it has a string
/// `code` (so a browser function can answer with a typed error), else
/// `invocation_failed` with its message; `stacktrace` from `stack`.
pub(crate) fn error_body(error: &JsValue) -> ErrorBody {
    let field = |name: &str| {
        Reflect::get(error, &JsValue::from_str(name))
            .ok()
            .and_then(|value| value.as_string())
    };
    let message = field("message")
        .or_else(|| error.as_string())
        .or_else(|| {
            js_sys::JSON::stringify(error)
                .ok()
                .and_then(|text| text.as_string())
        })
        .unwrap_or_else(|| "the function failed".to_owned());
    let mut body = ErrorBody::new(
        field("code").unwrap_or_else(|| "invocation_failed".to_owned()),
        message,
    );
    body.stacktrace = field("stack");
    body
}

/// The `IIIError` for `info`.
pub(crate) fn js_error(info: &ErrorInfo) -> JsValue {
    let error = js_sys::Error::new(&info.message);
    error.set_name("IIIError");
    let set = |key: &str, value: JsValue| {
        let _ = Reflect::set(&error, &JsValue::from_str(key), &value);
    };
    set("kind", JsValue::from_str(info.kind.as_str()));
    if let Some(code) = &info.code {
        set("code", JsValue::from_str(code));
    }
    if let Some(stacktrace) = &info.stacktrace {
        set("remoteStack", JsValue::from_str(stacktrace));
    }
    if let Some(code) = info.close_code {
        set("closeCode", JsValue::from(code));
    }
    if let Some(reason) = &info.reason {
        set("reason", JsValue::from_str(reason));
    }
    error.into()
}

/// A payload as a JavaScript value (`JSON.parse`), without converting channel refs.
pub(crate) fn parse_payload(payload: Option<&Payload>) -> JsValue {
    payload
        .and_then(|payload| js_sys::JSON::parse(payload.get()).ok())
        .unwrap_or(JsValue::NULL)
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    fn console_warn(message: &str);
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    fn console_warn_value(message: &str, value: &JsValue);
}

pub(crate) fn warn(message: &str) {
    console_warn(&format!("[iii] {message}"));
}

fn warn_value(message: &str, value: &JsValue) {
    console_warn_value(&format!("[iii] {message}:"), value);
}
