//! `iii-engine --config FILE`: the reference engine's configuration format.
//!
//! A YAML mapping with a `workers:` list (`modules:`, the reference's older name, is read
//! the same way and after it). Each entry has a `name` and a `config`; the entries named
//! `iii-worker-manager` (or `iii-worker-manager#N`) describe listeners and are ours:
//! their `config:` holds `host`, `port` and every `iii-engine` setting (see
//! [`schema::ManagerConfig`]), and any other key in them is an error. Entries for the
//! reference's other workers (`iii-stream`, `iii-state`, `iii-http`, ...) are skipped
//! and listed at start-up, so an existing deployment's file starts this engine. Unknown
//! top-level keys are errors, as in the reference. `${VAR:default}` is replaced first
//! (see [`substitute`]).

#[cfg(test)]
mod cpu_tests;
mod layer;
mod listeners;
#[cfg(test)]
mod memory_tests;
mod rbac;
mod schema;
#[cfg(test)]
mod slot_tests;
mod substitute;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

pub(crate) use layer::{log_file, print, resolve, ResolveError};
pub(crate) use rbac::flag_filter;
pub(crate) use schema::ManagerConfig;
pub(crate) use substitute::{process_env, Lookup, SubstituteError};

/// The reference's name of the worker this engine is.
pub(crate) const WORKER_MANAGER: &str = "iii-worker-manager";

/// What `--print-config` writes for a secret, and so a value refused as a token.
pub(crate) const REDACTED: &str = "<redacted>";

/// A configuration file, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConfigFile {
    /// The `iii-worker-manager` entries, in file order (`workers:` before `modules:`).
    pub(crate) listeners: Vec<Listener>,
    /// The names of the other entries, each once, in file order: not supported here.
    pub(crate) skipped: Vec<String>,
    /// Top-level settings of the reference that this engine has no use for.
    pub(crate) ignored: Vec<&'static str>,
}

/// One `iii-worker-manager` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Listener {
    /// Where it is in the file (`workers[2]`), for messages.
    pub(crate) entry: String,
    /// Its `config:`.
    pub(crate) config: ManagerConfig,
}

/// A configuration file that cannot be used; the binary exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("configuration file {path}: {error}")]
pub(crate) struct ConfigError {
    /// The file.
    pub(crate) path: PathBuf,
    /// What is wrong with it.
    pub(crate) error: ConfigErrorKind,
}

/// What is wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigErrorKind {
    /// It cannot be read.
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    /// A `${VAR}` cannot be replaced.
    #[error(transparent)]
    Substitute(#[from] SubstituteError),
    /// It is not YAML of the expected shape (the message names the key and the line).
    #[error(transparent)]
    Yaml(#[from] yaml_serde::Error),
    /// An entry has both `token` and `token_file`.
    #[error("{entry}.config: give `{key}` or `{key}_file`, not both")]
    TwoTokens {
        /// The entry (`workers[0]`).
        entry: String,
        /// `token` or `metrics_token`.
        key: &'static str,
    },
    /// One of `tls_cert_file` and `tls_key_file` without the other.
    #[error("{entry}.config: give both `tls_cert_file` and `tls_key_file` (TLS), or neither")]
    TlsPair {
        /// The entry.
        entry: String,
    },
    /// The token is the placeholder that `--print-config` writes.
    #[error(
        "{entry}.config: a token is \"{REDACTED}\", the placeholder --print-config writes in \
         place of a token: put the real token there (better: `token_file`)"
    )]
    RedactedToken {
        /// The entry.
        entry: String,
    },
    /// Every entry has `rbac`: there would be no listener for trusted workers (whose
    /// functions the untrusted ones call, and which run the authentication function).
    #[error(
        "every iii-worker-manager entry has `rbac`: add one without it for trusted workers \
         (it is the engine's main listener)"
    )]
    NoTrustedListener,
    /// A key that applies to further listeners only, on the main one.
    #[error(
        "{entry}.config.{key}: the main listener (the first entry without `rbac`) trusts its \
         workers; `{key}` applies to entries with `rbac` and further listeners"
    )]
    NotOnMain {
        /// The entry.
        entry: String,
        /// The key.
        key: &'static str,
    },
    /// An engine-wide setting in the entry of a further listener.
    #[error(
        "{entry}.config.{key} is an engine-wide setting: set it in the main listener's entry \
         (the first without `rbac`); further listeners take host, port, rbac, \
         middleware_function_id, allowed_origins, max_connections_per_ip, \
         builtin_calls_per_sec_per_ip, builtin_call_burst_per_ip, max_handshakes, \
         max_pending_admissions and the per-worker quotas"
    )]
    EngineWide {
        /// The entry.
        entry: String,
        /// The key.
        key: &'static str,
    },
    /// Two entries on one address.
    #[error("{first} and {second} both listen on {addr}: give each its own `port`")]
    SameAddress {
        /// The first entry.
        first: String,
        /// The second.
        second: String,
        /// The address.
        addr: String,
    },
    /// An entry whose name is a near miss of `iii-worker-manager`: a typo would
    /// otherwise start the engine on its defaults, silently.
    #[error(
        "{entry}: `name: {name}` is not a worker this engine knows: did you mean \
         `{WORKER_MANAGER}`? (entries of other iii workers are skipped, but this name \
         is too close to ours to be one)"
    )]
    NearMiss {
        /// The entry (`workers[0]`).
        entry: String,
        /// The name it has.
        name: String,
    },
    /// An `rbac` block that cannot be used.
    #[error("{entry}.config.{error}")]
    Rbac {
        /// The entry.
        entry: String,
        /// What is wrong.
        error: rbac::FilterError,
    },
}

impl ConfigFile {
    /// Reads, substitutes and parses the file at `path`.
    pub(crate) fn load(path: &Path, env: impl Fn(&str) -> Lookup) -> Result<Self, ConfigError> {
        let with_path = |error| ConfigError {
            path: path.to_owned(),
            error,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| with_path(ConfigErrorKind::Read(error)))?;
        Self::parse(&text, env).map_err(with_path)
    }

    /// Substitutes and parses the text of a file.
    pub(crate) fn parse(text: &str, env: impl Fn(&str) -> Lookup) -> Result<Self, ConfigErrorKind> {
        let text = substitute::substitute(text, env)?;
        let raw: RawFile = yaml_serde::from_str(&text)?;
        let mut file = ConfigFile {
            listeners: Vec::new(),
            skipped: Vec::new(),
            ignored: Vec::new(),
        };
        if raw.registration_namespace_grace_ms.is_some() {
            file.ignored.push("registration_namespace_grace_ms");
        }
        let lists = [("workers", raw.workers), ("modules", raw.modules)];
        for (list, entries) in lists {
            for (index, entry) in entries.unwrap_or_default().into_iter().enumerate() {
                match entry {
                    Entry::Manager(config) => file.listeners.push(Listener {
                        entry: format!("{list}[{index}]"),
                        config: *config,
                    }),
                    Entry::Other(name) if is_near_miss(&name) => {
                        return Err(ConfigErrorKind::NearMiss {
                            entry: format!("{list}[{index}]"),
                            name,
                        })
                    }
                    Entry::Other(name) if !file.skipped.contains(&name) => file.skipped.push(name),
                    Entry::Other(_) => {}
                }
            }
        }
        for listener in &file.listeners {
            listener.check()?;
        }
        Ok(file)
    }
}

impl Listener {
    /// Checks what the types alone do not.
    fn check(&self) -> Result<(), ConfigErrorKind> {
        let config = &self.config;
        let pairs = [
            (
                "token",
                config.token.is_some() && config.token_file.is_some(),
            ),
            (
                "metrics_token",
                config.metrics_token.is_some() && config.metrics_token_file.is_some(),
            ),
        ];
        if let Some((key, _)) = pairs.into_iter().find(|(_, both)| *both) {
            return Err(ConfigErrorKind::TwoTokens {
                entry: self.entry.clone(),
                key,
            });
        }
        if config.tls_cert_file.is_some() != config.tls_key_file.is_some() {
            return Err(ConfigErrorKind::TlsPair {
                entry: self.entry.clone(),
            });
        }
        if config.token.as_deref() == Some(REDACTED)
            || config.metrics_token.as_deref() == Some(REDACTED)
        {
            return Err(ConfigErrorKind::RedactedToken {
                entry: self.entry.clone(),
            });
        }
        Ok(())
    }
}

/// The top level of the reference's format (it refuses other keys too).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "iii configuration")]
struct RawFile {
    #[serde(default)]
    workers: Option<Vec<Entry>>,
    #[serde(default)]
    modules: Option<Vec<Entry>>,
    #[serde(default)]
    registration_namespace_grace_ms: Option<u64>,
}

/// True for `iii-worker-manager` and `iii-worker-manager#N` (the reference numbers
/// repeated names so).
fn is_worker_manager(name: &str) -> bool {
    name.split('#').next() == Some(WORKER_MANAGER)
}

/// Edit distance at most this far from `iii-worker-manager` (and not it) is taken for
/// a typo of it: the reference's other workers (`iii-stream`, `iii-http`, ...) are far
/// further away.
const NEAR_MISS_DISTANCE: usize = 3;

/// True for a name that looks like a typo of `iii-worker-manager` (its `#N` suffix
/// aside, case ignored).
fn is_near_miss(name: &str) -> bool {
    let base = name.split('#').next().unwrap_or(name);
    base != WORKER_MANAGER
        && strsim::damerau_levenshtein(&base.to_ascii_lowercase(), WORKER_MANAGER)
            <= NEAR_MISS_DISTANCE
}

/// One entry of `workers:`.
#[derive(Debug)]
enum Entry {
    /// Ours, with its `config:`.
    Manager(Box<ManagerConfig>),
    /// Another worker's, by name.
    Other(String),
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntryVisitor)
    }
}

/// Reads an entry. Our `config:` is read with its types while the file is parsed, so
/// errors in it name the line; an entry whose `name` comes after its `config` (allowed,
/// if unusual) is checked once the name is known, and its errors name the entry.
struct EntryVisitor;

/// An entry's `config:` as far as it has been read.
enum PendingConfig {
    /// Read as ours.
    Manager(Box<ManagerConfig>),
    /// Read before the name was known.
    Raw(yaml_serde::Value),
    /// Another worker's: not kept.
    Skipped,
}

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a worker entry: a mapping with `name` and `config`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let mut name: Option<String> = None;
        let mut config: Option<PendingConfig> = None;
        // Keys other than `name` and `config`, read before the name was.
        let mut others: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let ours = name.as_deref().map(is_worker_manager);
            match key.as_str() {
                "name" => {
                    if name.is_some() {
                        return Err(de::Error::duplicate_field("name"));
                    }
                    let value: String = map.next_value()?;
                    if let (true, Some(other)) = (is_worker_manager(&value), others.first()) {
                        return Err(unknown_entry_key(other));
                    }
                    name = Some(value);
                }
                "config" => {
                    if config.is_some() {
                        return Err(de::Error::duplicate_field("config"));
                    }
                    config = Some(match ours {
                        Some(true) => PendingConfig::Manager(Box::new(
                            map.next_value::<Option<ManagerConfig>>()?
                                .unwrap_or_default(),
                        )),
                        Some(false) => {
                            map.next_value::<IgnoredAny>()?;
                            PendingConfig::Skipped
                        }
                        None => PendingConfig::Raw(map.next_value()?),
                    });
                }
                _ if ours == Some(true) => return Err(unknown_entry_key(&key)),
                _ => {
                    // The reference tolerates other keys (`image`, ...) in entries.
                    map.next_value::<IgnoredAny>()?;
                    others.push(key);
                }
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        if !is_worker_manager(&name) {
            return Ok(Entry::Other(name));
        }
        let config = match config {
            None | Some(PendingConfig::Skipped) => Box::default(),
            Some(PendingConfig::Manager(config)) => config,
            Some(PendingConfig::Raw(value)) => Box::new(
                Option::<ManagerConfig>::deserialize(value)
                    .map_err(|error| de::Error::custom(format_args!("{name}: config: {error}")))?
                    .unwrap_or_default(),
            ),
        };
        Ok(Entry::Manager(config))
    }
}

fn unknown_entry_key<E: de::Error>(key: &str) -> E {
    E::custom(format_args!(
        "unknown key `{key}` in an {WORKER_MANAGER} entry: it has `name` and `config` \
         (settings go inside `config`)"
    ))
}
