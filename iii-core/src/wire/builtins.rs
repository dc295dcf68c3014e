//! The ids of the engine's built-in functions and trigger types that workers call or
//! bind to discover what the engine knows, one constant each, so that every SDK (the
//! native one, the browser one) names the same spelling.

/// The functions the engine knows: input `{include_internal?, offset?, ...}`, answer
/// `{functions: [...], next_offset?}`.
pub const FUNCTIONS_LIST: &str = "engine::functions::list";
/// The workers connected to the engine: answer `{workers: [...]}`.
pub const WORKERS_LIST: &str = "engine::workers::list";
/// The trigger **types** the engine offers (its own `engine::*` ones only with
/// `include_internal`): answer `{triggers: [...], next_offset?}`.
pub const TRIGGER_TYPES_LIST: &str = "engine::triggers::list";
/// The trigger bindings the engine holds (those bound to `engine::*` functions only
/// with `include_internal`): answer `{registered_triggers: [...], next_offset?}`.
pub const REGISTERED_TRIGGERS_LIST: &str = "engine::registered-triggers::list";
/// The trigger type that invokes its bound function with
/// `{event: "functions_changed", functions: [...]}` whenever the set of registered
/// functions changes.
pub const FUNCTIONS_AVAILABLE: &str = "engine::functions-available";
