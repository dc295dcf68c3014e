//! The error codes the engine and the workers send (`ErrorBody::code`), one constant
//! each, so that every sender and every test names the same spelling.

/// No function with this id exists where it was looked for.
pub const FUNCTION_NOT_FOUND: &str = "function_not_found";
/// The caller's listener policy does not allow it (RBAC): every call outside a guest's
/// exposure, whether the function exists or not.
pub const FORBIDDEN: &str = "FORBIDDEN";
/// A namespace was named and left blank.
pub const INVALID_NAMESPACE: &str = "INVALID_NAMESPACE";
/// An `enqueue` action, which needs a queue provider this engine does not have.
pub const ENQUEUE_ERROR: &str = "enqueue_error";
/// The listener's middleware function is not registered.
pub const MIDDLEWARE_UNAVAILABLE: &str = "middleware_unavailable";
/// The function did not answer within the engine's `invocation_timeout`.
pub const INVOCATION_TIMEOUT: &str = "invocation_timeout";
/// The serving worker went away before answering.
pub const INVOCATION_STOPPED: &str = "invocation_stopped";
/// A payload nests deeper than `max_payload_depth`.
pub const PAYLOAD_TOO_DEEP: &str = "payload_too_deep";
/// A built-in's input is not what it takes.
pub const DESERIALIZATION_ERROR: &str = "deserialization_error";
/// A trigger binding could not be stored.
pub const TRIGGER_REGISTRATION_FAILED: &str = "trigger_registration_failed";
/// A trigger binding names a type its provider does not provide.
pub const TRIGGER_TYPE_NOT_FOUND: &str = "trigger_type_not_found";
/// A per-worker quota would be exceeded.
pub const QUOTA_EXCEEDED: &str = "quota_exceeded";
/// The id is reserved for the engine (`engine::…`) or empty.
pub const RESERVED_ID: &str = "reserved_id";
/// Another live worker provides this trigger type.
pub const TRIGGER_TYPE_CONFLICT: &str = "trigger_type_conflict";
/// The function id is taken (the one rejection code every published SDK survives).
pub const FUNCTION_NAMESPACE_CONFLICT: &str = "FUNCTION_NAMESPACE_CONFLICT";
/// The engine's channel limit is reached.
pub const CHANNEL_LIMIT: &str = "channel_limit";
/// A registration hook refused it, failed, or did not answer in time.
pub const REGISTRATION_NOT_APPROVED: &str = "registration_not_approved";

/// A request refused because its session called the engine's own functions faster than
/// `builtin_calls_per_sec` allows.
pub const RATE_LIMITED: &str = "rate_limited";

/// A worker's function handler failed (returned an error or panicked).
pub const INVOCATION_FAILED: &str = "invocation_failed";
/// A worker could not encode its handler's result.
pub const SERIALIZATION_ERROR: &str = "serialization_error";
