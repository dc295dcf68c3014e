//! `registerWorker(address, options)`: the engine URL and the `InitOptions` object
//! (passed through `JSON.stringify`) turned into the core's [`WorkerConfig`], with a
//! typed error for every bad value.

use std::collections::BTreeMap;
use std::time::Duration;

use iii_core::worker::{ConfigError, WorkerConfig, MAX_CALL_TIMEOUT, MAX_RECONNECT_DELAY};
use serde::Deserialize;

/// The `InitOptions` of `registerWorker`, as the documentation names them. Unknown keys
/// are refused (a misspelt option is an error, not a silent default).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitOptions {
    /// The name announced to the engine; default `browser:<16 hex digits>`, random per
    /// worker (a browser has no pid, and two tabs with one name would evict each other).
    pub worker_name: Option<String>,
    /// The namespace this worker registers in; default the engine's.
    pub namespace: Option<String>,
    /// Free text announced with the worker.
    pub description: Option<String>,
    /// Default timeout of `trigger()` in milliseconds; default 30 000.
    pub invocation_timeout_ms: Option<f64>,
    /// Reconnection behaviour.
    pub reconnection_config: Option<ReconnectionConfig>,
    /// Accepted for compatibility and ignored: the browser's WebSocket cannot send
    /// headers (authenticate with a query parameter or a cookie).
    pub headers: Option<BTreeMap<String, String>>,
    /// Bytes a channel writer holds (queued and in flight) before `sendBinary` waits;
    /// default 1 MiB.
    pub writer_window_bytes: Option<f64>,
    /// Largest control message accepted from the engine, in bytes; default 64 MiB.
    pub max_control_message_bytes: Option<f64>,
    /// Bytes of calls queued while disconnected before `trigger()` fails; default 16 MiB.
    pub max_offline_queue_bytes: Option<f64>,
}

/// `InitOptions.reconnectionConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconnectionConfig {
    /// First delay in milliseconds; default 1000.
    pub initial_delay_ms: Option<f64>,
    /// Cap of the delay in milliseconds; default 30 000.
    pub max_delay_ms: Option<f64>,
    /// Growth factor per failure; only 2 (the default) is supported.
    pub backoff_multiplier: Option<f64>,
    /// Random jitter fraction in [0, 1); default 0.3.
    pub jitter_factor: Option<f64>,
    /// Failed attempts in a row before the worker gives up; -1 (the default) never does.
    pub max_retries: Option<f64>,
}

/// What `registerWorker` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The engine URL (`ws://` or `wss://`), trimmed.
    pub url: String,
    /// The core's configuration (identity, timeouts, backoff, limits).
    pub config: WorkerConfig,
    /// Consecutive failed connects after which the worker stops; `None`: never.
    pub max_retries: Option<u32>,
    /// `headers` were given (and are ignored): worth a console warning.
    pub headers_ignored: bool,
}

/// Why `registerWorker` refused its arguments.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionsError {
    /// The address is not a `ws://` or `wss://` URL with a host.
    #[error("the engine address must be a ws:// or wss:// URL with a host, got {0:?}")]
    Url(String),
    /// The options object is not an `InitOptions` (unknown key, wrong type).
    #[error("invalid options: {0}")]
    Shape(String),
    /// A number is out of its range.
    #[error("`{name}` must be {expected}, got {value}")]
    Range {
        /// The option.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        value: f64,
    },
    /// The resulting configuration is refused by the core.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Checks `address` and `options_json` (the options object through `JSON.stringify`;
/// `None` for no options). `random_name` is the default worker name's suffix and
/// `user_agent` the announced operating system.
pub fn settings(
    address: &str,
    options_json: Option<&str>,
    random_name: &str,
    user_agent: &str,
) -> Result<Settings, OptionsError> {
    let url = check_url(address)?;
    let options: InitOptions = match options_json {
        Some(json) => {
            serde_json::from_str(json).map_err(|error| OptionsError::Shape(error.to_string()))?
        }
        None => InitOptions::default(),
    };
    let mut config = WorkerConfig::default();
    let identity = &mut config.identity;
    identity.name = options
        .worker_name
        .unwrap_or_else(|| format!("browser:{random_name}"));
    identity.runtime = "browser".to_owned();
    identity.version = env!("CARGO_PKG_VERSION").to_owned();
    identity.os = user_agent.to_owned();
    identity.namespace = options.namespace;
    identity.description = options.description;
    if let Some(ms) = options.invocation_timeout_ms {
        config.invocation_timeout = millis("invocationTimeoutMs", ms, MAX_CALL_TIMEOUT)?;
    }
    for (name, value, field) in [
        (
            "writerWindowBytes",
            options.writer_window_bytes,
            &mut config.writer_window_bytes,
        ),
        (
            "maxControlMessageBytes",
            options.max_control_message_bytes,
            &mut config.max_control_message_bytes,
        ),
        (
            "maxOfflineQueueBytes",
            options.max_offline_queue_bytes,
            &mut config.max_offline_queue_bytes,
        ),
    ] {
        if let Some(value) = value {
            *field = count(name, value)?;
        }
    }
    let mut max_retries = None;
    if let Some(reconnect) = options.reconnection_config {
        if let Some(ms) = reconnect.initial_delay_ms {
            config.reconnect_initial = millis("initialDelayMs", ms, MAX_RECONNECT_DELAY)?;
        }
        if let Some(ms) = reconnect.max_delay_ms {
            config.reconnect_max = millis("maxDelayMs", ms, MAX_RECONNECT_DELAY)?;
        }
        if let Some(factor) = reconnect.backoff_multiplier {
            if factor != 2.0 {
                return Err(range("backoffMultiplier", "2 (the delay doubles)", factor));
            }
        }
        if let Some(jitter) = reconnect.jitter_factor {
            config.reconnect_jitter = jitter;
        }
        if let Some(retries) = reconnect.max_retries {
            if retries != -1.0 {
                max_retries = Some(u32::try_from(count("maxRetries", retries)?).map_err(|_| {
                    range("maxRetries", "-1 or a whole number of attempts", retries)
                })?);
            }
        }
    }
    config.validate()?;
    Ok(Settings {
        url,
        config,
        max_retries,
        headers_ignored: options.headers.is_some_and(|headers| !headers.is_empty()),
    })
}

fn check_url(address: &str) -> Result<String, OptionsError> {
    let url = address.trim();
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| OptionsError::Url(address.to_owned()))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.contains(char::is_whitespace) {
        return Err(OptionsError::Url(address.to_owned()));
    }
    Ok(url.to_owned())
}

fn range(name: &'static str, expected: &'static str, value: f64) -> OptionsError {
    OptionsError::Range {
        name,
        expected,
        value,
    }
}

/// A positive number of milliseconds up to `max`.
pub(crate) fn millis(name: &'static str, ms: f64, max: Duration) -> Result<Duration, OptionsError> {
    let expected = "a positive number of milliseconds (at most one year)";
    if !(ms.is_finite() && ms > 0.0) {
        return Err(range(name, expected, ms));
    }
    match Duration::try_from_secs_f64(ms / 1000.0) {
        Ok(duration) if duration <= max => Ok(duration),
        _ => Err(range(name, expected, ms)),
    }
}

/// A whole number at least 1.
fn count(name: &'static str, value: f64) -> Result<usize, OptionsError> {
    if value.is_finite() && value >= 1.0 && value.fract() == 0.0 && value <= u32::MAX as f64 {
        Ok(value as usize)
    } else {
        Err(range(name, "a whole number at least 1", value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(options: &str) -> Result<Settings, OptionsError> {
        settings("ws://127.0.0.1:49134", Some(options), "abc", "test-agent")
    }

    #[test]
    fn defaults_name_the_worker_browser_random_and_announce_the_user_agent() {
        let settings = settings(" ws://h:1/ ", None, "0123", "UA").expect("valid");
        assert_eq!(settings.url, "ws://h:1/");
        assert_eq!(settings.config.identity.name, "browser:0123");
        assert_eq!(settings.config.identity.runtime, "browser");
        assert_eq!(settings.config.identity.os, "UA");
        assert_eq!(settings.config.invocation_timeout, Duration::from_secs(30));
        assert_eq!(settings.max_retries, None);
        assert!(!settings.headers_ignored);
    }

    #[test]
    fn every_documented_option_is_applied() {
        let settings = parse(
            r#"{"workerName":"tab","namespace":"ui","invocationTimeoutMs":2500,
                "headers":{"x":"y"},"writerWindowBytes":65536,
                "reconnectionConfig":{"initialDelayMs":50,"maxDelayMs":400,
                "backoffMultiplier":2,"jitterFactor":0,"maxRetries":3}}"#,
        )
        .expect("valid");
        let config = &settings.config;
        assert_eq!(config.identity.name, "tab");
        assert_eq!(config.identity.namespace.as_deref(), Some("ui"));
        assert_eq!(config.invocation_timeout, Duration::from_millis(2500));
        assert_eq!(config.reconnect_initial, Duration::from_millis(50));
        assert_eq!(config.reconnect_max, Duration::from_millis(400));
        assert_eq!(config.reconnect_jitter, 0.0);
        assert_eq!(config.writer_window_bytes, 65536);
        assert_eq!(settings.max_retries, Some(3));
        assert!(settings.headers_ignored);
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let bad_url = settings("http://h:1", None, "a", "b");
        assert!(matches!(bad_url, Err(OptionsError::Url(_))));
        assert!(matches!(
            settings("ws:///path", None, "a", "b"),
            Err(OptionsError::Url(_))
        ));
        assert!(matches!(
            parse(r#"{"workername":"x"}"#),
            Err(OptionsError::Shape(_))
        ));
        assert!(matches!(
            parse(r#"{"invocationTimeoutMs":-1}"#),
            Err(OptionsError::Range {
                name: "invocationTimeoutMs",
                ..
            })
        ));
        assert!(matches!(
            parse(r#"{"reconnectionConfig":{"backoffMultiplier":3}}"#),
            Err(OptionsError::Range {
                name: "backoffMultiplier",
                ..
            })
        ));
        assert!(matches!(
            parse(r#"{"reconnectionConfig":{"maxRetries":1.5}}"#),
            Err(OptionsError::Range {
                name: "maxRetries",
                ..
            })
        ));
        assert!(matches!(
            parse(r#"{"reconnectionConfig":{"jitterFactor":1}}"#),
            Err(OptionsError::Config(ConfigError::Jitter(_)))
        ));
        assert!(matches!(
            parse(r#"{"workerName":"  "}"#),
            Err(OptionsError::Config(ConfigError::EmptyName))
        ));
    }
}
