//! The JavaScript API: `registerWorker` and the worker (`III`) with its handles.

use iii_core::worker::{FunctionSpec, RegisterError, Worker};
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::convert::argument;
use super::driver::Driver;
use super::{enter, js_error, warn, Deferred, Effect, Inner, Shared};
use crate::errors::{ErrorInfo, ErrorKind};
use crate::{options, requests};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Serializable reference to one end of a channel; put it in a payload to hand the end to another worker. */
export interface StreamChannelRef { channel_id: string; access_key: string; direction: 'read' | 'write' }
/** A new channel: the local ends and the refs that open them elsewhere. */
export interface Channel { writer: ChannelWriter; reader: ChannelReader; writerRef: StreamChannelRef; readerRef: StreamChannelRef }
export interface IIIReconnectionConfig { initialDelayMs: number; maxDelayMs: number; backoffMultiplier: number; jitterFactor: number; maxRetries: number }
export interface InitOptions {
  workerName?: string; namespace?: string; description?: string; invocationTimeoutMs?: number;
  reconnectionConfig?: Partial<IIIReconnectionConfig>;
  /** Ignored: the browser's WebSocket cannot send headers (use a query parameter or a cookie). */
  headers?: Record<string, string>;
  writerWindowBytes?: number; maxControlMessageBytes?: number; maxOfflineQueueBytes?: number;
}
export type TriggerAction = { type: 'void' } | { type: 'enqueue'; queue: string }
export interface TriggerRequest<TInput = unknown> { function_id: string; payload?: TInput; action?: TriggerAction; timeoutMs?: number }
export interface RegisterFunctionOptions { description?: string; request_format?: unknown; response_format?: unknown; metadata?: Record<string, unknown> }
export interface RegisterFunctionInput extends RegisterFunctionOptions { id: string }
export type RemoteFunctionHandler<TInput = any, TOutput = any> = (data: TInput) => Promise<TOutput> | TOutput
export interface RegisterTriggerInput { type: string; function_id: string; config?: unknown; metadata?: unknown }
export interface RegisterTriggerTypeInput { id: string; description?: string; trigger_request_format?: unknown; call_request_format?: unknown }
export interface TriggerConfig<TConfig = unknown> { id: string; trigger_type: string; function_id?: string; config?: TConfig; metadata?: unknown }
export interface TriggerHandler<TConfig = unknown> {
  registerTrigger(config: TriggerConfig<TConfig>): Promise<void> | void;
  unregisterTrigger(config: TriggerConfig<TConfig>): Promise<void> | void;
}
export type IIIConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'failed'
/** What every rejected promise and thrown error of this package is (name `IIIError`). */
export interface IIIError extends Error {
  kind: 'timeout' | 'remote' | 'disconnected' | 'rejected' | 'unreachable' | 'channel' | 'closed' | 'invalid';
  /** The remote error's code, for kind `remote` (e.g. `function_not_found`). */
  code?: string; remoteStack?: string;
  /** The WebSocket close code that ended a channel end, for kind `channel`. */
  closeCode?: number; reason?: string;
}
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buffer: &mut [u8]) -> Result<JsValue, JsValue>;
}

fn thrown(info: ErrorInfo) -> JsValue {
    js_error(&info)
}

fn invalid(message: impl Into<String>) -> JsValue {
    thrown(ErrorInfo::new(ErrorKind::Invalid, message))
}

fn random(bytes: &mut [u8]) -> Result<(), JsValue> {
    get_random_values(bytes)
        .map(|_| ())
        .map_err(|_| invalid("crypto.getRandomValues is not available"))
}

/// 16 random hex digits (a default worker name, a private function's suffix).
pub(super) fn random_hex() -> Result<String, JsValue> {
    let mut bytes = [0u8; 8];
    random(&mut bytes)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn user_agent() -> String {
    Reflect::get(&js_sys::global(), &JsValue::from_str("navigator"))
        .and_then(|navigator| Reflect::get(&navigator, &JsValue::from_str("userAgent")))
        .ok()
        .and_then(|agent| agent.as_string())
        .unwrap_or_else(|| "browser".to_owned())
}

/// Connects a worker to the engine at `address` (`ws://` or `wss://`); the connection
/// is made (and remade after a loss, with backoff) in the background. The worker runs
/// until `shutdown()` or a final failure, whether or not the page keeps a reference to
/// it. Throws an `IIIError` (kind `invalid`) for a bad address or options.
#[wasm_bindgen(js_name = registerWorker)]
pub fn register_worker(
    address: &str,
    #[wasm_bindgen(unchecked_param_type = "InitOptions")] options: Option<js_sys::Object>,
) -> Result<Iii, JsValue> {
    let options_json = argument(&options.map_or(JsValue::UNDEFINED, JsValue::from))?;
    let name = random_hex()?;
    let settings = options::settings(address, options_json.as_deref(), &name, &user_agent())
        .map_err(|error| thrown(error.into()))?;
    if settings.headers_ignored {
        warn("InitOptions.headers is ignored: the browser's WebSocket cannot send headers");
    }
    let mut seed = [0u8; 32];
    random(&mut seed)?;
    let core = Worker::new(settings.config, seed, iii_core::Instant::now())
        .map_err(|error| invalid(error.to_string()))?;
    let shared = std::rc::Rc::new_cyclic(|weak| {
        Inner::new(Driver::new(
            core,
            settings.url,
            settings.max_retries,
            weak.clone(),
        ))
    });
    // Keeps the worker alive while it runs; executes the queued control connect and
    // arms the timer.
    enter(&shared, |driver, _| {
        driver.keep_alive = Some(shared.clone())
    })?;
    Ok(Iii { shared })
}

/// A worker (the documentation's `ISdk`), from `registerWorker`.
#[wasm_bindgen(js_name = III)]
pub struct Iii {
    shared: Shared,
}

impl Iii {
    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    fn register_function_spec(
        &self,
        spec: FunctionSpec,
        handler: Function,
    ) -> Result<FunctionRef, JsValue> {
        let id = spec.id.clone();
        enter(&self.shared, |driver, now| {
            driver.core.register_function(now, spec)?;
            driver.handlers.insert(id.clone(), handler);
            Ok::<_, RegisterError>(())
        })?
        .map_err(|error| thrown(ErrorInfo::from_register(&error)))?;
        Ok(FunctionRef {
            shared: self.shared.clone(),
            id,
        })
    }

    fn bind(&self, input: &JsValue) -> Result<Trigger, JsValue> {
        let json = argument(input)?.ok_or_else(|| invalid("registerTrigger needs an object"))?;
        let spec = requests::trigger_binding(&json).map_err(|error| thrown(error.into()))?;
        let id = enter(&self.shared, |driver, now| {
            driver.core.register_trigger(now, spec)
        })?
        .map_err(|error| thrown(ErrorInfo::from_register(&error)))?;
        Ok(Trigger {
            shared: self.shared.clone(),
            id,
        })
    }
}

#[wasm_bindgen(js_class = III)]
impl Iii {
    /// Serves a function: `registerFunction('id', handler, options?)` or
    /// `registerFunction({id, ...options}, handler)`. The handler receives the call's
    /// input (channel refs in it become live `ChannelReader` / `ChannelWriter`s) and
    /// its return value (or promise) is the result; a throw is an error for the caller
    /// (`{code, message}` when the thrown value has a string `code`, else
    /// `invocation_failed`).
    #[wasm_bindgen(js_name = registerFunction)]
    pub fn register_function(
        &self,
        #[wasm_bindgen(
            js_name = "idOrInput",
            unchecked_param_type = "string | RegisterFunctionInput"
        )]
        function: JsValue,
        #[wasm_bindgen(unchecked_param_type = "RemoteFunctionHandler")] handler: JsValue,
        #[wasm_bindgen(unchecked_param_type = "RegisterFunctionOptions")] options: Option<
            js_sys::Object,
        >,
    ) -> Result<FunctionRef, JsValue> {
        let options = options.map_or(JsValue::UNDEFINED, JsValue::from);
        let handler: Function = handler
            .dyn_into()
            .map_err(|_| invalid("registerFunction needs a handler function"))?;
        let (id, input) = match function.as_string() {
            Some(id) => (Some(id), None),
            None => (None, argument(&function)?),
        };
        let options = argument(&options)?;
        let spec = requests::function(id, input.as_deref(), options.as_deref())
            .map_err(|error| thrown(error.into()))?;
        self.register_function_spec(spec, handler)
    }

    /// Calls a function: resolves with its result, rejects with an `IIIError`
    /// (`timeout`, `remote` with the error's `code`, `disconnected`, ...). With
    /// `action: {type: 'void'}` it resolves at once with `undefined`. Calls made while
    /// disconnected wait for the connection (up to their timeout).
    #[wasm_bindgen(unchecked_return_type = "Promise<any>")]
    pub fn trigger(
        &self,
        #[wasm_bindgen(unchecked_param_type = "TriggerRequest")] request: JsValue,
    ) -> Promise {
        let (promise, deferred) = Deferred::new();
        let parsed = argument(&request)
            .and_then(|json| json.ok_or_else(|| invalid("trigger needs a TriggerRequest")))
            .and_then(|json| requests::trigger(&json).map_err(|error| thrown(error.into())));
        let request = match parsed {
            Ok(request) => request,
            Err(error) => return Promise::reject(&error),
        };
        let entered = enter(&self.shared, move |driver, now| {
            let requests::Trigger {
                function_id,
                payload,
                routing,
            } = request;
            let result = match routing {
                requests::Routing::Call { timeout } => driver
                    .core
                    .invoke(now, &function_id, payload, timeout)
                    .map(|id| driver.wait_call(id, deferred, false)),
                requests::Routing::Void => driver
                    .core
                    .invoke_void(now, &function_id, payload)
                    .map(|()| driver.effect(Effect::Resolve(deferred, JsValue::UNDEFINED))),
            };
            result.map_err(|error| ErrorInfo::from_invoke(&error))
        });
        match entered {
            Ok(Ok(())) => promise,
            Ok(Err(error)) => Promise::reject(&js_error(&error)),
            Err(error) => Promise::reject(&error),
        }
    }

    /// Binds a function to a trigger (`{type, function_id, config}`); replayed on every
    /// reconnect until `unregister()`.
    #[wasm_bindgen(js_name = registerTrigger)]
    pub fn register_trigger(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RegisterTriggerInput")] trigger: JsValue,
    ) -> Result<Trigger, JsValue> {
        self.bind(&trigger)
    }

    /// Provides a trigger type: the engine hands the bindings of that type to
    /// `handler.registerTrigger` (a throw or rejection refuses the binding) and their
    /// removal to `handler.unregisterTrigger`.
    #[wasm_bindgen(js_name = registerTriggerType)]
    pub fn register_trigger_type(
        &self,
        #[wasm_bindgen(
            js_name = "triggerType",
            unchecked_param_type = "RegisterTriggerTypeInput"
        )]
        trigger_type: JsValue,
        #[wasm_bindgen(unchecked_param_type = "TriggerHandler")] handler: JsValue,
    ) -> Result<TriggerTypeRef, JsValue> {
        if !handler.is_object() {
            return Err(invalid("registerTriggerType needs a handler object"));
        }
        let json = argument(&trigger_type)?
            .ok_or_else(|| invalid("registerTriggerType needs a RegisterTriggerTypeInput"))?;
        let spec = requests::trigger_type(&json).map_err(|error| thrown(error.into()))?;
        let id = spec.id.clone();
        enter(&self.shared, |driver, now| {
            driver.core.register_trigger_type(now, spec)?;
            driver.trigger_types.insert(id.clone(), handler);
            Ok::<_, RegisterError>(())
        })?
        .map_err(|error| thrown(ErrorInfo::from_register(&error)))?;
        Ok(TriggerTypeRef {
            worker: Iii {
                shared: self.shared.clone(),
            },
            id,
        })
    }

    /// Stops providing a trigger type (`{id}` or its id).
    #[wasm_bindgen(js_name = unregisterTriggerType)]
    pub fn unregister_trigger_type(
        &self,
        #[wasm_bindgen(
            js_name = "triggerType",
            unchecked_param_type = "RegisterTriggerTypeInput | string"
        )]
        trigger_type: JsValue,
    ) -> Result<(), JsValue> {
        let id = match trigger_type.as_string() {
            Some(id) => id,
            None => Reflect::get(&trigger_type, &JsValue::from_str("id"))
                .ok()
                .and_then(|id| id.as_string())
                .ok_or_else(|| invalid("unregisterTriggerType needs {id}"))?,
        };
        unregister_trigger_type(&self.shared, &id)
    }

    /// Creates a channel at the engine (`bufferSize`: its buffer in messages, default
    /// the engine's) and resolves with `{writer, reader, writerRef, readerRef}`.
    #[wasm_bindgen(js_name = createChannel, unchecked_return_type = "Promise<Channel>")]
    pub fn create_channel(
        &self,
        #[wasm_bindgen(js_name = "bufferSize")] buffer_size: Option<u32>,
    ) -> Promise {
        let (promise, deferred) = Deferred::new();
        let entered = enter(&self.shared, |driver, now| {
            match driver
                .core
                .create_channel(now, buffer_size.map(|size| size as usize))
            {
                Ok(id) => driver.wait_call(id, deferred, true),
                Err(error) => {
                    driver.effect(Effect::Reject(deferred, ErrorInfo::from_invoke(&error)))
                }
            }
        });
        entered.map_or_else(|error| Promise::reject(&error), |()| promise)
    }

    /// Closes the connection and every channel end, for good: pending calls reject
    /// (kind `disconnected`), open ends end (kind `closed`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn shutdown(&self) -> Promise {
        let entered = enter(&self.shared, |driver, now| driver.core.shutdown(now));
        entered.map_or_else(
            |error| Promise::reject(&error),
            |()| Promise::resolve(&JsValue::UNDEFINED),
        )
    }

    /// The id the engine gave the current connection (`undefined` while disconnected).
    #[wasm_bindgen(getter, js_name = workerId)]
    pub fn worker_id(&self) -> Option<String> {
        self.shared
            .driver
            .try_borrow()
            .ok()?
            .core
            .worker_id()
            .map(str::to_owned)
    }

    /// `connecting`, `connected`, `reconnecting`, `disconnected` (shut down) or `failed`.
    #[wasm_bindgen(getter, js_name = connectionState, unchecked_return_type = "IIIConnectionState")]
    pub fn connection_state(&self) -> String {
        self.shared
            .driver
            .try_borrow()
            .map(|driver| driver.state.as_str())
            .unwrap_or("connecting")
            .to_owned()
    }

    /// Calls `callback` with the new state at every change of `connectionState`.
    #[wasm_bindgen(js_name = onConnectionStateChange)]
    pub fn on_connection_state_change(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(state: IIIConnectionState) => void")]
        callback: Function,
    ) -> Result<(), JsValue> {
        enter(&self.shared, |driver, _| {
            driver.state_listeners.push(callback)
        })
    }
}

fn unregister_trigger_type(shared: &Shared, id: &str) -> Result<(), JsValue> {
    enter(shared, |driver, now| {
        driver.trigger_types.remove(id);
        driver.core.unregister_trigger_type(now, id)
    })?
    .map_err(|error| thrown(ErrorInfo::from_register(&error)))
}

/// A registered function (`registerFunction`'s result).
#[wasm_bindgen]
pub struct FunctionRef {
    shared: Shared,
    id: String,
}

#[wasm_bindgen]
impl FunctionRef {
    /// The function id.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// Stops serving the function (a second call does nothing).
    pub fn unregister(&self) -> Result<(), JsValue> {
        enter(&self.shared, |driver, now| {
            if driver.handlers.remove(&self.id).is_some() {
                let _ = driver.core.unregister_function(now, &self.id);
            }
        })
    }
}

/// A trigger binding (`registerTrigger`'s result).
#[wasm_bindgen]
pub struct Trigger {
    shared: Shared,
    id: String,
}

#[wasm_bindgen]
impl Trigger {
    /// The binding id.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// Removes the binding (a second call does nothing).
    pub fn unregister(&self) -> Result<(), JsValue> {
        enter(&self.shared, |driver, now| {
            let _ = driver.core.unregister_trigger(now, &self.id);
        })
    }
}

/// A trigger type this worker provides (`registerTriggerType`'s result).
#[wasm_bindgen]
pub struct TriggerTypeRef {
    worker: Iii,
    id: String,
}

#[wasm_bindgen]
impl TriggerTypeRef {
    /// The trigger type id.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// Binds `functionId` to a trigger of this type with `config`.
    #[wasm_bindgen(js_name = registerTrigger)]
    pub fn register_trigger(
        &self,
        #[wasm_bindgen(js_name = "functionId")] function_id: &str,
        config: JsValue,
    ) -> Result<Trigger, JsValue> {
        let input = super::convert::object(&[
            ("type", JsValue::from_str(&self.id)),
            ("function_id", JsValue::from_str(function_id)),
            ("config", config),
        ]);
        self.worker.bind(&input)
    }

    /// Registers a function and binds it to a trigger of this type with `config`.
    #[wasm_bindgen(js_name = registerFunction)]
    pub fn register_function(
        &self,
        #[wasm_bindgen(js_name = "functionId")] function_id: &str,
        #[wasm_bindgen(unchecked_param_type = "RemoteFunctionHandler")] handler: JsValue,
        config: JsValue,
    ) -> Result<FunctionRef, JsValue> {
        let function =
            self.worker
                .register_function(JsValue::from_str(function_id), handler, None)?;
        self.register_trigger(function_id, config)?;
        Ok(function)
    }

    /// Stops providing this trigger type.
    pub fn unregister(&self) -> Result<(), JsValue> {
        unregister_trigger_type(&self.worker.shared, &self.id)
    }
}
