//! The engine's own functions, answered in-process. To workers they are ordinary
//! functions (called with `invokefunction`, listed in namespace `default`); their inputs
//! ignore unknown keys.

use crate::wire::codes;
use serde::{Deserialize, Serialize};

use super::listing::ListInput;
use super::session::{WorkerMeta, DEFAULT_NAMESPACE};
use super::worker_log::{log_level, LogInput};
use super::{CreateChannelError, Engine, RefusalReason};
use crate::ids::ConnId;
use crate::wire::control::{null_payload, to_payload, Payload};
use crate::wire::ErrorBody;
use crate::Instant;

use crate::wire::builtins::{
    CHANNELS_CREATE, CHANNELS_LIST, FUNCTIONS_LIST, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_TRACE,
    LOG_WARN, REGISTERED_TRIGGERS_LIST, TRIGGER_TYPES_LIST, WORKERS_LIST, WORKERS_REGISTER,
};

/// The engine's functions and what they do (shown by the listings).
pub(super) const BUILTINS: [(&str, &str); 12] = [
    (
        CHANNELS_CREATE,
        "Create a channel: returns a writer ref and a reader ref",
    ),
    (
        CHANNELS_LIST,
        "List live channels with their buffers and counters",
    ),
    (
        WORKERS_REGISTER,
        "Record the calling worker's name, runtime, version and namespace",
    ),
    (WORKERS_LIST, "List connected workers"),
    (
        FUNCTIONS_LIST,
        "List registered functions with their owning worker name",
    ),
    (TRIGGER_TYPES_LIST, "List trigger types"),
    (
        REGISTERED_TRIGGERS_LIST,
        "List registered triggers (bindings of a function to a trigger type)",
    ),
    (LOG_TRACE, "Write a TRACE line to the engine's log"),
    (LOG_DEBUG, "Write a DEBUG line to the engine's log"),
    (LOG_INFO, "Write an INFO line to the engine's log"),
    (LOG_WARN, "Write a WARN line to the engine's log"),
    (LOG_ERROR, "Write an ERROR line to the engine's log"),
];

/// True for the ids the engine answers itself.
pub(super) fn is_builtin(id: &str) -> bool {
    BUILTINS.iter().any(|(builtin, _)| *builtin == id)
}

#[derive(Debug, Default, Deserialize)]
struct CreateChannelInput {
    #[serde(default)]
    buffer_size: Option<u64>,
}

#[derive(Serialize)]
struct Success {
    success: bool,
}

fn input<'a, T: Deserialize<'a> + Default>(data: &'a Payload) -> Result<T, ErrorBody> {
    if data.get().trim() == "null" {
        return Ok(T::default());
    }
    serde_json::from_str(data.get())
        .map_err(|e| ErrorBody::new(codes::DESERIALIZATION_ERROR, format!("invalid input: {e}")))
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
        if let Some(level) = log_level(function_id) {
            let line = input::<LogInput<'_>>(data)?;
            self.worker_log(now, conn, level, line);
            return Ok(null_payload());
        }
        match function_id {
            CHANNELS_CREATE => {
                let request: CreateChannelInput = input(data)?;
                let owner = self.session(conn).map(|s| (conn, s.worker_id.clone()));
                match self.new_channel(now, request.buffer_size, owner) {
                    Ok(refs) => Ok(to_payload(&refs)),
                    Err(error) => {
                        let reason = match error {
                            CreateChannelError::TooManyChannels(_) => RefusalReason::ChannelLimit,
                            CreateChannelError::Quota(quota, _) => RefusalReason::Quota(quota),
                        };
                        self.refused(conn, CHANNELS_CREATE, None, reason);
                        Err(ErrorBody::new(reason.code(), error.to_string()))
                    }
                }
            }
            CHANNELS_LIST => Ok(self.list_channels(now, conn, &input(data)?)),
            WORKERS_REGISTER => {
                let meta: WorkerMeta = input(data)?;
                if self.announce(now, conn, meta) {
                    Ok(to_payload(&Success { success: true }))
                } else {
                    Err(ErrorBody::new(
                        codes::INVALID_NAMESPACE,
                        "namespace must not be blank",
                    ))
                }
            }
            WORKERS_LIST => Ok(self.list_workers(now, conn, &input(data)?)),
            FUNCTIONS_LIST => Ok(self.list_functions(conn, &input::<ListInput>(data)?)),
            TRIGGER_TYPES_LIST => Ok(self.list_trigger_types(conn, &input(data)?)),
            REGISTERED_TRIGGERS_LIST => Ok(self.list_bindings(conn, &input(data)?)),
            _ => Err(ErrorBody::new(
                codes::FUNCTION_NOT_FOUND,
                format!("Function {function_id} not found in namespace {DEFAULT_NAMESPACE}."),
            )),
        }
    }
}
