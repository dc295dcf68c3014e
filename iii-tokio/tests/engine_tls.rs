//! `iii-engine` serving `wss://` as an operator sets it up: certificate and key files in
//! the configuration file for the main listener and an RBAC listener, our SDK trusting
//! the test CA; SIGHUP reloading the certificates (and keeping the old one when the new
//! files cannot be used); the `--tls-*` flags, their environment variables,
//! `--print-config`, and the errors for a half pair or a file that cannot be read.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::pki::{Ca, Dir};
use common::{run, Engine};
use iii_tokio::worker::{connect, ChannelReader, Error, Iii, WorkerOptions};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn options(url: &str, name: &str, ca: &[u8]) -> WorkerOptions {
    WorkerOptions {
        url: Some(url.to_owned()),
        name: Some(name.to_owned()),
        tls_root_certificates: vec![ca.to_vec()],
        ..WorkerOptions::default()
    }
}

/// Connects a worker trusting `ca` only; `Err` with why it could not (it gives up after
/// `patience`).
async fn try_worker(url: &str, name: &str, ca: &[u8], patience: Duration) -> Result<Iii, String> {
    let mut options = options(url, name, ca);
    options.core.connect_timeout = patience;
    let iii = connect(options).expect("valid options");
    match iii.wait_connected(WAIT).await {
        Ok(()) => Ok(iii),
        Err(error) => {
            iii.shutdown().await;
            Err(error.to_string())
        }
    }
}

async fn worker(url: &str, name: &str, ca: &[u8]) -> Iii {
    try_worker(url, name, ca, WAIT)
        .await
        .expect("connected over wss")
}

/// A worker trusting `ca` connects within `WAIT` (a reload is asynchronous to the
/// signal that asks for it).
async fn eventually_worker(url: &str, name: &str, ca: &[u8]) -> Iii {
    let deadline = Instant::now() + WAIT;
    loop {
        match try_worker(url, name, ca, Duration::from_millis(300)).await {
            Ok(iii) => return iii,
            Err(error) if Instant::now() > deadline => panic!("never connected: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn signal(engine: &Engine, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &engine.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// `api::count` on the main listener's backend: the length of the channel it is given.
async fn backend(url: &str, ca: &[u8]) -> Iii {
    let iii = worker(url, "tls-backend", ca).await;
    let me = iii.clone();
    iii.register_function("api::count", move |input: Value| {
        let iii = me.clone();
        async move {
            let reader_ref = serde_json::from_value(input["reader"].clone())?;
            let bytes = ChannelReader::new(&iii, &reader_ref).read_all().await?;
            Ok::<_, Error>(json!(bytes.len()))
        }
    })
    .expect("register");
    iii.wait_registered(WAIT).await.expect("registered");
    iii
}

/// `caller` streams `size` bytes to `api::count` through a channel it creates.
async fn count(caller: &Iii, size: usize) {
    let channel = caller.create_channel(None).await.expect("channel");
    let counting = caller.trigger("api::count", json!({"reader": channel.reader_ref}));
    let writing = async {
        channel.writer.write(&vec![5u8; size]).await?;
        channel.writer.close().await
    };
    let (counted, written) = futures_util::join!(counting, writing);
    written.expect("written");
    assert_eq!(counted.expect("counted"), json!(size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_serves_wss_on_every_listener_and_sighup_reloads() {
    let (first, second) = (Ca::new("first CA"), Ca::new("second CA"));
    let (first_der, second_der) = (first.der(), second.der());
    let dir = Dir::new();
    dir.issue(&first, "main");
    dir.issue(&first, "rbac");
    let rbac_port = free_port();
    dir.write(
        "config.yaml",
        &format!(
            "workers:\n\
             \x20 - name: iii-worker-manager\n\
             \x20   config:\n\
             \x20     port: 0\n\
             \x20     tls_cert_file: {main_cert}\n\
             \x20     tls_key_file: {main_key}\n\
             \x20 - name: iii-worker-manager\n\
             \x20   config:\n\
             \x20     port: {rbac_port}\n\
             \x20     rbac: {{expose_functions: [match(\"api::*\")]}}\n\
             \x20     tls_cert_file: {rbac_cert}\n\
             \x20     tls_key_file: {rbac_key}\n",
            main_cert = dir.path("main.pem"),
            main_key = dir.path("main.key"),
            rbac_cert = dir.path("rbac.pem"),
            rbac_key = dir.path("rbac.key"),
        ),
    );
    let engine = Engine::start_unaddressed(&["--config", &dir.path("config.yaml")], &[]);
    assert!(engine.url.starts_with("wss://127.0.0.1:"), "{}", engine.url);
    let rbac_url = format!("wss://127.0.0.1:{rbac_port}");
    let backend = backend(&engine.url, &first_der).await;
    let guest = worker(&rbac_url, "tls-guest", &first_der).await;
    count(&guest, 200_000).await;

    // New certificates from another CA, then SIGHUP: new connections get them.
    dir.issue(&second, "main");
    dir.issue(&second, "rbac");
    signal(&engine, "HUP");
    let renewed = eventually_worker(&engine.url, "tls-renewed", &second_der).await;
    let renewed_guest = eventually_worker(&rbac_url, "tls-renewed-guest", &second_der).await;
    let stale = try_worker(
        &rbac_url,
        "tls-stale",
        &first_der,
        Duration::from_millis(500),
    )
    .await;
    assert!(stale.expect_err("the old CA").contains("TLS"));
    // Connections from before the reload keep working.
    count(&guest, 1000).await;
    count(&renewed_guest, 1000).await;
    count(&renewed, 1000).await;

    // A key that cannot be used: logged, the certificate in use stays.
    dir.write("main.key", "not a key\n");
    signal(&engine, "HUP");
    let deadline = Instant::now() + WAIT;
    while !engine
        .log_text()
        .contains("a TLS certificate was not reloaded")
    {
        assert!(Instant::now() < deadline, "{}", engine.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = worker(&engine.url, "tls-after", &second_der).await;
    count(&after, 1000).await;

    for iii in [&after, &renewed, &renewed_guest, &guest, &backend] {
        iii.shutdown().await;
    }
    let (status, log) = engine.stop();
    assert!(status.success(), "{log}");
    for line in [
        "SIGHUP: TLS certificates reloaded",
        &rbac_url,
        "main.key: no private key",
    ] {
        assert!(log.contains(line), "{line} in:\n{log}");
    }
}

#[test]
fn tls_flags_print_and_refuse_half_pairs_and_unreadable_files() {
    let ca = Ca::new("iii test CA");
    let dir = Dir::new();
    dir.issue(&ca, "main");
    let (cert, key) = (dir.path("main.pem"), dir.path("main.key"));
    // Flags and the environment, written back by --print-config.
    let (status, stdout, stderr) = run(
        &[
            "--print-config",
            "--tls-key-file",
            &key,
            "--rbac-addr",
            "127.0.0.1:49135",
            "--rbac-tls-cert-file",
            "/etc/iii/rbac.pem",
            "--rbac-tls-key-file",
            "/etc/iii/rbac.key",
        ],
        &[("III_ENGINE_TLS_CERT_FILE", &cert)],
    );
    assert!(status.success(), "{stderr}");
    for line in [
        format!("tls_cert_file: {cert}"),
        format!("tls_key_file: {key}"),
        "tls_cert_file: /etc/iii/rbac.pem".to_owned(),
        "tls_key_file: /etc/iii/rbac.key".to_owned(),
    ] {
        assert!(stdout.contains(&line), "{line} in:\n{stdout}");
    }
    // Half a pair.
    let (status, _, stderr) = run(&["--addr", "127.0.0.1:0", "--tls-cert-file", &cert], &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--tls-cert-file and --tls-key-file"),
        "{stderr}"
    );
    // A file that cannot be read: status 2, the file named.
    let missing = dir.path("missing.pem");
    let (status, _, stderr) = run(
        &[
            "--addr",
            "127.0.0.1:0",
            "--tls-cert-file",
            &missing,
            "--tls-key-file",
            &key,
        ],
        &[],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
    // The flags alone serve wss://.
    let engine = Engine::start_logged(&["--tls-cert-file", &cert, "--tls-key-file", &key], &[]);
    assert!(engine.url.starts_with("wss://"), "{}", engine.url);
}

#[test]
fn the_readme_tls_example_is_a_working_configuration() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## TLS (`wss://`)").expect("the section")..];
    let start = section.find("```yaml\n").expect("the example") + "```yaml\n".len();
    let example = &section[start..start + section[start..].find("```").expect("its end")];
    let dir = Dir::new();
    dir.write("iii-config.yaml", example);
    // --print-config checks the settings without reading the certificates.
    let (status, stdout, stderr) = run(
        &["--config", &dir.path("iii-config.yaml"), "--print-config"],
        &[],
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    for path in ["engine.pem", "engine.key", "public.pem", "public.key"] {
        assert!(stdout.contains(&format!("/etc/iii/tls/{path}")), "{stdout}");
    }
}
