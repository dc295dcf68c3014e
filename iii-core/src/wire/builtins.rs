//! The ids of the engine's own functions and trigger types, one constant each, so that
//! the engine that answers them, the workers that call them and the tests name the
//! same spelling.

/// Every id the engine keeps for itself starts with this.
pub const RESERVED_PREFIX: &str = "engine::";

/// Creates a channel: `{buffer_size?}` in, `{writer, reader}` refs out.
pub const CHANNELS_CREATE: &str = "engine::channels::create";
/// Lists live channels with their buffers and counters.
pub const CHANNELS_LIST: &str = "engine::channels::list";
/// Records the calling worker's identity; every SDK calls it first (`action: void`).
pub const WORKERS_REGISTER: &str = "engine::workers::register";
/// Lists connected workers.
pub const WORKERS_LIST: &str = "engine::workers::list";
/// Lists registered functions.
pub const FUNCTIONS_LIST: &str = "engine::functions::list";
/// Lists trigger types.
pub const TRIGGERS_LIST: &str = "engine::triggers::list";
/// Lists trigger bindings (a function bound to a trigger type).
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

/// Trigger type the engine provides: fires when the set of registered functions changes.
pub const FUNCTIONS_AVAILABLE: &str = "engine::functions-available";
/// Trigger type the engine provides: fires when a worker connects, announces itself or
/// disconnects.
pub const WORKERS_AVAILABLE: &str = "engine::workers-available";
