//! What the engine knows about one worker's control connection.

use crate::Instant;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::rate::TokenBucket;
use super::rbac::SessionPolicy;
use super::FnKey;
use crate::ids::Secret;
use crate::wire::Payload;

/// The default namespace.
pub(super) const DEFAULT_NAMESPACE: &str = "default";

/// Identity announced by `engine::workers::register` (an `invokefunction` with
/// `action: void` and no `invocation_id`, the first message every SDK sends). Unknown keys
/// are ignored; every field is optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(super) struct WorkerMeta {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) runtime: Option<String>,
    #[serde(default)]
    pub(super) version: Option<String>,
    #[serde(default)]
    pub(super) os: Option<String>,
    #[serde(default)]
    pub(super) pid: Option<u64>,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) isolation: Option<String>,
    #[serde(default)]
    pub(super) namespace: Option<String>,
}

/// A worker's control session.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) worker_id: String,
    pub(super) reattach_token: Secret,
    pub(super) namespace: String,
    pub(super) meta: WorkerMeta,
    pub(super) connected_at: Option<Instant>,
    /// The client's address, when the driver gave it (for log lines).
    pub(super) peer: Option<std::net::IpAddr>,
    pub(super) functions: BTreeSet<FnKey>,
    /// Trigger types it provides, and those it registered under ids another worker
    /// provides and it may not use (counted, never stored: `Engine::shadow_trigger_type`).
    pub(super) trigger_types: BTreeSet<FnKey>,
    pub(super) bindings: BTreeSet<String>,
    /// How many of `bindings` are on the engine's own trigger types.
    pub(super) engine_bindings: usize,
    /// Bytes of the payloads of everything it registered.
    pub(super) registration_bytes: usize,
    /// The listener it connected to.
    pub(super) listener: usize,
    /// What it may do when its listener has RBAC; `None`: trusted.
    pub(super) policy: Option<SessionPolicy>,
    /// Functions it registered under ids another worker holds and it may not use,
    /// with their bytes (also in `functions`, so they count toward its quotas; see
    /// `Engine::shadow_function`).
    pub(super) shadowed: BTreeMap<FnKey, usize>,
    /// Its registrations waiting for a hook, by kind (functions, trigger types,
    /// bindings): they count toward its count quotas.
    pub(super) hooks_pending: [usize; 3],
    /// The tickets of those hooks.
    pub(super) hook_tickets: BTreeSet<u64>,
    /// What it logged through `engine::log::*` lately.
    pub(super) log_budget: super::worker_log::LogBudget,
    /// Its calls of the engine's own functions (`builtin_calls_per_sec`).
    pub(super) builtin_calls: TokenBucket,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            worker_id: String::new(),
            reattach_token: Secret::parse(&"0".repeat(64)).unwrap_or_else(zero_secret),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            meta: WorkerMeta::default(),
            connected_at: None,
            peer: None,
            functions: BTreeSet::new(),
            trigger_types: BTreeSet::new(),
            bindings: BTreeSet::new(),
            engine_bindings: 0,
            registration_bytes: 0,
            listener: 0,
            policy: None,
            shadowed: BTreeMap::new(),
            hooks_pending: [0; 3],
            hook_tickets: BTreeSet::new(),
            log_budget: Default::default(),
            builtin_calls: TokenBucket::default(),
        }
    }
}

fn zero_secret() -> Secret {
    // Only reached if the literal above stopped parsing; keeps Default total.
    crate::ids::IdGen::new([0; 32]).secret()
}

impl Session {
    /// The name shown in listings: the announced name, or the worker id.
    pub(super) fn display_name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or(&self.worker_id)
    }
}

/// A registered function's description, for listings. Everything a listing filters on
/// is computed once, at registration, so listing never parses metadata.
#[derive(Debug)]
pub(super) struct FunctionSpec {
    pub(super) description: Option<String>,
    pub(super) metadata: Option<Payload>,
    /// The `request_format` it was registered with (listed by
    /// `engine::functions::list`; counted in `bytes`).
    pub(super) request_format: Option<Payload>,
    /// The `response_format` it was registered with (likewise).
    pub(super) response_format: Option<Payload>,
    /// `metadata.internal == true`: hidden from listings unless asked for.
    pub(super) internal: bool,
    /// The id and description, lowercased, for `search`.
    pub(super) search_text: String,
    /// Bytes counted toward the owner's registration quota.
    pub(super) bytes: usize,
    /// The id its worker knows it by, when the engine prefixed it (RBAC
    /// `function_registration_prefix`); invocations are sent with this id.
    pub(super) local_id: Option<String>,
    /// The listeners whose `expose_functions` it matches.
    pub(super) exposed_on: BTreeSet<usize>,
}

impl FunctionSpec {
    /// The spec of function `id`.
    pub(super) fn new(
        id: &str,
        description: Option<String>,
        metadata: Option<Payload>,
        bytes: usize,
    ) -> Self {
        let internal = metadata.as_ref().is_some_and(marks_internal);
        let mut search_text = id.to_lowercase();
        if let Some(description) = &description {
            search_text.push('\n');
            search_text.push_str(&description.to_lowercase());
        }
        Self {
            description,
            metadata,
            request_format: None,
            response_format: None,
            internal,
            search_text,
            bytes,
            local_id: None,
            exposed_on: BTreeSet::new(),
        }
    }
}

/// True when `metadata` is an object whose `internal` member is `true`. Reads only that
/// member (the rest is skipped without building anything).
pub(super) fn marks_internal(metadata: &Payload) -> bool {
    #[derive(Deserialize)]
    struct Flags<'a> {
        #[serde(default, borrow)]
        internal: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_str::<Flags<'_>>(metadata.get())
        .ok()
        .and_then(|flags| flags.internal)
        .is_some_and(|value| value.get().trim() == "true")
}

/// Strips control and bidirectional-override characters and caps the length, as the
/// reference does for names and descriptions.
pub(super) fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .take(280)
        .collect()
}
