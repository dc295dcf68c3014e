//! The engine's own functions (PROTOCOL.md §5), answered in-process.

use crate::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::session::{WorkerMeta, DEFAULT_NAMESPACE};
use super::triggers::Provider;
use super::Engine;
use crate::ids::ConnId;
use crate::wire::control::{to_payload, Payload};
use crate::wire::ErrorBody;

const CHANNELS_CREATE: &str = "engine::channels::create";
const CHANNELS_LIST: &str = "engine::channels::list";
const WORKERS_REGISTER: &str = "engine::workers::register";
const WORKERS_LIST: &str = "engine::workers::list";
const FUNCTIONS_LIST: &str = "engine::functions::list";
const TRIGGERS_LIST: &str = "engine::triggers::list";

const BUILTINS: [&str; 6] = [
    CHANNELS_CREATE,
    CHANNELS_LIST,
    WORKERS_REGISTER,
    WORKERS_LIST,
    FUNCTIONS_LIST,
    TRIGGERS_LIST,
];

/// True for the ids the engine answers itself.
pub(super) fn is_builtin(id: &str) -> bool {
    BUILTINS.contains(&id)
}

#[derive(Debug, Default, Deserialize)]
struct CreateChannelInput {
    #[serde(default)]
    buffer_size: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListInput {
    #[serde(default)]
    search: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    include_internal: bool,
}

/// One entry of `engine::functions::list`.
#[derive(Debug, Serialize)]
pub(super) struct FunctionSummary {
    function_id: String,
    namespace: String,
    worker_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Payload>,
}

fn input<T: DeserializeOwned + Default>(data: &Payload) -> Result<T, ErrorBody> {
    if data.get().trim() == "null" {
        return Ok(T::default());
    }
    serde_json::from_str(data.get())
        .map_err(|e| ErrorBody::new("deserialization_error", format!("invalid input: {e}")))
}

fn matches_filter(id: &str, filter: &ListInput) -> bool {
    filter.prefix.as_deref().is_none_or(|p| id.starts_with(p))
        && filter
            .search
            .as_deref()
            .is_none_or(|s| id.to_ascii_lowercase().contains(&s.to_ascii_lowercase()))
}

fn is_internal(metadata: Option<&Payload>) -> bool {
    metadata
        .and_then(|m| serde_json::from_str::<Value>(m.get()).ok())
        .is_some_and(|m| m.get("internal") == Some(&Value::Bool(true)))
}

impl Engine {
    /// Runs built-in `function_id` for `conn`.
    pub(super) fn call_builtin(
        &mut self,
        now: Instant,
        conn: ConnId,
        function_id: &str,
        data: &Payload,
    ) -> Result<Payload, ErrorBody> {
        match function_id {
            CHANNELS_CREATE => {
                let request: CreateChannelInput = input(data)?;
                let owner = self.session(conn).map(|s| s.worker_id.clone());
                let refs = self
                    .new_channel(now, request.buffer_size, owner)
                    .map_err(|e| ErrorBody::new("channel_limit", e.to_string()))?;
                Ok(to_payload(&refs))
            }
            CHANNELS_LIST => Ok(to_payload(&json!({ "channels": self.channels() }))),
            WORKERS_REGISTER => {
                let meta: WorkerMeta = input(data)?;
                if self.announce(now, conn, meta) {
                    Ok(to_payload(&json!({"success": true})))
                } else {
                    Err(ErrorBody::new(
                        "INVALID_NAMESPACE",
                        "namespace must not be blank",
                    ))
                }
            }
            WORKERS_LIST => Ok(to_payload(
                &json!({ "workers": self.worker_summaries(now) }),
            )),
            FUNCTIONS_LIST => {
                let filter: ListInput = input(data)?;
                let include = filter.include_internal;
                Ok(to_payload(&json!({
                    "functions": self.function_summaries(Some(&filter), include)
                })))
            }
            TRIGGERS_LIST => {
                let filter: ListInput = input(data)?;
                Ok(to_payload(
                    &json!({ "triggers": self.trigger_summaries(&filter) }),
                ))
            }
            _ => Err(ErrorBody::new(
                "function_not_found",
                format!("Function {function_id} not found in namespace {DEFAULT_NAMESPACE}."),
            )),
        }
    }

    /// Registered functions, sorted by id; engine functions and internal ones only with
    /// `include_internal`.
    pub(super) fn function_summaries(
        &self,
        filter: Option<&ListInput>,
        include_internal: bool,
    ) -> Vec<FunctionSummary> {
        let mut list: Vec<FunctionSummary> = self
            .functions
            .iter()
            .filter_map(|(key, owner)| {
                let spec = self.function_specs.get(key)?;
                if !include_internal && is_internal(spec.metadata.as_ref()) {
                    return None;
                }
                if filter.is_some_and(|f| !matches_filter(&key.1, f)) {
                    return None;
                }
                Some(FunctionSummary {
                    function_id: key.1.clone(),
                    namespace: key.0.clone(),
                    worker_name: self
                        .session(*owner)
                        .map(|s| s.display_name().to_owned())
                        .unwrap_or_default(),
                    description: spec.description.clone(),
                    metadata: spec.metadata.clone(),
                })
            })
            .collect();
        if include_internal {
            for id in BUILTINS {
                if filter.is_none_or(|f| matches_filter(id, f)) {
                    list.push(FunctionSummary {
                        function_id: id.to_owned(),
                        namespace: DEFAULT_NAMESPACE.to_owned(),
                        worker_name: "engine".to_owned(),
                        description: None,
                        metadata: None,
                    });
                }
            }
        }
        list.sort_by(|a, b| (&a.function_id, &a.namespace).cmp(&(&b.function_id, &b.namespace)));
        list
    }

    fn worker_summaries(&self, now: Instant) -> Vec<Value> {
        self.conns
            .keys()
            .filter_map(|conn| Some((*conn, self.session(*conn)?)))
            .map(|(conn, session)| {
                let active = self
                    .pending
                    .range((conn, uuid::Uuid::nil())..=(conn, uuid::Uuid::max()))
                    .count();
                json!({
                    "id": session.worker_id,
                    "name": session.display_name(),
                    "description": session.meta.description,
                    "runtime": session.meta.runtime.as_deref().unwrap_or("unknown"),
                    "version": session.meta.version,
                    "os": session.meta.os,
                    "pid": session.meta.pid,
                    "isolation": session.meta.isolation,
                    "namespace": session.namespace,
                    "status": "connected",
                    "function_count": session.functions.len(),
                    "active_invocations": active,
                    "connected_ms": session
                        .connected_at
                        .map(|at| now.saturating_duration_since(at).as_millis() as u64),
                })
            })
            .collect()
    }

    fn trigger_summaries(&self, filter: &ListInput) -> Vec<Value> {
        self.triggers
            .types
            .iter()
            .filter(|(key, _)| filter.include_internal || !key.1.starts_with("engine::"))
            .filter(|(key, _)| matches_filter(&key.1, filter))
            .map(|(key, trigger_type)| {
                let worker_name = match trigger_type.provider {
                    Provider::Engine => "engine".to_owned(),
                    Provider::Worker(conn) => self
                        .session(conn)
                        .map(|s| s.display_name().to_owned())
                        .unwrap_or_default(),
                };
                json!({
                    "id": key.1,
                    "namespace": key.0,
                    "worker_name": worker_name,
                    "description": trigger_type.description,
                })
            })
            .collect()
    }
}
