//! `wss://` served by the engine itself: a main listener and an RBAC listener with
//! certificates from a test CA, our SDK calling functions and streaming channels over
//! them on tokio and on smol, clients that cannot speak TLS or never finish the
//! handshake, certificate reloads (asked for and from watching the files) and files
//! that cannot be used, at start and on a reload.

mod tls;

use std::time::{Duration, Instant};

use iii_core::engine::{FunctionFilter, ListenerPolicy, Pattern, Rbac};
use iii_driver::engine::{EngineSettings, ListenerSettings, StartError, TlsError};
use iii_driver::server::EngineServer;
use iii_driver::worker::{ChannelReader, Error, Iii, WorkerOptions};
use iii_driver::Runtime;
use iii_tests::adapter::{Flavor, SmolFlavor, TokioFlavor, WAIT};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tls::{Ca, Files};

/// Settings with `main` on the main listener and, with `rbac`, an untrusted listener
/// (exposing `api::*`) serving `rbac`. No file polling unless a test turns it on.
fn settings(main: &Files, rbac: Option<&Files>) -> EngineSettings {
    let mut settings = EngineSettings {
        tls: Some(main.settings()),
        tls_poll_interval: None,
        ..EngineSettings::default()
    };
    if let Some(files) = rbac {
        let policy = ListenerPolicy::untrusted(
            "rbac",
            Rbac {
                expose_functions: vec![FunctionFilter::Id(Pattern::new("api::*"))],
                ..Rbac::default()
            },
        );
        settings
            .listeners
            .push(ListenerSettings::new("127.0.0.1:0", policy).with_tls(files.settings()));
    }
    settings
}

fn options(url: &str, name: &str, ca: &[u8]) -> WorkerOptions {
    WorkerOptions {
        url: Some(url.to_owned()),
        name: Some(name.to_owned()),
        tls_root_certificates: vec![ca.to_vec()],
        ..WorkerOptions::default()
    }
}

/// A worker trusting `ca` only, connected to `url`.
async fn worker<R: Runtime>(rt: R, url: &str, name: &str, ca: &[u8]) -> Iii<R> {
    let iii = Iii::connect(rt, options(url, name, ca)).expect("valid options");
    iii.wait_connected(WAIT).await.expect("connected over wss");
    iii
}

/// Why a worker with `options` cannot connect (it gives up after half a second).
async fn refused<R: Runtime>(rt: R, mut options: WorkerOptions) -> String {
    options.core.connect_timeout = Duration::from_millis(500);
    let iii = Iii::connect(rt, options).expect("valid options");
    let outcome = iii.wait_connected(WAIT).await;
    iii.shutdown().await;
    match outcome {
        Err(Error::Unreachable { detail, .. }) => detail,
        other => panic!("expected the engine to be unreachable: {other:?}"),
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

/// Registers `api::sha` on `owner`: reads the channel in `input.reader`, answers its
/// length and SHA-256.
async fn register_sha<R: Runtime>(owner: &Iii<R>) {
    let me = owner.clone();
    owner
        .register_function("api::sha", move |input: Value| {
            let iii = me.clone();
            async move {
                let reader_ref = serde_json::from_value(input["reader"].clone())?;
                let bytes = ChannelReader::new(&iii, &reader_ref).read_all().await?;
                Ok::<_, Error>(json!({"len": bytes.len(), "sha": hex(&Sha256::digest(&bytes))}))
            }
        })
        .expect("register");
    owner.wait_registered(WAIT).await.expect("registered");
}

/// `caller` opens a channel, hands its reader to `api::sha` and writes `size` bytes: the
/// callee's hash is the writer's.
async fn stream_through_sha<R: Runtime>(caller: &Iii<R>, size: usize) {
    let data = payload(size);
    let channel = caller.create_channel(None).await.expect("channel");
    let counting = caller.trigger("api::sha", json!({"reader": channel.reader_ref}));
    let writing = async {
        for chunk in data.chunks(70_001) {
            channel.writer.write(chunk).await?;
        }
        channel.writer.close().await
    };
    let (counted, written) = futures_util::join!(counting, writing);
    written.expect("written over wss");
    assert_eq!(
        counted.expect("hashed over wss"),
        json!({"len": size, "sha": hex(&Sha256::digest(&data))})
    );
}

/// `iii` writes a channel and reads it back itself: both ends dial its listener.
async fn stream_to_itself<R: Runtime>(iii: &Iii<R>, size: usize) {
    let data = payload(size);
    let mut channel = iii.create_channel(None).await.expect("channel");
    let reading = channel.reader.read_all();
    let writing = async {
        channel.writer.write(&data).await?;
        channel.writer.close().await
    };
    let (read, written) = futures_util::join!(reading, writing);
    written.expect("written");
    assert_eq!(
        hex(&Sha256::digest(read.expect("read"))),
        hex(&Sha256::digest(&data))
    );
}

fn calls_and_channels_over_wss<F: Flavor>() {
    let ca = Ca::new("iii test CA");
    let (main, rbac) = (Files::new(&ca.issue()), Files::new(&ca.issue()));
    let ca = ca.der();
    F::block_on(async {
        let engine = EngineServer::bind(F::rt(), "127.0.0.1:0", settings(&main, Some(&rbac)))
            .await
            .expect("engine");
        let main_url = engine.url();
        let rbac_url = engine.listener_url(1).expect("the rbac listener");
        for url in [&main_url, &rbac_url] {
            assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
        }
        let owner = worker(F::rt(), &main_url, "tls-owner", &ca).await;
        register_sha(&owner).await;
        // Both channel ends on the main listener.
        let caller = worker(F::rt(), &main_url, "tls-caller", &ca).await;
        stream_through_sha(&caller, (1 << 20) + 7).await;
        // An untrusted worker: its writer dials the RBAC listener, the owner's reader
        // the main one, both over TLS.
        let untrusted = worker(F::rt(), &rbac_url, "tls-untrusted", &ca).await;
        stream_through_sha(&untrusted, 300_000).await;
        // Both ends on the RBAC listener.
        stream_to_itself(&untrusted, 500_000).await;
        for iii in [&caller, &untrusted, &owner] {
            iii.shutdown().await;
        }
        engine.shutdown().await;
    });
}

#[test]
fn calls_and_channels_over_wss_on_tokio() {
    calls_and_channels_over_wss::<TokioFlavor>();
}

#[test]
fn calls_and_channels_over_wss_on_smol() {
    calls_and_channels_over_wss::<SmolFlavor>();
}

fn reload<F: Flavor>() {
    let (first, second) = (Ca::new("first CA"), Ca::new("second CA"));
    let files = Files::new(&first.issue());
    let (first_der, second_der) = (first.der(), second.der());
    F::block_on(async {
        let engine = EngineServer::bind(F::rt(), "127.0.0.1:0", settings(&files, None))
            .await
            .expect("engine");
        let url = engine.url();
        let old = worker(F::rt(), &url, "tls-old", &first_der).await;
        register_sha(&old).await;

        files.install(&second.issue());
        assert_eq!(engine.reload_tls().expect("reloaded"), 1);
        let new = worker(F::rt(), &url, "tls-new", &second_der).await;
        let detail = refused(F::rt(), options(&url, "tls-stale", &first_der)).await;
        assert!(detail.contains("TLS"), "{detail}");
        // The connection opened before the reload keeps working, both ways.
        stream_through_sha(&new, 100_000).await;
        stream_through_sha(&old, 100_000).await;

        // Files that cannot be used: a typed error naming the file, the second
        // certificate stays.
        files.write(&files.key(), "not a key\n");
        match engine.reload_tls() {
            Err(TlsError::NoKey { path }) => assert_eq!(path, files.key()),
            other => panic!("expected NoKey: {other:?}"),
        }
        let mismatched = first.issue();
        files.write(&files.key(), &mismatched.key_pem);
        let error = engine
            .reload_tls()
            .expect_err("a key of another certificate");
        assert!(matches!(error, TlsError::Unusable { .. }), "{error:?}");
        assert!(error.to_string().contains("key.pem"), "{error}");
        let after = worker(F::rt(), &url, "tls-after", &second_der).await;
        stream_through_sha(&after, 10_000).await;
        for iii in [&after, &new, &old] {
            iii.shutdown().await;
        }
        engine.shutdown().await;
    });
}

#[test]
fn reload_swaps_the_certificate_for_new_connections_only_on_tokio() {
    reload::<TokioFlavor>();
}

#[test]
fn reload_swaps_the_certificate_for_new_connections_only_on_smol() {
    reload::<SmolFlavor>();
}

fn plain_clients_fail_cleanly<F: Flavor>() {
    let ca = Ca::new("iii test CA");
    let files = Files::new(&ca.issue());
    let ca = ca.der();
    F::block_on(async {
        let engine = EngineServer::bind(F::rt(), "127.0.0.1:0", settings(&files, None))
            .await
            .expect("engine");
        let plain = engine.url().replacen("wss://", "ws://", 1);
        let detail = refused(F::rt(), options(&plain, "tls-plain", &ca)).await;
        assert!(!detail.is_empty());
        // The engine keeps serving wss://.
        let owner = worker(F::rt(), &engine.url(), "tls-owner", &ca).await;
        register_sha(&owner).await;
        stream_through_sha(&owner, 1000).await;
        owner.shutdown().await;
        engine.shutdown().await;
    });
}

#[test]
fn plain_clients_fail_cleanly_on_tokio() {
    plain_clients_fail_cleanly::<TokioFlavor>();
}

#[test]
fn plain_clients_fail_cleanly_on_smol() {
    plain_clients_fail_cleanly::<SmolFlavor>();
}

#[test]
fn changed_files_are_picked_up_by_polling() {
    let (first, second) = (Ca::new("first CA"), Ca::new("second CA"));
    let files = Files::new(&first.issue());
    let second_der = second.der();
    TokioFlavor::block_on(async {
        let mut settings = settings(&files, None);
        settings.tls_poll_interval = Some(Duration::from_millis(100));
        let engine = EngineServer::bind(iii_tokio::Tokio, "127.0.0.1:0", settings)
            .await
            .expect("engine");
        files.install(&second.issue());
        let started = Instant::now();
        loop {
            let mut options = options(&engine.url(), "tls-polled", &second_der);
            options.core.connect_timeout = Duration::from_millis(300);
            let iii = Iii::connect(iii_tokio::Tokio, options).expect("valid options");
            let outcome = iii.wait_connected(WAIT).await;
            iii.shutdown().await;
            match outcome {
                Ok(()) => break,
                Err(_) if started.elapsed() < WAIT => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("the new certificate was never served: {error}"),
            }
        }
        engine.shutdown().await;
    });
}

#[test]
fn files_that_cannot_be_used_stop_the_start_with_an_error_naming_them() {
    let ca = Ca::new("iii test CA");
    let files = Files::new(&ca.issue());
    let other = Files::new(&ca.issue());
    let start_error = |settings: EngineSettings| -> TlsError {
        TokioFlavor::block_on(async {
            let error = EngineServer::bind(iii_tokio::Tokio, "127.0.0.1:0", settings)
                .await
                .expect_err("refused");
            assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
            match error
                .into_inner()
                .map(|inner| inner.downcast::<StartError>())
            {
                Some(Ok(start)) => match *start {
                    StartError::Tls(tls) => tls,
                    other => panic!("not a TLS error: {other}"),
                },
                other => panic!("not a StartError: {other:?}"),
            }
        })
    };
    let mut missing = settings(&files, None);
    let nowhere = files.cert().with_file_name("missing.pem");
    missing.tls = Some(iii_driver::engine::TlsSettings::new(&nowhere, files.key()));
    match start_error(missing) {
        TlsError::Read { path, .. } => assert_eq!(path, nowhere),
        other => panic!("{other:?}"),
    }
    files.write(
        &files.cert(),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    match start_error(settings(&files, None)) {
        TlsError::NoCertificate { path } => assert_eq!(path, files.cert()),
        other => panic!("{other:?}"),
    }
    files.install(&ca.issue());
    files.write(
        &files.key(),
        &std::fs::read_to_string(other.key()).expect("a key"),
    );
    let error = start_error(settings(&files, None));
    assert!(matches!(error, TlsError::Unusable { .. }), "{error:?}");
    // A broken file on the RBAC listener names that listener's file.
    files.install(&ca.issue());
    other.write(
        &other.cert(),
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    );
    match start_error(settings(&files, Some(&other))) {
        TlsError::Pem { path, .. } => assert_eq!(path, other.cert()),
        other => panic!("{other:?}"),
    }
}

/// `GET path` over TLS trusting `ca`: the status line and body.
async fn https_get(addr: std::net::SocketAddr, path: &str, ca: &[u8]) -> (String, String) {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{self, pki_types::ServerName, RootCertStore};
    let mut roots = RootCertStore::empty();
    roots.add(ca.to_vec().into()).expect("the CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("a name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("request");
    let mut response = Vec::new();
    // The engine closes without close_notify after its answer: an unexpected EOF.
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// How long until the engine closes `tcp` (reading nothing else), at most 20 s.
async fn closed_after(tcp: &mut tokio::net::TcpStream) -> Duration {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the engine kept a stalled connection open"),
        }
    }
}

#[test]
fn stalled_and_plain_connections_are_bounded_and_https_endpoints_work() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let ca = Ca::new("iii test CA");
    let files = Files::new(&ca.issue());
    let ca = ca.der();
    TokioFlavor::block_on(async {
        let mut settings = settings(&files, None);
        settings.handshake_timeout = Duration::from_secs(2);
        settings.max_handshakes = 2;
        let engine = EngineServer::bind(iii_tokio::Tokio, "127.0.0.1:0", settings)
            .await
            .expect("engine");
        let addr = engine.local_addr();
        // Two peers open TCP and never send a ClientHello: they fill the pre-upgrade
        // slots; a third is closed at once, and the two at the handshake timeout.
        let mut silent = [
            TcpStream::connect(addr).await.expect("connect"),
            TcpStream::connect(addr).await.expect("connect"),
        ];
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.expect("connect");
        assert!(closed_after(&mut third).await < Duration::from_millis(1500));
        for tcp in &mut silent {
            closed_after(tcp).await;
        }
        // Plain HTTP on the TLS port: no HTTP answer, the connection is closed.
        let mut plain = TcpStream::connect(addr).await.expect("connect");
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        let mut answer = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut answer).await;
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

        // Still serving: /healthz and /metrics over https, a worker over wss.
        let (status, body) = https_get(addr, "/healthz", &ca).await;
        assert!(status.contains(" 200 "), "{status}");
        assert_eq!(body, "ok\n");
        let owner = worker(iii_tokio::Tokio, &engine.url(), "tls-owner", &ca).await;
        register_sha(&owner).await;
        stream_through_sha(&owner, 1000).await;
        let (status, metrics) = https_get(addr, "/metrics", &ca).await;
        assert!(status.contains(" 200 "), "{status}");
        let failed = metrics
            .lines()
            .find_map(|line| line.strip_prefix("iii_tls_handshakes_failed_total "))
            .expect("the failed-handshake counter");
        assert_eq!(failed, "1", "the plain request only:\n{metrics}");
        owner.shutdown().await;
        engine.shutdown().await;
    });
}
