//! Parsing, checks, precedence and `--print-config` of configuration files. The
//! environment's side of precedence (`III_ENGINE_*`) is covered by the binary's tests
//! (`tests/engine_config.rs`), which set it per process.

use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::{CommandFactory, FromArgMatches};

use super::layer::{render, Resolved, NOT_SETTINGS};
use super::schema::SETTING_KEYS;
use super::*;
use crate::args::Args;

pub(super) fn no_env(_: &str) -> Lookup {
    Lookup::Unset
}

fn parse(text: &str) -> Result<ConfigFile, ConfigErrorKind> {
    ConfigFile::parse(text, no_env)
}

pub(super) fn parsed(text: &str) -> ConfigFile {
    parse(text).expect("parses")
}

fn error(text: &str) -> String {
    parse(text).expect_err("refused").to_string()
}

/// The listener's config of a file with exactly one.
fn single(text: &str) -> ManagerConfig {
    let file = parsed(text);
    let listener = file.listener().expect("usable").expect("one listener");
    listener.config.clone()
}

#[test]
fn a_file_in_the_reference_fixtures_shape_is_read_with_every_entry_accounted_for() {
    // Two listeners (one with RBAC and a middleware), the other workers with their own
    // configs and `${VAR:default}`s, as the reference's SDK test fixture has them.
    let text = "\
workers:
  - name: iii-worker-manager
    config:
      port: 49199
  - name: iii-worker-manager
    config:
      host: 0.0.0.0
      port: 49135
      middleware_function_id: fixture::middleware
      rbac:
        auth_function_id: fixture::auth
        expose_functions:
          - match(\"fixture::public::*\")
          - metadata:
              public: true
  - name: iii-stream
    config:
      port: ${STREAMS_PORT:3112}
      host: 0.0.0.0
      adapter: {name: kv, config: {store_method: file_based, file_path: ./data/s}}
  - name: iii-state
    config:
      adapter: {name: kv}
  - name: iii-http
    config: {host: 0.0.0.0, port: 3199, default_timeout: 30000}
  - name: iii-observability
    config:
      enabled: ${OTEL_ENABLED:true}
      service_version: ${SERVICE_VERSION:__III_ENGINE_VERSION__}
      sampling_ratio: 1.0
  - name: iii-http-functions
    config: {security: {url_allowlist: [localhost], block_private_ips: false}}
  - name: iii-cron
    config: {adapter: {name: kv}}
";
    let file = parsed(text);
    assert_eq!(file.listeners.len(), 2);
    assert_eq!(file.listeners[0].entry, "workers[0]");
    assert_eq!(file.listeners[0].config.port, Some(49199));
    let second = &file.listeners[1].config;
    assert_eq!(second.host.as_deref(), Some("0.0.0.0"));
    assert_eq!(
        second.middleware_function_id.as_deref(),
        Some("fixture::middleware")
    );
    assert!(second.rbac.is_some());
    assert_eq!(
        file.skipped,
        [
            "iii-stream",
            "iii-state",
            "iii-http",
            "iii-observability",
            "iii-http-functions",
            "iii-cron"
        ]
    );
    // The first entry is the main listener; the second an untrusted one.
    let main = file.listener().expect("usable").expect("main");
    assert_eq!(main.entry, "workers[0]");
    let extra = file.extra_listeners().expect("usable");
    assert_eq!(extra.len(), 1);
    assert_eq!(extra[0].addr, "0.0.0.0:49135");
    let policy = &extra[0].policy;
    assert_eq!(policy.name, "workers[1]");
    assert_eq!(
        policy.middleware_function_id.as_deref(),
        Some("fixture::middleware")
    );
    let rbac = policy.rbac.as_ref().expect("untrusted");
    assert_eq!(rbac.auth_function_id.as_deref(), Some("fixture::auth"));
    assert_eq!(rbac.expose_functions.len(), 2);
    assert_eq!(policy.quotas, iii_tokio::engine::WorkerQuotas::untrusted());
}

#[test]
fn entries_split_into_the_main_listener_and_further_ones() {
    // Two trusted entries on their own ports: the first is the main one.
    let two = "workers:\n  - name: iii-worker-manager\n    config: {port: 1}\n  - name: iii-worker-manager#1\n    config: {port: 2, max_functions_per_worker: 7}\n";
    let file = parsed(two);
    assert_eq!(
        file.listener().expect("usable").expect("main").entry,
        "workers[0]"
    );
    let extra = file.extra_listeners().expect("usable");
    assert_eq!(extra[0].addr, "127.0.0.1:2");
    assert!(extra[0].policy.rbac.is_none(), "trusted");
    assert_eq!(extra[0].policy.quotas.functions, 7);

    // The main listener is the first entry without rbac, wherever it is.
    let later = "workers:\n  - name: iii-worker-manager\n    config: {port: 2, rbac: {}}\n  - name: iii-worker-manager\n    config: {port: 1}\n";
    let file = parsed(later);
    assert_eq!(
        file.listener().expect("usable").expect("main").entry,
        "workers[1]"
    );
    assert_eq!(
        file.extra_listeners().expect("usable")[0].policy.name,
        "workers[0]"
    );

    let refused = |text: &str| {
        let file = parsed(text);
        file.listener()
            .and_then(|_| file.extra_listeners())
            .expect_err(text)
            .to_string()
    };
    // One address for two entries.
    let same = "workers:\n  - name: iii-worker-manager\nmodules:\n  - name: iii-worker-manager\n";
    let refusal = refused(same);
    assert!(
        refusal.contains("workers[0] and modules[0] both listen on 127.0.0.1:49134"),
        "{refusal}"
    );
    // No trusted listener at all.
    let refusal = refused("workers:\n  - name: iii-worker-manager\n    config:\n      rbac: {}\n");
    assert!(
        refusal.contains("every iii-worker-manager entry has `rbac`"),
        "{refusal}"
    );
    // What belongs to untrusted listeners, on the main one.
    let refusal = refused(
        "workers:\n  - name: iii-worker-manager\n    config:\n      middleware_function_id: m\n",
    );
    assert!(
        refusal.contains("workers[0].config.middleware_function_id"),
        "{refusal}"
    );
    // An engine-wide setting on a further listener.
    let refusal = refused(
        "workers:\n  - name: iii-worker-manager\n  - name: iii-worker-manager\n    config: {port: 2, rbac: {}, max_channels: 5}\n",
    );
    assert!(
        refusal.contains("workers[1].config.max_channels is an engine-wide setting"),
        "{refusal}"
    );
    // A filter that cannot be read names itself.
    let refusal = refused(
        "workers:\n  - name: iii-worker-manager\n  - name: iii-worker-manager\n    config:\n      port: 2\n      rbac:\n        expose_functions: [\"api::*\"]\n",
    );
    assert!(
        refusal.contains("workers[1].config.rbac.expose_functions[0]: expected match"),
        "{refusal}"
    );
    // An unknown key in rbac names the line.
    let error = error(
        "workers:\n  - name: iii-worker-manager\n  - name: iii-worker-manager\n    config:\n      port: 2\n      rbac:\n        auth_function: a\n",
    );
    assert!(
        error.contains("auth_function") && error.contains("line 7"),
        "{error}"
    );

    // `rbac: null` is no RBAC, as in the reference.
    let null = "workers:\n  - name: iii-worker-manager\n    config:\n      rbac:\n";
    assert!(parsed(null).listener().expect("usable").is_some());
}

#[test]
fn no_listener_means_the_defaults() {
    for text in [
        "",
        "# nothing but a comment\n",
        "workers:\n",
        "workers: []\n",
        "modules: []\nworkers: []\n",
        "workers:\n  - name: iii-stream\n",
    ] {
        let file = parsed(text);
        assert_eq!(file.listener().expect("usable"), None, "{text:?}");
    }
    // An entry without `config`, or with `config: null`: the defaults.
    assert_eq!(
        single("workers:\n  - name: iii-worker-manager\n"),
        ManagerConfig::default()
    );
    assert_eq!(
        single("workers:\n  - name: iii-worker-manager\n    config:\n"),
        ManagerConfig::default()
    );
}

#[test]
fn modules_is_read_like_workers_and_skipped_names_are_listed_once() {
    let file = parsed(
        "workers:\n  - name: iii-stream\n  - name: iii-stream\nmodules:\n  - name: iii-state\n  \
         - name: iii-worker-manager\n    config: {port: 5}\nregistration_namespace_grace_ms: 10\n",
    );
    assert_eq!(file.skipped, ["iii-stream", "iii-state"]);
    assert_eq!(file.listeners[0].entry, "modules[1]");
    assert_eq!(file.listeners[0].config.port, Some(5));
    assert_eq!(file.ignored, ["registration_namespace_grace_ms"]);
}

#[test]
fn unknown_keys_are_tolerated_where_the_reference_tolerates_them_only() {
    // Other workers' entries may carry anything (the reference has `image`).
    let file = parsed("workers:\n  - name: iii-sandbox\n    image: x\n    extra: {a: 1}\n");
    assert_eq!(file.skipped, ["iii-sandbox"]);
    // The top level is closed, as in the reference.
    let message = error("workers: []\nlisteners: 3\n");
    assert!(message.contains("unknown field `listeners`"), "{message}");
    // Inside our entry: the key, the entry and the line.
    let message = error(
        "workers:\n  - name: iii-worker-manager\n    config:\n      port: 1\n      max_conections: 5\n",
    );
    assert!(message.contains("`max_conections`"), "{message}");
    assert!(message.contains("workers[0].config"), "{message}");
    assert!(message.contains("line 5"), "{message}");
    // Beside `name` and `config` in our entry, before or after the name.
    for text in [
        "workers:\n  - name: iii-worker-manager\n    image: x\n",
        "workers:\n  - image: x\n    name: iii-worker-manager\n",
    ] {
        let message = error(text);
        assert!(message.contains("unknown key `image`"), "{text}: {message}");
    }
    // `config` before `name`: still checked.
    let message = error("workers:\n  - config: {bogus: 1}\n    name: iii-worker-manager\n");
    assert!(message.contains("`bogus`"), "{message}");
    let late = single("workers:\n  - config: {port: 7}\n    name: iii-worker-manager#2\n");
    assert_eq!(late.port, Some(7));
}

#[test]
fn values_are_typed_and_errors_name_the_key_and_line() {
    let cases = [
        ("port: 70000", "port"),
        ("port: \"49134\"", "port"),
        ("max_connections: -1", "max_connections"),
        ("max_connections: 1.5", "max_connections"),
        ("write_timeout_secs: 30s", "write_timeout_secs"),
        ("threads: 0", "threads"),
        ("allowed_origins: http://a.example", "allowed_origins"),
        ("token_file: [a, b]", "token_file"),
    ];
    for (line, key) in cases {
        let text = format!("workers:\n  - name: iii-worker-manager\n    config:\n      {line}\n");
        let message = error(&text);
        assert!(
            message.contains(&format!("workers[0].config.{key}")),
            "{line}: {message}"
        );
        assert!(message.contains("line 4"), "{line}: {message}");
    }
    let message = error("workers:\n  - name: iii-worker-manager\n    config: {port: 1, port: 2}\n");
    assert!(message.contains("duplicate field `port`"), "{message}");
    let message = error("workers:\n  - name: iii-stream\n    name: iii-state\n");
    assert!(message.contains("duplicate field `name`"), "{message}");
    let message = error("workers:\n  - config: {}\n");
    assert!(message.contains("missing field `name`"), "{message}");
    let message = error("workers: [\n");
    assert!(message.contains("line"), "{message}");
}

#[test]
fn every_setting_reads_and_nulls_are_left_out() {
    let config = single(
        "workers:\n  - name: iii-worker-manager\n    config:\n      host: '::1'\n      \
         port: 0\n      token_file: /run/t\n      allowed_origins: [http://127.0.0.1:*]\n      \
         max_connections: 12\n      invocation_timeout_ms: null\n      threads: 2\n",
    );
    assert_eq!(config.host.as_deref(), Some("::1"));
    assert_eq!(config.port, Some(0));
    assert_eq!(config.token_file, Some(PathBuf::from("/run/t")));
    assert_eq!(config.threads, NonZeroUsize::new(2));
    assert_eq!(config.invocation_timeout_ms, None);
    assert_eq!(
        config.settings(),
        [
            ("token_file", vec!["/run/t".to_owned()]),
            ("allowed_origins", vec!["http://127.0.0.1:*".to_owned()]),
            ("max_connections", vec!["12".to_owned()]),
            ("threads", vec!["2".to_owned()]),
        ]
    );
}

#[test]
fn the_token_is_one_setting_and_the_redaction_placeholder_is_no_token() {
    let both = "workers:\n  - name: iii-worker-manager\n    config: {token: a, token_file: /t}\n";
    assert!(error(both).contains("give `token` or `token_file`, not both"));
    let placeholder = "workers:\n  - name: iii-worker-manager\n    config: {token: <redacted>}\n";
    assert!(error(placeholder).contains("placeholder"));
}

#[test]
fn substitution_happens_before_parsing_so_numbers_stay_numbers() {
    let text =
        "workers:\n  - name: iii-worker-manager\n    config:\n      port: ${P:49100}\n      \
                max_connections: ${C}\n";
    let env = |name: &str| match name {
        "C" => Lookup::Set("9".to_owned()),
        _ => Lookup::Unset,
    };
    let file = ConfigFile::parse(text, env).expect("parses");
    assert_eq!(file.listeners[0].config.port, Some(49100));
    assert_eq!(file.listeners[0].config.max_connections, Some(9));
    let message = error(text);
    assert!(
        message.contains("`C` is not set") && message.contains("line 5"),
        "{message}"
    );
    // Quoted, it is a string, which a port is not (as in the reference).
    let quoted = "workers:\n  - name: iii-worker-manager\n    config:\n      port: \"${P:1}\"\n";
    assert!(error(quoted).contains("workers[0].config.port"));
}

/// Every flag is a key of our entry, and every key of it a flag (or the reference's).
#[test]
fn the_file_schema_and_the_flags_are_the_same_list() {
    let command = Args::command();
    let flags: Vec<&str> = command
        .get_arguments()
        .map(|arg| arg.get_id().as_str())
        .filter(|id| !NOT_SETTINGS.contains(id))
        .collect();
    assert_eq!(
        flags, SETTING_KEYS,
        "add new flags to config/schema.rs, in order"
    );
}

/// A secret must be marked `hide_env_values`, which is what `--print-config` redacts.
#[test]
fn secrets_are_marked_for_redaction() {
    for arg in Args::command().get_arguments() {
        let id = arg.get_id().as_str();
        let secret = ["token", "secret", "password", "key"]
            .iter()
            .any(|word| id.contains(word))
            && !id.ends_with("_file");
        assert_eq!(arg.is_hide_env_values_set(), secret, "{id}");
    }
}

static FILES: AtomicUsize = AtomicUsize::new(0);

/// A configuration file with `text`, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "iii-engine-config-unit-{}-{}.yaml",
            std::process::id(),
            FILES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("write the file");
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Resolves `iii-engine --config FILE <flags>` with `text` as the file.
pub(super) fn resolve_with(text: &str, flags: &[&str]) -> Result<Resolved, ResolveError> {
    let file = TempFile::new(text);
    let mut argv: Vec<OsString> = vec![
        "iii-engine".into(),
        "--config".into(),
        file.0.clone().into(),
    ];
    argv.extend(flags.iter().map(OsString::from));
    let first = Args::command().try_get_matches_from(&argv)?;
    resolve(&argv, &first, no_env)
}

pub(super) fn resolved(text: &str, flags: &[&str]) -> Args {
    resolve_with(text, flags).expect("resolves").args
}

const LIMITS: &str = "\
workers:
  - name: iii-worker-manager
    config:
      host: 127.0.0.2
      port: 49200
      max_connections: 12
      write_timeout_secs: 7
      allowed_origins: [http://a.example, http://b.example]
      token_file: /run/file-token
";

#[test]
fn the_file_is_under_the_flags_and_over_the_defaults() {
    let args = resolved(LIMITS, &[]);
    assert_eq!(args.addr, "127.0.0.2:49200");
    assert_eq!(args.max_connections, 12);
    assert_eq!(args.write_timeout_secs, 7);
    assert_eq!(
        args.allowed_origins,
        ["http://a.example", "http://b.example"]
    );
    assert_eq!(args.token_file, Some(PathBuf::from("/run/file-token")));
    assert_eq!(args.ping_interval_secs, 20, "not in the file: the default");

    let args = resolved(
        LIMITS,
        &[
            "--max-connections",
            "99",
            "--addr",
            "127.0.0.3:1",
            "--allowed-origin",
            "http://c.example",
        ],
    );
    assert_eq!(args.max_connections, 99);
    assert_eq!(args.addr, "127.0.0.3:1", "--addr replaces host and port");
    assert_eq!(
        args.allowed_origins,
        ["http://c.example"],
        "a list is replaced whole"
    );
    assert_eq!(args.write_timeout_secs, 7);
}

#[test]
fn a_token_given_on_the_command_line_replaces_the_files_either_way() {
    let args = resolved(LIMITS, &["--token", "from-flag"]);
    assert_eq!(args.token.as_deref(), Some("from-flag"));
    assert_eq!(args.token_file, None, "the file's token_file is not used");
    let file_token = "workers:\n  - name: iii-worker-manager\n    config: {token: from-file}\n";
    let args = resolved(file_token, &["--token-file", "/run/flag-token"]);
    assert_eq!(args.token, None, "the file's token is not used");
    assert_eq!(args.token_file, Some(PathBuf::from("/run/flag-token")));
    assert_eq!(
        resolved(file_token, &[]).token.as_deref(),
        Some("from-file")
    );
}

#[test]
fn host_or_port_alone_takes_the_other_half_from_the_default() {
    let port = "workers:\n  - name: iii-worker-manager\n    config: {port: 5000}\n";
    assert_eq!(resolved(port, &[]).addr, "127.0.0.1:5000");
    let host = "workers:\n  - name: iii-worker-manager\n    config: {host: 0.0.0.0}\n";
    assert_eq!(resolved(host, &[]).addr, "0.0.0.0:49134");
    let v6 = "workers:\n  - name: iii-worker-manager\n    config: {host: '::1', port: 7}\n";
    assert_eq!(resolved(v6, &[]).addr, "[::1]:7");
    assert_eq!(resolved("workers: []\n", &[]).addr, "127.0.0.1:49134");
}

#[test]
fn a_file_that_cannot_be_used_is_a_config_error_naming_it() {
    for text in [
        "workers:\n  - name: iii-worker-manager\n  - name: iii-worker-manager\n",
        "workers:\n  - name: iii-worker-manager\n    config: {nope: 1}\n",
    ] {
        match resolve_with(text, &[]) {
            Err(ResolveError::Config(error)) => {
                assert!(
                    error.to_string().contains("iii-engine-config-unit"),
                    "{error}"
                );
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let argv: Vec<OsString> = ["iii-engine", "--config", "/nonexistent/iii.yaml"]
        .iter()
        .map(OsString::from)
        .collect();
    let first = Args::command().try_get_matches_from(&argv).expect("flags");
    let error = resolve(&argv, &first, no_env).expect_err("no file");
    assert!(
        error
            .to_string()
            .contains("/nonexistent/iii.yaml: cannot read it"),
        "{error}"
    );
}

/// `args` without the file's path, which differs between two resolutions.
pub(super) fn without_file(mut args: Args) -> Args {
    args.config = None;
    args
}

#[test]
fn print_config_reads_back_as_the_same_settings_and_hides_the_token() {
    let with_token = LIMITS.replace("token_file: /run/file-token", "token: hunter2-secret");
    let resolved = resolve_with(&with_token, &["--max-channels", "321"]).expect("resolves");
    let text = render(
        &resolved.args,
        &resolved.matches,
        resolved.file.as_ref(),
        &resolved.listeners,
    )
    .expect("renders");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("token: <redacted>"), "{text}");
    assert!(text.contains("max_channels: 321"), "{text}");
    assert!(text.contains("invocation_timeout_ms: null"), "{text}");
    // The printed file, with the token put back, resolves to the same settings.
    let again = resolve_with(&text.replace(REDACTED, "hunter2-secret"), &[]).expect("resolves");
    assert_eq!(without_file(again.args), without_file(resolved.args));
    // Text settings stay text, even all digits; numbers stay numbers.
    let digits = resolve_with(
        "workers: []\n",
        &["--token-file", "0123", "--max-channels", "7"],
    )
    .expect("resolves");
    let text = render(&digits.args, &digits.matches, None, &[]).expect("renders");
    assert!(text.contains("token_file: '0123'"), "{text}");
    assert!(text.contains("max_channels: 7\n"), "{text}");
    let again = resolve_with(&text, &[]).expect("resolves");
    assert_eq!(without_file(again.args), without_file(digits.args));
}

#[test]
fn every_flag_at_its_default_in_the_file_is_the_same_as_no_file() {
    let defaults = Args::command()
        .try_get_matches_from(["iii-engine"])
        .expect("no flags");
    let plain = Args::from_arg_matches(&defaults).expect("defaults");
    let text = render(&plain, &defaults, None, &[]).expect("renders");
    let from_file = resolve_with(&text, &[]).expect("resolves");
    assert_eq!(without_file(from_file.args), plain);
}

#[test]
fn close_wait_and_tls_polling_are_settings_of_the_file_and_the_flags() {
    let defaults = resolved("", &[]).settings(None);
    assert_eq!(defaults.close_wait, std::time::Duration::from_secs(5));
    assert_eq!(
        defaults.tls_poll_interval,
        Some(std::time::Duration::from_secs(10))
    );
    let file = "\
workers:
  - name: iii-worker-manager
    config:
      close_wait_secs: 0
      tls_poll_secs: 0
";
    let settings = resolved(file, &[]).settings(None);
    assert_eq!(settings.close_wait, std::time::Duration::ZERO, "0: no wait");
    assert_eq!(settings.tls_poll_interval, None, "0: no polling");
    settings
        .validate()
        .expect("no wait and no polling can work");
    let settings =
        resolved(file, &["--close-wait-secs", "2", "--tls-poll-secs", "3"]).settings(None);
    assert_eq!(settings.close_wait, std::time::Duration::from_secs(2));
    assert_eq!(
        settings.tls_poll_interval,
        Some(std::time::Duration::from_secs(3))
    );
    // A wait beyond a year is refused, not an overflow of the engine task's clock.
    let settings = resolved("", &["--close-wait-secs", "18446744073709551615"]).settings(None);
    let refused = settings.validate().expect_err("refused").to_string();
    assert!(refused.contains("close_wait"), "{refused}");
}

#[test]
fn a_near_miss_of_our_worker_name_is_an_error_naming_the_key() {
    for typo in [
        "iii-worker-manger",
        "iii-worker-manager2",
        "iii_worker_manager",
        "III-Worker-Manager",
        "iii-worker-manger#2",
    ] {
        let text = format!("workers:\n  - name: {typo}\n    config:\n      port: 1\n");
        let message = error(&text);
        assert!(
            message.contains("did you mean `iii-worker-manager`") && message.contains(typo),
            "{typo}: {message}"
        );
        assert!(message.contains("workers[0]"), "{message}");
    }
    // The reference's other workers are still skipped.
    let file = parsed("workers:\n  - name: iii-stream\n  - name: iii-http\n  - name: iii-cron\n");
    assert_eq!(file.skipped, ["iii-stream", "iii-http", "iii-cron"]);
}
