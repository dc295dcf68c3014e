//! Several `iii-worker-manager` entries: the first one without `rbac` is the main
//! listener (its settings are the engine's, under the flags); every other entry is a
//! further listener with its own address and policy: untrusted workers when it has
//! `rbac`, trusted ones otherwise. Those entries take only what is per listener (`host`,
//! `port`, `rbac`, `middleware_function_id`, `allowed_origins`,
//! `max_connections_per_ip`, `builtin_calls_per_sec_per_ip`, `builtin_call_burst_per_ip`,
//! the per-worker quotas, `tls_cert_file` and `tls_key_file`);
//! an engine-wide setting there is an
//! error naming it, rather than a value silently applied to every listener.

use iii_tokio::engine::{ListenerPolicy, ListenerSettings, RateLimit, TlsSettings, WorkerQuotas};
use serde_json::{json, Map, Value};

use super::layer::listen_addr;
use super::rbac::filter_value;
use super::{ConfigErrorKind, ConfigFile, Listener};

/// Keys of a further listener's entry besides `host`, `port`, `rbac`,
/// `middleware_function_id`, `max_connections_per_ip` and the per-address built-in call
/// rate: the per-worker quotas,
/// `allowed_origins`, the listener's shares of the pre-upgrade slots (`max_handshakes`)
/// and of the upgrades waiting for its authentication function
/// (`max_pending_admissions`), the TLS certificate and key files, and `handshake_timeout_ms` (a
/// reference key, engine-wide here: the main entry's value applies).
const PER_LISTENER: &[&str] = &[
    "allowed_origins",
    "max_handshakes",
    "max_pending_admissions",
    "tls_cert_file",
    "tls_key_file",
    "handshake_timeout_ms",
    "max_functions_per_worker",
    "max_trigger_types_per_worker",
    "max_bindings_per_worker",
    "max_engine_bindings_per_worker",
    "max_pending_invocations_per_worker",
    "max_channels_per_worker",
    "builtin_calls_per_sec_per_worker",
    "builtin_call_burst_per_worker",
    "max_registration_bytes",
    "max_registration_bytes_per_worker",
];

impl ConfigFile {
    /// The main listener's entry: the first without `rbac` (`None`: the file has no
    /// entry, so the defaults apply).
    pub(crate) fn listener(&self) -> Result<Option<&Listener>, ConfigErrorKind> {
        let Some(main) = self.listeners.iter().find(|l| l.config.rbac.is_none()) else {
            return match self.listeners.first() {
                None => Ok(None),
                Some(_) => Err(ConfigErrorKind::NoTrustedListener),
            };
        };
        for (key, set) in [
            (
                "middleware_function_id",
                main.config.middleware_function_id.is_some(),
            ),
            (
                "max_connections_per_ip",
                main.config.max_connections_per_ip.is_some(),
            ),
            (
                "builtin_calls_per_sec_per_ip",
                main.config.builtin_calls_per_sec_per_ip.is_some(),
            ),
            (
                "builtin_call_burst_per_ip",
                main.config.builtin_call_burst_per_ip.is_some(),
            ),
        ] {
            if set {
                return Err(ConfigErrorKind::NotOnMain {
                    entry: main.entry.clone(),
                    key,
                });
            }
        }
        Ok(Some(main))
    }

    /// Every listener besides the main one, in file order.
    /// Two entries on one address (port 0 aside) are an error naming both.
    pub(crate) fn extra_listeners(&self) -> Result<Vec<ListenerSettings>, ConfigErrorKind> {
        let main = self.listener()?;
        let mut seen: Vec<(String, &str)> = main
            .map(|l| {
                (
                    listen_addr(l.config.host.as_deref(), l.config.port),
                    l.entry.as_str(),
                )
            })
            .into_iter()
            .collect();
        let mut extra = Vec::new();
        for listener in &self.listeners {
            if main.is_some_and(|m| m.entry == listener.entry) {
                continue;
            }
            let settings = listener.settings()?;
            if let Some((_, first)) = seen
                .iter()
                .find(|(addr, _)| *addr == settings.addr && !addr.ends_with(":0"))
            {
                return Err(ConfigErrorKind::SameAddress {
                    first: (*first).to_owned(),
                    second: listener.entry.clone(),
                    addr: settings.addr,
                });
            }
            seen.push((settings.addr.clone(), listener.entry.as_str()));
            extra.push(settings);
        }
        Ok(extra)
    }
}

impl Listener {
    /// The settings of this entry as a further listener.
    fn settings(&self) -> Result<ListenerSettings, ConfigErrorKind> {
        let config = &self.config;
        if let Some((key, _)) = config
            .settings()
            .into_iter()
            .find(|(key, _)| !PER_LISTENER.contains(key))
        {
            return Err(ConfigErrorKind::EngineWide {
                entry: self.entry.clone(),
                key,
            });
        }
        let name = self.entry.clone();
        let mut policy = match &config.rbac {
            Some(rbac) => {
                let rbac = rbac.to_rbac().map_err(|error| ConfigErrorKind::Rbac {
                    entry: self.entry.clone(),
                    error,
                })?;
                ListenerPolicy::untrusted(name, rbac)
            }
            None => ListenerPolicy::trusted(name),
        };
        policy.middleware_function_id = config.middleware_function_id.clone();
        if config.max_connections_per_ip.is_some() {
            policy.max_connections_per_ip = config.max_connections_per_ip;
        }
        policy.builtin_calls_per_ip = builtin_calls_per_ip(
            policy.builtin_calls_per_ip,
            config.builtin_calls_per_sec_per_ip,
            config.builtin_call_burst_per_ip,
        );
        policy.allowed_origins = config.allowed_origins.clone();
        policy.max_pending_admissions = config.max_pending_admissions;
        let quotas = &mut policy.quotas;
        let set = |field: &mut usize, value: Option<usize>| {
            if let Some(value) = value {
                *field = value;
            }
        };
        set(&mut quotas.functions, config.max_functions_per_worker);
        set(
            &mut quotas.trigger_types,
            config.max_trigger_types_per_worker,
        );
        set(&mut quotas.bindings, config.max_bindings_per_worker);
        set(
            &mut quotas.engine_bindings,
            config.max_engine_bindings_per_worker,
        );
        set(
            &mut quotas.pending_invocations,
            config.max_pending_invocations_per_worker,
        );
        set(&mut quotas.channels, config.max_channels_per_worker);
        set(
            &mut quotas.builtin_calls_per_sec,
            config.builtin_calls_per_sec_per_worker,
        );
        set(
            &mut quotas.builtin_call_burst,
            config.builtin_call_burst_per_worker,
        );
        set(
            &mut quotas.registration_bytes,
            config.max_registration_bytes,
        );
        set(
            &mut quotas.total_registration_bytes,
            config.max_registration_bytes_per_worker,
        );
        let mut settings =
            ListenerSettings::new(listen_addr(config.host.as_deref(), config.port), policy);
        settings.max_handshakes = config.max_handshakes;
        // Both or neither: checked when the file was read.
        if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
            settings.tls = Some(TlsSettings::new(cert, key));
        }
        Ok(settings)
    }
}

/// The per-address built-in call rate of a listener whose default is `default`, with
/// the entry's `per_second` and `burst` over it. A listener without a default (no
/// `rbac`) given only one of the two takes its value for the other.
fn builtin_calls_per_ip(
    default: Option<RateLimit>,
    per_second: Option<usize>,
    burst: Option<usize>,
) -> Option<RateLimit> {
    let per_second = per_second.or(default.map(|r| r.per_second)).or(burst)?;
    let burst = burst.or(default.map(|r| r.burst)).unwrap_or(per_second);
    Some(RateLimit::new(per_second, burst))
}

/// A further listener written back as an entry's `config:` (`--print-config`).
pub(crate) fn listener_config(listener: &ListenerSettings) -> Value {
    let policy = &listener.policy;
    let (host, port) = super::layer::split_addr(&listener.addr);
    let mut config = Map::new();
    config.insert("host".into(), json!(host));
    config.insert("port".into(), json!(port));
    if let Some(rbac) = &policy.rbac {
        let expose: Vec<Value> = rbac.expose_functions.iter().map(filter_value).collect();
        config.insert(
            "rbac".into(),
            json!({
                "auth_function_id": rbac.auth_function_id,
                "expose_functions": expose,
                "on_function_registration_function_id": rbac.on_function_registration_function_id,
                "on_trigger_registration_function_id": rbac.on_trigger_registration_function_id,
                "on_trigger_type_registration_function_id": rbac.on_trigger_type_registration_function_id,
                "hook_timeout_ms": u64::try_from(rbac.hook_timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        );
    }
    config.insert(
        "middleware_function_id".into(),
        json!(policy.middleware_function_id),
    );
    config.insert("allowed_origins".into(), json!(policy.allowed_origins));
    let tls = listener.tls.as_ref();
    let path = |file: Option<&std::path::PathBuf>| file.map(|f| f.to_string_lossy().into_owned());
    config.insert(
        "tls_cert_file".into(),
        json!(path(tls.map(|t| &t.cert_file))),
    );
    config.insert("tls_key_file".into(), json!(path(tls.map(|t| &t.key_file))));
    config.insert(
        "max_connections_per_ip".into(),
        json!(policy.max_connections_per_ip),
    );
    let per_ip = policy.builtin_calls_per_ip;
    config.insert(
        "builtin_calls_per_sec_per_ip".into(),
        json!(per_ip.map(|r| r.per_second)),
    );
    config.insert(
        "builtin_call_burst_per_ip".into(),
        json!(per_ip.map(|r| r.burst)),
    );
    config.insert("max_handshakes".into(), json!(listener.max_handshakes));
    config.insert(
        "max_pending_admissions".into(),
        json!(policy.max_pending_admissions),
    );
    let q: &WorkerQuotas = &policy.quotas;
    for (key, value) in [
        ("max_functions_per_worker", q.functions),
        ("max_trigger_types_per_worker", q.trigger_types),
        ("max_bindings_per_worker", q.bindings),
        ("max_engine_bindings_per_worker", q.engine_bindings),
        ("max_pending_invocations_per_worker", q.pending_invocations),
        ("max_channels_per_worker", q.channels),
        ("builtin_calls_per_sec_per_worker", q.builtin_calls_per_sec),
        ("builtin_call_burst_per_worker", q.builtin_call_burst),
        ("max_registration_bytes", q.registration_bytes),
        (
            "max_registration_bytes_per_worker",
            q.total_registration_bytes,
        ),
    ] {
        config.insert(key.into(), json!(value));
    }
    Value::Object(config)
}
