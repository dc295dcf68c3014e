//! What the engine knows: functions, workers, trigger types and triggers (the engine's
//! `engine::*::list` functions), and a subscription to changes of the function list.

use std::sync::atomic::{AtomicU64, Ordering};

use iii_core::wire::builtins::{
    FUNCTIONS_AVAILABLE, FUNCTIONS_LIST, REGISTERED_TRIGGERS_LIST as TRIGGERS_LIST,
    TRIGGER_TYPES_LIST, WORKERS_LIST,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::registry::{FunctionDef, FunctionRef, Trigger};
use super::{Error, Iii};
use crate::runtime::Runtime;

/// A function the engine knows (`engine::functions::list`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct FunctionInfo {
    /// The function id.
    pub function_id: String,
    /// Its namespace.
    pub namespace: Option<String>,
    /// The worker serving it.
    pub worker_name: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// Its metadata.
    pub metadata: Option<Value>,
}

/// A worker the engine knows (`engine::workers::list`). Engines omit fields they do not
/// track; those read as `None`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct WorkerInfo {
    /// The worker id of its connection.
    pub id: String,
    /// Its announced name.
    pub name: Option<String>,
    /// `rust`, `node`, `python`, or `engine` for the engine's own.
    pub runtime: Option<String>,
    /// Its SDK version.
    pub version: Option<String>,
    /// Its operating system.
    pub os: Option<String>,
    /// Its process id.
    pub pid: Option<u64>,
    /// Its namespace.
    pub namespace: Option<String>,
    /// `connected`, `available`, ...
    pub status: Option<String>,
    /// How many functions it serves.
    pub function_count: Option<u64>,
    /// How many invocations it has in progress.
    pub active_invocations: Option<u64>,
}

/// A trigger type the engine knows (`engine::triggers::list`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TriggerTypeInfo {
    /// The trigger type id.
    pub id: String,
    /// Its namespace.
    pub namespace: Option<String>,
    /// The worker providing it (`engine` for the engine's own).
    pub worker_name: Option<String>,
    /// Its description.
    pub description: Option<String>,
}

/// A trigger binding the engine knows (`engine::registered-triggers::list`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TriggerInfo {
    /// The binding id.
    pub id: String,
    /// Its trigger type.
    pub trigger_type: String,
    /// The function it fires.
    pub function_id: String,
    /// The worker that bound it.
    pub worker_name: Option<String>,
    /// Its configuration.
    pub config: Option<Value>,
}

/// A subscription made by [`Iii::on_functions_available`]; dropping it keeps the
/// subscription, [`unsubscribe`](Self::unsubscribe) ends it.
pub struct FunctionsSubscription<R: Runtime> {
    function: FunctionRef<R>,
    trigger: Trigger<R>,
}

impl<R: Runtime> FunctionsSubscription<R> {
    /// Stops the callbacks: removes the trigger and the private function behind them.
    pub fn unsubscribe(self) -> Result<(), Error> {
        self.trigger.unregister()?;
        self.function.unregister()
    }
}

fn list<T: DeserializeOwned>(mut answer: Value, key: &str) -> Result<Vec<T>, Error> {
    let items = answer.get_mut(key).map(Value::take).unwrap_or(Value::Null);
    if items.is_null() {
        return Err(Error::Json(format!(
            "the engine's answer has no `{key}` list"
        )));
    }
    Ok(serde_json::from_value(items)?)
}

static SUBSCRIPTIONS: AtomicU64 = AtomicU64::new(1);

impl<R: Runtime> Iii<R> {
    /// The functions registered at the engine (other workers' and this one's).
    pub async fn list_functions(&self) -> Result<Vec<FunctionInfo>, Error> {
        list(self.trigger(FUNCTIONS_LIST, json!({})).await?, "functions")
    }

    /// The workers connected to the engine.
    pub async fn list_workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        list(self.trigger(WORKERS_LIST, json!({})).await?, "workers")
    }

    /// The trigger types the engine offers (its own `engine::*` ones only with
    /// `include_internal`).
    pub async fn list_trigger_types(
        &self,
        include_internal: bool,
    ) -> Result<Vec<TriggerTypeInfo>, Error> {
        let input = json!({ "include_internal": include_internal });
        list(self.trigger(TRIGGER_TYPES_LIST, input).await?, "triggers")
    }

    /// The trigger bindings registered at the engine (`engine::registered-triggers::list`;
    /// an engine without that function answers `function_not_found`).
    pub async fn list_triggers(&self, include_internal: bool) -> Result<Vec<TriggerInfo>, Error> {
        let input = json!({ "include_internal": include_internal });
        list(
            self.trigger(TRIGGERS_LIST, input).await?,
            "registered_triggers",
        )
    }

    /// Calls `callback` with the engine's function list whenever it changes
    /// (`engine::functions-available`; how soon depends on the engine: ours at once, the
    /// reference engine polls every 5 s). Behind it: a private function of this worker,
    /// hidden from listings, bound to that trigger type.
    pub async fn on_functions_available<F>(
        &self,
        callback: F,
    ) -> Result<FunctionsSubscription<R>, Error>
    where
        F: Fn(Vec<FunctionInfo>) + Send + Sync + 'static,
    {
        let n = SUBSCRIPTIONS.fetch_add(1, Ordering::Relaxed);
        let id = format!("iii-rs.functions-available.{}.{n}", std::process::id());
        let function = FunctionDef::new(id)
            .description("functions-available subscription")
            .metadata(json!({ "internal": true }));
        let function = self.register_function(function, move |input: Value| {
            let functions = input.get("functions").cloned().unwrap_or(Value::Null);
            let result = serde_json::from_value::<Vec<FunctionInfo>>(functions);
            if let Ok(functions) = &result {
                callback(functions.clone());
            }
            async move { result.map(|_| Value::Null).map_err(|e| e.to_string()) }
        })?;
        let trigger = match self
            .register_trigger(FUNCTIONS_AVAILABLE, function.id(), json!({}))
            .await
        {
            Ok(trigger) => trigger,
            Err(error) => {
                let _ = function.unregister();
                return Err(error);
            }
        };
        Ok(FunctionsSubscription { function, trigger })
    }
}

impl<R: Runtime> std::fmt::Debug for FunctionsSubscription<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionsSubscription")
            .field("function", &self.function)
            .field("trigger", &self.trigger)
            .finish()
    }
}
