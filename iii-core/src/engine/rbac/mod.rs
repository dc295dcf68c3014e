//! Listeners for untrusted workers: role-based access control in the shape of the
//! reference engine's worker RBAC.
//!
//! Every connection arrives on a listener. Listener 0 is the engine's main one and
//! trusts its workers (as every worker was trusted before). Further listeners carry a
//! [`ListenerPolicy`]; one with an [`Rbac`] block treats its workers as untrusted:
//!
//! * an optional authentication function (on a trusted worker) admits each upgrade,
//!   with a timeout, and its `AuthResult` narrows what the session may do;
//! * the session may call only what the policy allows (`forbidden_functions` first, then
//!   `allowed_functions`, the infrastructure carve-out, and `expose_functions`); every
//!   call outside that is answered `FORBIDDEN` alike, whether the function exists or not;
//! * listings show it only what it may call, and only its own trigger bindings;
//! * its registrations may be prefixed and go through approval hooks (within its
//!   quotas); it can neither take another worker's id nor tell a taken one from a free
//!   one; it never receives another worker's trigger configs, and cannot bind triggers
//!   to functions it may not call;
//! * no `_caller_*` key it writes reaches anyone ([`from_guest`], the one boundary);
//! * an optional middleware function sees each of its calls and decides what happens;
//! * its `AuthResult.context` reaches the functions it calls (`_caller_context`).

mod access;
mod admission;
mod filter;
mod hooks;

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

pub(super) use access::{from_guest, Caller};
pub(super) use admission::PendingAdmission;
pub use admission::Ticket;
pub use filter::{FunctionFilter, MetadataMatch, Pattern};
pub(super) use hooks::{Hooked, PendingHook};

use super::WorkerQuotas;
use crate::wire::builtins;
use crate::wire::control::Payload;

/// The functions every RBAC listener allows, whatever its filters, so that connection
/// set-up, channels and logging through the engine work (`forbidden_functions` can
/// still deny them).
pub const INFRASTRUCTURE_FUNCTIONS: [&str; 7] = [
    builtins::CHANNELS_CREATE,
    builtins::WORKERS_REGISTER,
    builtins::LOG_TRACE,
    builtins::LOG_DEBUG,
    builtins::LOG_INFO,
    builtins::LOG_WARN,
    builtins::LOG_ERROR,
];

/// How one listener treats the workers that connect to it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerPolicy {
    /// A name for logs and metrics (`rbac`, `partners`, ...).
    pub name: String,
    /// Origins whose pages may connect here (same syntax as
    /// [`super::EngineConfig::allowed_origins`]); `None` uses the engine's list.
    pub allowed_origins: Option<Vec<String>>,
    /// Control and telemetry connections one client address may hold on this listener,
    /// upgrades from it still waiting for the authentication function included (503
    /// beyond, checked again when the function admits one). `None`: no limit.
    pub max_connections_per_ip: Option<usize>,
    /// Upgrades that may wait for this listener's authentication function at once (503
    /// beyond). `None`: only the engine-wide
    /// [`EngineConfig::max_pending_admissions`](super::EngineConfig::max_pending_admissions).
    pub max_pending_admissions: Option<usize>,
    /// What one worker connected here may hold.
    pub quotas: WorkerQuotas,
    /// Every call from this listener is delivered to this function instead of its
    /// target, with `{function_id, payload, action?, namespace?, context}`; its answer
    /// is the caller's. It decides what is invoked. The engine's own functions bypass it
    /// (they answer as the caller).
    pub middleware_function_id: Option<String>,
    /// Role-based access control. `None`: the listener trusts its workers (like the
    /// main one, including the engine's token).
    pub rbac: Option<Rbac>,
}

impl ListenerPolicy {
    /// A trusted listener named `name`, with the engine's defaults.
    pub fn trusted(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            allowed_origins: None,
            max_connections_per_ip: None,
            max_pending_admissions: None,
            quotas: WorkerQuotas::default(),
            middleware_function_id: None,
            rbac: None,
        }
    }

    /// An untrusted listener named `name` with `rbac` and the stricter defaults for
    /// untrusted workers ([`WorkerQuotas::untrusted`], 16 connections per address).
    pub fn untrusted(name: impl Into<String>, rbac: Rbac) -> Self {
        Self {
            name: name.into(),
            allowed_origins: None,
            max_connections_per_ip: Some(16),
            max_pending_admissions: None,
            quotas: WorkerQuotas::untrusted(),
            middleware_function_id: None,
            rbac: Some(rbac),
        }
    }
}

/// The `rbac` block of a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Rbac {
    /// Called on every upgrade with `{headers, query_params, cookies, ip_address}`; the
    /// worker is admitted only when it answers with an `AuthResult` in time. `None`:
    /// every connection is admitted and `expose_functions` alone gates access.
    pub auth_function_id: Option<String>,
    /// How long the authentication function and the registration hooks may take
    /// (401 or a refused registration beyond). Default 5 s.
    pub hook_timeout: Duration,
    /// A function is callable if any filter matches. Empty: nothing but the
    /// infrastructure carve-out and the session's `allowed_functions`.
    pub expose_functions: Vec<FunctionFilter>,
    /// Approves (and may rewrite) each function registration.
    pub on_function_registration_function_id: Option<String>,
    /// Approves (and may rewrite) each trigger registration.
    pub on_trigger_registration_function_id: Option<String>,
    /// Approves (and may rewrite) each trigger type registration.
    pub on_trigger_type_registration_function_id: Option<String>,
}

impl Default for Rbac {
    fn default() -> Self {
        Self {
            auth_function_id: None,
            hook_timeout: Duration::from_secs(5),
            expose_functions: Vec::new(),
            on_function_registration_function_id: None,
            on_trigger_registration_function_id: None,
            on_trigger_type_registration_function_id: None,
        }
    }
}

/// What an authentication function answers (the reference's `AuthResult`; unknown
/// fields are ignored).
#[derive(Debug, Deserialize)]
pub(super) struct AuthResult {
    #[serde(default)]
    allowed_functions: Vec<String>,
    #[serde(default)]
    forbidden_functions: Vec<String>,
    #[serde(default)]
    allowed_trigger_types: Option<Vec<String>>,
    #[serde(default)]
    allow_trigger_type_registration: bool,
    #[serde(default = "yes")]
    allow_function_registration: bool,
    #[serde(default)]
    function_registration_prefix: Option<String>,
    #[serde(default)]
    context: Option<Box<RawValue>>,
}

fn yes() -> bool {
    true
}

/// What one session on an RBAC listener may do.
#[derive(Debug, Clone)]
pub(super) struct SessionPolicy {
    /// The listener's index.
    pub(super) listener: usize,
    pub(super) allowed_functions: Vec<String>,
    pub(super) forbidden_functions: Vec<String>,
    pub(super) allowed_trigger_types: Option<Vec<String>>,
    pub(super) allow_trigger_type_registration: bool,
    pub(super) allow_function_registration: bool,
    /// Ids it registers become `{prefix}::{id}`.
    pub(super) prefix: Option<String>,
    /// `AuthResult.context`, raw; `None` when absent, `null` or `{}`.
    pub(super) context: Option<Payload>,
}

impl SessionPolicy {
    /// The policy of a session admitted without an authentication function (the
    /// reference's permissive defaults: only `expose_functions` gates calls).
    pub(super) fn unauthenticated(listener: usize) -> Self {
        Self {
            listener,
            allowed_functions: Vec::new(),
            forbidden_functions: Vec::new(),
            allowed_trigger_types: None,
            allow_trigger_type_registration: true,
            allow_function_registration: true,
            prefix: None,
            context: None,
        }
    }

    /// The policy an authentication function granted; an error when its answer is not
    /// an `AuthResult`.
    pub(super) fn granted(listener: usize, result: &RawValue) -> Result<Self, String> {
        let granted: AuthResult =
            serde_json::from_str(result.get()).map_err(|e| format!("not an AuthResult: {e}"))?;
        let prefix = granted
            .function_registration_prefix
            .filter(|p| !p.trim().is_empty());
        let context = granted.context.filter(|c| {
            let text = c.get().trim();
            text != "null" && text != "{}"
        });
        Ok(Self {
            listener,
            allowed_functions: granted.allowed_functions,
            forbidden_functions: granted.forbidden_functions,
            allowed_trigger_types: granted.allowed_trigger_types,
            allow_trigger_type_registration: granted.allow_trigger_type_registration,
            allow_function_registration: granted.allow_function_registration,
            prefix,
            context,
        })
    }

    /// May this session call `function_id` (whose exposure on this listener is
    /// `exposed`)? The reference's order: forbidden, allowed, carve-out, exposed.
    pub(super) fn may_call(&self, function_id: &str, exposed: bool) -> bool {
        if self.forbidden_functions.iter().any(|f| f == function_id) {
            return false;
        }
        self.allowed_functions.iter().any(|f| f == function_id)
            || INFRASTRUCTURE_FUNCTIONS.contains(&function_id)
            || exposed
    }

    /// May this session bind triggers of `trigger_type`?
    pub(super) fn may_use_trigger_type(&self, trigger_type: &str) -> bool {
        self.allowed_trigger_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == trigger_type))
    }

    /// The id under which a function this session registers as `id` is known.
    pub(super) fn registered_id(&self, id: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}::{id}"),
            None => id.to_owned(),
        }
    }
}
