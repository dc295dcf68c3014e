//! Layers a configuration file under the command line: explicit flag > `III_ENGINE_*`
//! environment variable > file > built-in default.
//!
//! The file's values become the flags' defaults, and the command line is parsed again:
//! clap itself then prefers a flag, then its environment variable, then the default, so
//! the file never overrides either. Two settings need more than that: `addr`, which the
//! file gives as `host` and `port`, and the token, which is one setting spelt `token` or
//! `token_file`: when either is given by a flag or the environment, the file's token is
//! not used at all.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::ValueParser;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use iii_tokio::engine::{ListenerSettings, DEFAULT_ADDR};
use yaml_serde::{Mapping, Value};

use super::{ConfigError, ConfigFile, Listener, Lookup, REDACTED, WORKER_MANAGER};
use crate::args::Args;

/// Clap ids that are not settings of the listener (or that the file spells otherwise).
/// The `rbac_*` flags describe a further listener: in a file, that is an entry of its own.
pub(crate) const NOT_SETTINGS: &[&str] = &[
    "help",
    "version",
    "config",
    "print_config",
    "addr",
    "rbac_addr",
    "rbac_auth_function",
    "rbac_expose",
    "rbac_middleware_function",
    "rbac_allowed_origins",
    "rbac_max_connections_per_ip",
    "rbac_builtin_calls_per_sec_per_ip",
    "rbac_builtin_call_burst_per_ip",
    "rbac_max_handshakes",
    "rbac_max_pending_admissions",
    "rbac_hook_timeout_ms",
    "rbac_tls_cert_file",
    "rbac_tls_key_file",
];

/// The command line, with the configuration file under it.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The effective settings.
    pub(crate) args: Args,
    /// What clap matched (value sources tell a flag from the environment or a default,
    /// the file's values being defaults).
    pub(crate) matches: ArgMatches,
    /// The file, when `--config` names one.
    pub(crate) file: Option<(PathBuf, ConfigFile)>,
    /// The file's listeners besides the main one.
    pub(crate) listeners: Vec<ListenerSettings>,
}

/// Why the settings cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    /// The configuration file cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command line cannot be parsed (clap's own error, which prints itself).
    #[error(transparent)]
    Args(#[from] clap::Error),
}

/// Resolves the settings from `argv` (program name first), `first` (the same command
/// line parsed without a file: it says which file, and what was given explicitly) and
/// the configuration file it names, whose `${VAR}`s are looked up with `env`.
pub(crate) fn resolve(
    argv: &[OsString],
    first: &ArgMatches,
    env: impl Fn(&str) -> Lookup,
) -> Result<Resolved, ResolveError> {
    let Some(path) = first.get_one::<PathBuf>("config") else {
        return Ok(Resolved {
            args: Args::from_arg_matches(first)?,
            matches: first.clone(),
            file: None,
            listeners: Vec::new(),
        });
    };
    let file = ConfigFile::load(path, env)?;
    let in_file = |error| ConfigError {
        path: path.clone(),
        error,
    };
    let listener = file.listener().map_err(in_file)?;
    let listeners = file.extra_listeners().map_err(in_file)?;
    let mut command = Args::command();
    if let Some(listener) = listener {
        command = with_file_defaults(command, listener, first);
    }
    let matches = command.try_get_matches_from(argv)?;
    Ok(Resolved {
        args: Args::from_arg_matches(&matches)?,
        matches,
        file: Some((path.clone(), file)),
        listeners,
    })
}

/// True when `id` was given by a flag or an environment variable.
fn explicit(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// `command` with the listener's settings as its defaults.
fn with_file_defaults(mut command: Command, listener: &Listener, first: &ArgMatches) -> Command {
    let config = &listener.config;
    let token_given = explicit(first, "token") || explicit(first, "token_file");
    for (id, values) in config.settings() {
        if token_given && (id == "token" || id == "token_file") {
            continue;
        }
        command = command.mut_arg(id, |arg| arg.default_values(values));
    }
    if config.host.is_some() || config.port.is_some() {
        let addr = listen_addr(config.host.as_deref(), config.port);
        command = command.mut_arg("addr", |arg| arg.default_value(addr));
    }
    command
}

/// `host:port` (`[host]:port` for an IPv6 address), the missing half from the default.
pub(super) fn listen_addr(host: Option<&str>, port: Option<u16>) -> String {
    let (default_host, default_port) = split_addr(DEFAULT_ADDR);
    let host = host.unwrap_or(default_host);
    let port = port.or(default_port).unwrap_or_default();
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The host and port of `host:port` or `[v6]:port` (no port: `None`).
pub(super) fn split_addr(addr: &str) -> (&str, Option<u16>) {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            (host, port.parse().ok())
        }
        _ => (addr, None),
    }
}

/// Logs which file was read, and the entries and settings of it that are skipped (one
/// line, so an operator sees at once what of an iii deployment does not run here).
pub(crate) fn log_file(file: Option<&(PathBuf, ConfigFile)>) {
    let Some((path, file)) = file else {
        return;
    };
    let listener = file
        .listeners
        .first()
        .map_or("none: defaults", |l| l.entry.as_str());
    tracing::info!(path = %path.display(), listener, "configuration file read");
    if !file.skipped.is_empty() || !file.ignored.is_empty() {
        let none = |list: String| {
            if list.is_empty() {
                "none".to_owned()
            } else {
                list
            }
        };
        tracing::warn!(
            workers = %none(file.skipped.join(", ")),
            settings = %none(file.ignored.join(", ")),
            "configuration file: iii workers and settings not supported by iii-engine are skipped"
        );
    }
}

/// Prints [`render`]'s text to standard output (`--print-config`).
pub(crate) fn print(resolved: &Resolved, listeners: &[ListenerSettings]) -> ExitCode {
    match render(
        &resolved.args,
        &resolved.matches,
        resolved.file.as_ref(),
        listeners,
    ) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "cannot write the configuration");
            ExitCode::FAILURE
        }
    }
}

/// The effective configuration as a file of the same shape (`--print-config`): every
/// setting with its value after the file, the environment and the flags; secrets (the
/// flags whose environment values clap hides) replaced by `<redacted>`; then one entry
/// per further listener (from the file and the `--rbac-*` flags).
pub(crate) fn render(
    args: &Args,
    matches: &ArgMatches,
    file: Option<&(PathBuf, ConfigFile)>,
    listeners: &[ListenerSettings],
) -> Result<String, yaml_serde::Error> {
    let mut config = Mapping::new();
    let (host, port) = split_addr(&args.addr);
    config.insert("host".into(), host.into());
    config.insert("port".into(), port.map_or(Value::Null, Value::from));
    let command = Args::command();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_SETTINGS.contains(&id) {
            continue;
        }
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let parser = arg.get_value_parser().type_id();
        let text = [ValueParser::string(), ValueParser::path_buf()]
            .iter()
            .any(|p| p.type_id() == parser);
        let scalar = |raw: &String| {
            if text {
                Value::from(raw.as_str())
            } else {
                number(raw)
            }
        };
        let value = if arg.is_hide_env_values_set() && !raw.is_empty() {
            Value::from(REDACTED)
        } else if matches!(arg.get_action(), ArgAction::Append) {
            Value::Sequence(raw.iter().map(scalar).collect())
        } else if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
            Value::Bool(matches.get_flag(id))
        } else {
            raw.first().map_or(Value::Null, scalar)
        };
        config.insert(id.into(), value);
    }
    let mut entry = Mapping::new();
    entry.insert("name".into(), WORKER_MANAGER.into());
    entry.insert("config".into(), Value::Mapping(config));
    let mut entries = vec![Value::Mapping(entry)];
    for listener in listeners {
        let mut entry = Mapping::new();
        entry.insert("name".into(), WORKER_MANAGER.into());
        entry.insert(
            "config".into(),
            yaml_serde::to_value(super::listeners::listener_config(listener))?,
        );
        entries.push(Value::Mapping(entry));
    }
    let mut top = Mapping::new();
    top.insert("workers".into(), Value::Sequence(entries));
    let mut out = String::from(
        "# iii-engine: the effective configuration (built-in defaults, then the file, then\n\
         # III_ENGINE_* environment variables, then flags).\n",
    );
    if let Some((path, file)) = file {
        out.push_str(&format!("# file: {}\n", path.display()));
        if !file.skipped.is_empty() {
            out.push_str(&format!(
                "# skipped (not part of iii-engine): {}\n",
                file.skipped.join(", ")
            ));
        }
    }
    out.push_str(&yaml_serde::to_string(&top)?);
    Ok(out)
}

/// A number's value as YAML: a number where it reads back as the same number (so a
/// value clap took but the file's types would not stays visible as it is).
fn number(raw: &str) -> Value {
    match raw.parse::<u64>() {
        Ok(number) if number.to_string() == raw => Value::from(number),
        _ => Value::from(raw),
    }
}
