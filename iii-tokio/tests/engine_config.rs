//! `iii-engine --config FILE` as an operator meets it: a file in the reference iii
//! engine's format starts the engine with its listener and limits, flags and
//! `III_ENGINE_*` variables win over it, iii workers we do not implement are skipped and
//! logged, mistakes exit 2 naming the key, `${VAR:default}` works both ways, and
//! `--print-config` shows the effective settings without the token.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_tungstenite::tokio::connect_async;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::handshake::client::Request;
use async_tungstenite::tungstenite::Error as WsError;
use common::{run, run_to_exit, Engine};

/// A scratch directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "iii-engine-config-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    /// Writes `name` with `text` and returns its path as a string.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("utf-8 path").to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn request(url: &str, token: Option<&str>, origin: Option<&str>, pad: usize) -> Request {
    let mut request = url.into_client_request().expect("request");
    let headers = request.headers_mut();
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("header");
        headers.insert("Authorization", value);
    }
    if let Some(origin) = origin {
        headers.insert("Origin", origin.parse().expect("header"));
    }
    if pad > 0 {
        headers.insert("X-Pad", "p".repeat(pad).parse().expect("header"));
    }
    request
}

/// The HTTP status of an upgrade attempt (101 when it is accepted).
async fn status(request: Request) -> u16 {
    match tokio::time::timeout(Duration::from_secs(10), connect_async(request))
        .await
        .expect("answered in time")
    {
        Ok(_) => 101,
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP answer, got {other:?}"),
    }
}

#[tokio::test]
async fn the_files_listener_and_limits_take_effect() {
    let scratch = Scratch::new();
    let token_file = scratch.file("token", "tok-from-file-41d3\n");
    let port = free_port();
    let config = scratch.file(
        "iii-config.yaml",
        &format!(
            "workers:\n  - name: iii-worker-manager\n    config:\n      host: 127.0.0.1\n      \
             port: {port}\n      token_file: {token_file}\n      max_request_head_bytes: 1024\n      \
             allowed_origins:\n        - http://good.example\n"
        ),
    );
    let engine = Engine::start_unaddressed(&["--config", &config], &[]);
    assert_eq!(engine.url, format!("ws://127.0.0.1:{port}"));
    let url = engine.url.clone();
    assert_eq!(status(request(&url, None, None, 0)).await, 401);
    assert_eq!(status(request(&url, Some("wrong"), None, 0)).await, 401);
    assert_eq!(
        status(request(&url, Some("tok-from-file-41d3"), None, 0)).await,
        101
    );
    let good = Some("http://good.example");
    let evil = Some("http://evil.example");
    assert_eq!(
        status(request(&url, Some("tok-from-file-41d3"), good, 0)).await,
        101
    );
    assert_eq!(
        status(request(&url, Some("tok-from-file-41d3"), evil, 0)).await,
        403
    );
    assert_eq!(status(request(&url, None, None, 2000)).await, 431);
    let (exit, log) = engine.stop();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(log.contains("configuration file read"), "{log}");
    assert!(log.contains("bearer token required"), "{log}");
    assert!(
        !log.contains("tok-from-file-41d3"),
        "the token reached the log"
    );
}

#[tokio::test]
async fn the_environment_and_flags_win_over_the_file() {
    let scratch = Scratch::new();
    let token_file = scratch.file("token", "file-token");
    let config = scratch.file(
        "iii-config.yaml",
        &format!(
            "workers:\n  - name: iii-worker-manager\n    config:\n      port: 1\n      \
             token_file: {token_file}\n      max_request_head_bytes: 1024\n"
        ),
    );
    // III_ENGINE_TOKEN replaces the file's token file; the flags replace the port and
    // the head limit.
    let engine = Engine::start_unaddressed(
        &[
            "--config",
            &config,
            "--addr",
            "127.0.0.1:0",
            "--max-request-head-bytes",
            "65536",
        ],
        &[("III_ENGINE_TOKEN", "env-token")],
    );
    let url = engine.url.clone();
    assert_ne!(engine.addr(), "127.0.0.1:1");
    assert_eq!(
        status(request(&url, Some("file-token"), None, 0)).await,
        401
    );
    assert_eq!(status(request(&url, Some("env-token"), None, 0)).await, 101);
    assert_eq!(
        status(request(&url, Some("env-token"), None, 2000)).await,
        101
    );
}

#[test]
fn print_config_shows_flag_over_environment_over_file_over_default() {
    let scratch = Scratch::new();
    let config = scratch.file(
        "iii-config.yaml",
        "workers:\n  - name: iii-worker-manager\n    config:\n      host: 127.0.0.9\n      \
         port: 4001\n      max_connections: 11\n      max_channels: 12\n      send_credit: 13\n      \
         token: file-secret-5c1e\n  - name: iii-state\n",
    );
    let (status, stdout, stderr) = run(
        &[
            "--config",
            &config,
            "--print-config",
            "--max-connections",
            "31",
        ],
        &[
            ("III_ENGINE_MAX_CONNECTIONS", "21"),
            ("III_ENGINE_MAX_CHANNELS", "22"),
        ],
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    for line in [
        "- name: iii-worker-manager",
        "    host: 127.0.0.9",
        "    port: 4001",
        "    max_connections: 31",
        "    max_channels: 22",
        "    send_credit: 13",
        "    ping_interval_secs: 20",
        "    token: <redacted>",
        "    allowed_origins: []",
        "    invocation_timeout_ms: null",
        "# skipped (not part of iii-engine): iii-state",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("file-secret") && !stderr.contains("file-secret"));
    // The output is itself a configuration file giving the same settings.
    let printed = scratch.file(
        "printed.yaml",
        &stdout.replace("<redacted>", "file-secret-5c1e"),
    );
    let (status, again, stderr) = run(&["--config", &printed, "--print-config"], &[]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(settings(&again), settings(&stdout));
    // Settings that cannot work are reported instead, with status 2.
    let (status, stdout, stderr) = run(
        &[
            "--config",
            &config,
            "--print-config",
            "--ping-interval-secs",
            "90",
        ],
        &[],
    );
    assert_eq!(status.code(), Some(2));
    assert!(
        stdout.is_empty() && stderr.contains("idle_timeout"),
        "{stderr}"
    );
}

#[test]
fn iii_workers_we_do_not_implement_are_skipped_and_logged() {
    let scratch = Scratch::new();
    // The shape of the reference's shipped config.yaml: a top-level setting, no
    // worker-manager entry, and workers of its own.
    let config = scratch.file(
        "config.yaml",
        "registration_namespace_grace_ms: 4000\n\
         workers:\n\
         \x20 - name: iii-stream\n\
         \x20   config:\n\
         \x20     port: ${CFG_TEST_STREAM_PORT:3112}\n\
         \x20     host: 127.0.0.1\n\
         \x20     adapter:\n\
         \x20       name: redis\n\
         \x20       config: {redis_url: 'redis://localhost:6379'}\n\
         \x20 - name: iii-state\n\
         \x20   config:\n\
         \x20     adapter: {name: kv, config: {store_method: file_based, file_path: ./data/s.db}}\n\
         \x20 - name: iii-observability\n\
         \x20   config:\n\
         \x20     enabled: ${CFG_TEST_OTEL:true}\n\
         \x20     service_version: ${CFG_TEST_VERSION:__III_ENGINE_VERSION__}\n\
         \x20     sampling_ratio: 1.0\n\
         \x20 - name: iii-pubsub\n\
         \x20   config: {adapter: {name: local}}\n\
         \x20 - name: iii-http\n\
         \x20   config:\n\
         \x20     port: 3111\n\
         \x20     cors: {allowed_origins: ['*'], allowed_methods: [GET, POST]}\n",
    );
    // No listener entry: the defaults, with the address from the flag.
    let engine = Engine::start_unaddressed(&["--config", &config, "--addr", "127.0.0.1:0"], &[]);
    let (status, log) = engine.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("not supported by iii-engine are skipped"))
        .unwrap_or_else(|| panic!("no skip line in:\n{log}"));
    assert!(
        line.contains("iii-stream, iii-state, iii-observability, iii-pubsub, iii-http"),
        "{line}"
    );
    assert!(line.contains("registration_namespace_grace_ms"), "{line}");
    assert!(log.contains("none: defaults"), "{log}");
}

#[test]
fn listener_entries_that_cannot_work_together_exit_2_naming_them() {
    // (The reference SDK fixture's shape, two listeners with RBAC and a middleware on
    // the second, starts: see tests/engine_rbac.rs.)
    let scratch = Scratch::new();
    let cases: [(&str, &str); 3] = [
        (
            "workers:\n  - name: iii-worker-manager\n  - name: iii-worker-manager\n",
            "workers[0] and workers[1] both listen on 127.0.0.1:49134",
        ),
        (
            "workers:\n  - name: iii-worker-manager\n    config:\n      rbac: {}\n",
            "every iii-worker-manager entry has `rbac`",
        ),
        (
            "workers:\n  - name: iii-worker-manager\n  - name: iii-worker-manager\n    config:\n      port: 49135\n      rbac: {}\n      send_credit: 4\n",
            "workers[1].config.send_credit is an engine-wide setting",
        ),
    ];
    for (index, (text, expected)) in cases.iter().enumerate() {
        let config = scratch.file(&format!("case{index}.yaml"), text);
        let (status, log) = run_to_exit(&["--config", &config], &[]);
        assert_eq!(status.code(), Some(2), "{text}\n{log}");
        assert!(log.contains(expected), "{expected} in:\n{log}");
    }
}

#[test]
fn mistakes_exit_2_naming_the_key_or_variable_and_the_line() {
    let scratch = Scratch::new();
    let cases: [(&str, &[&str]); 5] = [
        (
            "workers:\n  - name: iii-worker-manager\n    config:\n      max_conections: 5\n",
            &["`max_conections`", "line 4"],
        ),
        (
            "workers:\n  - name: iii-worker-manager\n    config:\n      port: ${CFG_TEST_UNSET_VAR}\n",
            &["`CFG_TEST_UNSET_VAR` is not set", "line 4"],
        ),
        (
            "workers:\n  - name: iii-worker-manager\n    config:\n      idle_timeout_secs: 1m\n",
            &["workers[0].config.idle_timeout_secs", "line 4"],
        ),
        ("listeners:\n  - port: 1\n", &["unknown field `listeners`"]),
        (
            "workers:\n  - name: iii-worker-manager\n    port: 49134\n",
            &["unknown key `port`", "inside `config`"],
        ),
    ];
    for (index, (text, expected)) in cases.iter().enumerate() {
        let config = scratch.file(&format!("bad-{index}.yaml"), text);
        let (status, log) = run_to_exit(&["--config", &config], &[]);
        assert_eq!(status.code(), Some(2), "{text}: {log}");
        for needle in *expected {
            assert!(log.contains(needle), "{text}: no {needle:?} in {log}");
        }
        assert!(log.contains(&config), "the file is named: {log}");
    }
    let (status, log) = run_to_exit(&["--config", "/nonexistent/iii-config.yaml"], &[]);
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("cannot read it"), "{log}");
}

#[test]
fn substitution_takes_the_variable_or_else_the_default() {
    let scratch = Scratch::new();
    let default_port = free_port();
    let env_port = loop {
        match free_port() {
            port if port != default_port => break port,
            _ => continue,
        }
    };
    let config = scratch.file(
        "iii-config.yaml",
        &format!(
            "# listener at ${{CFG_TEST_PORT:{default_port}}}\nworkers:\n  - name: iii-worker-manager\n    \
             config:\n      host: ${{CFG_TEST_HOST:127.0.0.1}}\n      port: ${{CFG_TEST_PORT:{default_port}}}\n"
        ),
    );
    let engine = Engine::start_unaddressed(&["--config", &config], &[]);
    assert_eq!(engine.url, format!("ws://127.0.0.1:{default_port}"));
    drop(engine);
    let port = env_port.to_string();
    let engine = Engine::start_unaddressed(
        &["--config", &config],
        &[("CFG_TEST_PORT", &port), ("CFG_TEST_HOST", "127.0.0.1")],
    );
    assert_eq!(engine.url, format!("ws://127.0.0.1:{env_port}"));
}

#[test]
fn the_readme_example_is_a_working_configuration() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## Configuration file").expect("the section")..];
    let start = section.find("```yaml\n").expect("the example") + "```yaml\n".len();
    let example = &section[start..start + section[start..].find("```").expect("its end")];
    let scratch = Scratch::new();
    let config = scratch.file("iii-config.yaml", example);
    // As written: no variable, no other file.
    let (status, stdout, stderr) = run(&["--config", &config, "--print-config"], &[]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("port: 49134"), "{stdout}");
    assert!(stdout.contains("max_channels_per_worker: 200"), "{stdout}");
    assert!(stdout.contains("- https://app.example.com"), "{stdout}");
    assert!(
        stdout.contains("# skipped (not part of iii-engine): iii-stream"),
        "{stdout}"
    );
    // And it serves: on the port its `${III_PORT:49134}` takes (any free one here).
    let engine = Engine::start_unaddressed(&["--config", &config], &[("III_PORT", "0")]);
    assert!(engine.url.starts_with("ws://127.0.0.1:"), "{}", engine.url);
    let (status, log) = engine.stop();
    assert_eq!(status.code(), Some(0), "{log}");
}

#[test]
fn help_names_the_configuration_flags() {
    let (status, stdout, _) = run(&["--help"], &[]);
    assert_eq!(status.code(), Some(0));
    for flag in ["--config <FILE>", "--print-config", "III_ENGINE_CONFIG"] {
        assert!(stdout.contains(flag), "--help lacks {flag}:\n{stdout}");
    }
}
