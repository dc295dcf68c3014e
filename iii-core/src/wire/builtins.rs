//! The ids of the engine's own functions and trigger types, one constant each, so that
//! the engine that answers them, the workers that call them (the native SDK, the browser
//! package, the command line) and the tests name the same spelling.

/// Every id the engine keeps for itself starts with this.
pub const RESERVED_PREFIX: &str = "engine::";

/// Creates a channel: `{buffer_size?}` in, `{writer, reader}` refs out.
pub const CHANNELS_CREATE: &str = "engine::channels::create";
/// Lists live channels with their buffers and counters.
pub const CHANNELS_LIST: &str = "engine::channels::list";
/// Records the calling worker's identity; every SDK calls it first (`action: void`).
pub const WORKERS_REGISTER: &str = "engine::workers::register";
/// The workers connected to the engine: answer `{workers: [...]}`.
pub const WORKERS_LIST: &str = "engine::workers::list";
/// The functions the engine knows: input `{include_internal?, offset?, ...}`, answer
/// `{functions: [...], next_offset?}`.
pub const FUNCTIONS_LIST: &str = "engine::functions::list";
/// The trigger **types** the engine offers (its own `engine::*` ones only with
/// `include_internal`): answer `{triggers: [...], next_offset?}`.
pub const TRIGGER_TYPES_LIST: &str = "engine::triggers::list";
/// The trigger bindings the engine holds (those bound to `engine::*` functions only
/// with `include_internal`): answer `{registered_triggers: [...], next_offset?}`.
pub const REGISTERED_TRIGGERS_LIST: &str = "engine::registered-triggers::list";

/// Writes a TRACE line to the engine's log.
pub const LOG_TRACE: &str = "engine::log::trace";
/// Writes a DEBUG line to the engine's log.
pub const LOG_DEBUG: &str = "engine::log::debug";
/// Writes an INFO line to the engine's log.
pub const LOG_INFO: &str = "engine::log::info";
/// Writes a WARN line to the engine's log.
pub const LOG_WARN: &str = "engine::log::warn";
/// Writes an ERROR line to the engine's log.
pub const LOG_ERROR: &str = "engine::log::error";

/// Trigger type the engine provides: invokes its bound function with
/// `{event: "functions_changed", functions: [...]}` whenever the set of registered
/// functions changes.
pub const FUNCTIONS_AVAILABLE: &str = "engine::functions-available";
/// Trigger type the engine provides: fires when a worker connects, announces itself or
/// disconnects.
pub const WORKERS_AVAILABLE: &str = "engine::workers-available";
