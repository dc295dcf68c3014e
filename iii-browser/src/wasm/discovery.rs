//! `listFunctions`, `listTriggers`, `listTriggerTypes` and `onFunctionsAvailable`: the
//! calls of the engine's listing built-ins (pages followed, rows made the documented
//! objects by [`crate::discovery`]) and the functions-available subscription.
//!
//! The subscription works as the reference SDKs' did: the first subscriber registers a
//! private function of this worker (hidden from listings by `metadata.internal`) and
//! binds it to the engine's `engine::functions-available` trigger type; every
//! notification calls every subscriber with the `FunctionInfo` list; the last
//! unsubscribe removes the binding and the function. Both are replayed on reconnect
//! like any registration.

use iii_core::wire::builtins::FUNCTIONS_AVAILABLE;
use iii_core::wire::control::null_payload;
use iii_core::wire::Payload;
use iii_core::worker::{CallOutcome, FunctionSpec, RegisterError, TriggerSpec};
use iii_core::{Instant, InvocationId};
use js_sys::{Function, Promise};
use serde_json::value::RawValue;
use wasm_bindgen::prelude::*;

use super::api::{random_hex, Iii};
use super::driver::{Driver, Waiter};
use super::{enter, js_error, Deferred, Effect, Shared};
use crate::discovery::{available_functions, Internal, ListQuery, Listing, Page};
use crate::errors::ErrorInfo;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** A registered function, as `listFunctions` and `onFunctionsAvailable` give it. */
export interface FunctionInfo {
  /** Unique function identifier. */
  function_id: string;
  /** Human-readable description. */
  description?: string;
  /** Schema describing the expected request format. */
  request_format?: unknown;
  /** Schema describing the response format. */
  response_format?: unknown;
  /** Arbitrary metadata attached to the function. */
  metadata?: Record<string, unknown>;
}
/** Information about a registered trigger. */
export interface TriggerInfo {
  /** Unique trigger identifier. */
  id: string;
  /** Type of the trigger (e.g. http, cron, queue). */
  trigger_type: string;
  /** ID of the function this trigger is bound to. */
  function_id: string;
  /** Trigger-specific configuration. */
  config?: unknown;
}
/** Information about a registered trigger type, returned by `listTriggerTypes`. */
export interface TriggerTypeInfo {
  /** Trigger type identifier (e.g. http, cron, queue). */
  id: string;
  /** Human-readable description of the trigger type. */
  description: string;
  /** JSON Schema for the trigger configuration. */
  trigger_request_format?: unknown;
  /** JSON Schema for the call request payload. */
  call_request_format?: unknown;
}
/** Receives the engine's current function list at every change. */
export type FunctionsAvailableCallback = (functions: FunctionInfo[]) => void
"#;

/// The prefix of the private function behind `onFunctionsAvailable` (a random suffix
/// per worker follows).
const WATCH_FUNCTION_PREFIX: &str = "iii-browser.functions-available.";

/// The functions-available subscription of one worker.
#[derive(Default)]
pub(crate) struct FunctionsWatch {
    /// The subscribers, by the number their unsubscribe function removes.
    callbacks: Vec<(u64, Function)>,
    next: u64,
    /// The private function and its binding, while anyone subscribes.
    active: Option<Binding>,
}

struct Binding {
    function_id: String,
    trigger_id: String,
}

impl FunctionsWatch {
    /// Whether `function_id` is the private function of the subscription.
    pub(super) fn serves(&self, function_id: &str) -> bool {
        self.active
            .as_ref()
            .is_some_and(|binding| binding.function_id == function_id)
    }
}

fn internal_metadata() -> Option<Payload> {
    RawValue::from_string(r#"{"internal":true}"#.to_owned()).ok()
}

impl Driver {
    /// Calls the built-in of `query` for its next page; the promise settles at the last.
    fn list(&mut self, now: Instant, query: ListQuery, deferred: Deferred) {
        let function_id = query.listing().function_id();
        match self.core.invoke(now, function_id, query.request(), None) {
            Ok(id) => {
                self.calls.insert(id, Waiter::List(deferred, query));
            }
            Err(error) => self.effect(Effect::Reject(deferred, ErrorInfo::from_invoke(&error))),
        }
    }

    /// A page of a listing arrived (or the call failed).
    pub(super) fn listed(
        &mut self,
        now: Instant,
        deferred: Deferred,
        mut query: ListQuery,
        outcome: CallOutcome,
    ) {
        if let Some(error) = ErrorInfo::from_call(&outcome) {
            self.effect(Effect::Reject(deferred, error));
            return;
        }
        let CallOutcome::Ok(result) = outcome else {
            return;
        };
        match query.feed(result.as_ref()) {
            Ok(Page::More) => self.list(now, query, deferred),
            Ok(Page::Done(json)) => {
                let value = js_sys::JSON::parse(&json).unwrap_or(JsValue::NULL);
                self.effect(Effect::Resolve(deferred, value));
            }
            Err(error) => self.effect(Effect::Reject(deferred, error.into())),
        }
    }

    /// Adds a subscriber (binding the private function first when it is the first).
    fn subscribe(
        &mut self,
        now: Instant,
        callback: Function,
        suffix: &str,
    ) -> Result<u64, RegisterError> {
        if self.watch.active.is_none() {
            let function_id = format!("{WATCH_FUNCTION_PREFIX}{suffix}");
            self.core.register_function(
                now,
                FunctionSpec {
                    id: function_id.clone(),
                    description: Some("onFunctionsAvailable subscription".to_owned()),
                    request_format: None,
                    response_format: None,
                    metadata: internal_metadata(),
                },
            )?;
            let binding = TriggerSpec {
                trigger_type: FUNCTIONS_AVAILABLE.to_owned(),
                function_id: function_id.clone(),
                config: RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| null_payload()),
                metadata: None,
            };
            let trigger_id = match self.core.register_trigger(now, binding) {
                Ok(id) => id,
                Err(error) => {
                    let _ = self.core.unregister_function(now, &function_id);
                    return Err(error);
                }
            };
            self.watch.active = Some(Binding {
                function_id,
                trigger_id,
            });
        }
        let number = self.watch.next;
        self.watch.next += 1;
        self.watch.callbacks.push((number, callback));
        Ok(number)
    }

    /// Removes a subscriber (a second time does nothing); the last one removes the
    /// binding and the private function.
    fn unsubscribe(&mut self, now: Instant, number: u64) {
        self.watch.callbacks.retain(|(n, _)| *n != number);
        if !self.watch.callbacks.is_empty() {
            return;
        }
        if let Some(binding) = self.watch.active.take() {
            // NotFound only after a shutdown, which removed everything anyway.
            let _ = self.core.unregister_trigger(now, &binding.trigger_id);
            let _ = self.core.unregister_function(now, &binding.function_id);
        }
    }

    /// A notification: every subscriber gets the list; the engine gets `null`.
    pub(super) fn functions_available(
        &mut self,
        now: Instant,
        invocation: InvocationId,
        data: &Payload,
    ) {
        let result = match available_functions(data) {
            Ok(json) => {
                // A list of its own for each subscriber (one may change what it got).
                for (_, callback) in self.watch.callbacks.clone() {
                    let list = js_sys::JSON::parse(&json).unwrap_or(JsValue::NULL);
                    self.effect(Effect::Callback(callback, list));
                }
                Ok(None)
            }
            Err(error) => {
                self.effect(Effect::Warn(error.to_string()));
                Err(iii_core::wire::ErrorBody::new(
                    "invalid_notification",
                    error.to_string(),
                ))
            }
        };
        let _ = self.core.complete(now, invocation, result);
    }
}

fn list(shared: &Shared, query: ListQuery) -> Promise {
    let (promise, deferred) = Deferred::new();
    let entered = enter(shared, |driver, now| driver.list(now, query, deferred));
    entered.map_or_else(|error| Promise::reject(&error), |()| promise)
}

#[wasm_bindgen(js_class = III)]
impl Iii {
    /// Lists the functions registered at the engine (every worker's, this one's
    /// included; the engine's own and those marked `metadata.internal` hidden).
    #[wasm_bindgen(js_name = listFunctions, unchecked_return_type = "Promise<FunctionInfo[]>")]
    pub fn list_functions(&self) -> Promise {
        list(
            self.shared(),
            ListQuery::new(Listing::Functions, Internal::Hidden),
        )
    }

    /// Lists the trigger bindings registered at the engine; those bound to the engine's
    /// own functions only with `includeInternal` (default `false`).
    #[wasm_bindgen(js_name = listTriggers, unchecked_return_type = "Promise<TriggerInfo[]>")]
    pub fn list_triggers(
        &self,
        #[wasm_bindgen(js_name = "includeInternal", unchecked_optional_param_type = "boolean")]
        include_internal: Option<bool>,
    ) -> Promise {
        let internal = Internal::from_flag(include_internal);
        list(self.shared(), ListQuery::new(Listing::Triggers, internal))
    }

    /// Lists the trigger types the engine offers; its own (`engine::*`) only with
    /// `includeInternal` (default `false`).
    #[wasm_bindgen(
        js_name = listTriggerTypes,
        unchecked_return_type = "Promise<TriggerTypeInfo[]>"
    )]
    pub fn list_trigger_types(
        &self,
        #[wasm_bindgen(js_name = "includeInternal", unchecked_optional_param_type = "boolean")]
        include_internal: Option<bool>,
    ) -> Promise {
        let internal = Internal::from_flag(include_internal);
        list(
            self.shared(),
            ListQuery::new(Listing::TriggerTypes, internal),
        )
    }

    /// Calls `callback` with the engine's function list (`FunctionInfo[]`, internal
    /// functions included) whenever it changes. Returns the function that
    /// unsubscribes (calling it again does nothing); the last unsubscribe removes the
    /// engine binding.
    #[wasm_bindgen(js_name = onFunctionsAvailable, unchecked_return_type = "() => void")]
    pub fn on_functions_available(
        &self,
        #[wasm_bindgen(unchecked_param_type = "FunctionsAvailableCallback")] callback: Function,
    ) -> Result<JsValue, JsValue> {
        let suffix = random_hex()?;
        let number = enter(self.shared(), |driver, now| {
            driver.subscribe(now, callback, &suffix)
        })?
        .map_err(|error| js_error(&ErrorInfo::from_register(&error)))?;
        let worker = std::rc::Rc::downgrade(self.shared());
        let unsubscribe = Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = worker.upgrade() {
                let _ = enter(&shared, |driver, now| driver.unsubscribe(now, number));
            }
        });
        Ok(unsubscribe.into_js_value())
    }
}
