//! The browser worker (iii-browser, compiled to wasm) in headless Chromium against the
//! `iii-engine` binary on loopback, with this crate's worker SDK as the backend.
//!
//! `iii-browser/build.sh` builds the package and installs what the test needs (Debian's
//! chromium, npm's playwright-core; see iii-browser/BUILDING.md); the test runs
//! it first. Without the browser toolchain (no root or no Debian, say macOS) the test
//! prints `skipped: run iii-browser/build.sh …` and passes, unless `III_REQUIRE_ALL=1`
//! (CI sets it), which never skips. The page
//! (`iii-browser/web/e2e.js`) registers `e2e.browser.*` functions and checks what it
//! gets in the page; this test calls them and checks the Rust side:
//!
//! 1. the backend calls a function the page registered;
//! 2. the page calls backend functions (a result, `function_not_found`, a thrown error,
//!    a timeout, a void call) and gets typed errors for bad arguments; a worker that
//!    cannot connect gives up after `maxRetries`, and `shutdown()` rejects what waits;
//!    a running worker whose handles the page dropped (and the browser collected) still
//!    answers calls;
//! 3. 16 MiB browser → Rust reader and back, SHA-256 checked on both sides, text
//!    messages in order at their offsets;
//! 4. the engine is killed and restarted on the same port: both workers reconnect and
//!    steps 1–2 work again;
//! 5. a writer in the page is closed by navigating away: the Rust reader fails with a
//!    typed error (`Error::Channel`, code 1011), after every byte written before.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::Engine;
use iii_tokio::worker::{
    connect, ChannelItem, ChannelReader, ChannelRef, ChannelWriter, Error, Iii, WorkerOptions,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The page is served on 127.0.0.1 at a port chosen when it starts.
const PAGE_ORIGINS: &str = "http://127.0.0.1:*";

const STREAM_BYTES: u64 = 16 << 20;
/// The engine's `--max-list-bytes` in the discovery test.
const DISCOVERY_PAGE_BYTES: usize = 640;
const LEAVE_BYTES: usize = 1 << 20;

/// Bytes the Rust reader of the current failing-writer check has read
/// (`e2e.backend.received` tells the page).
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf()
}

/// Runs `iii-browser/build.sh` once per test binary (the tests share the package).
fn build_package_once() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(build_package);
}

/// True when the browser toolchain is here (`iii-browser/build.sh --check`), or can be
/// installed by `build.sh` (root with apt-get), or `III_REQUIRE_ALL=1` asks for every
/// test; otherwise prints why the test is skipped. (The same rule as the workspace
/// tests' `iii_tests::toolchain::browser`, which this crate cannot depend on.)
fn browser_toolchain_or_skip() -> bool {
    if std::env::var("III_REQUIRE_ALL").is_ok_and(|value| value == "1") {
        return true;
    }
    let check = Command::new("bash")
        .arg(repo().join("iii-browser/build.sh"))
        .arg("--check")
        .env("III_BROWSER_NO_INSTALL", "1")
        .stdout(Stdio::null())
        .output();
    let why = match check {
        Ok(output) if output.status.success() => return true,
        Ok(output) => String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()
            .unwrap_or("iii-browser/build.sh --check failed")
            .to_owned(),
        Err(error) => format!("cannot run bash: {error}"),
    };
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    let apt = Command::new("apt-get")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if root && apt {
        return true;
    }
    eprintln!(
        "skipped: run iii-browser/build.sh (as root on Debian; it installs the browser \
         toolchain): {why} (III_REQUIRE_ALL=1 makes this a failure)"
    );
    false
}

/// Runs `iii-browser/build.sh` (installs what is missing, builds the package).
fn build_package() {
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(repo().join("iii-browser/build.sh"))
        .output()
        .expect("run iii-browser/build.sh");
    assert!(
        output.status.success(),
        "iii-browser/build.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "iii-browser/build.sh: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// `iii-browser/web/host.mjs`: serves the pages and keeps Chromium on one; stops when
/// its standard input closes (on drop), killed if it lingers.
struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Browser {
    fn open(page: &str) -> Self {
        let name: String = page
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let log =
            std::env::temp_dir().join(format!("iii-browser-{name}.{}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new("node")
            .arg(repo().join("iii-browser/web/host.mjs"))
            .args(["--root", &repo().join("iii-browser/web").to_string_lossy()])
            .args(["--open", page])
            .stdin(Stdio::piped())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start node iii-browser/web/host.mjs");
        let stdin = child.stdin.take();
        Self { child, stdin, log }
    }

    fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            // Kept after a failure: the panic message names it.
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn channel_ref(value: &Value) -> Result<ChannelRef, Error> {
    Ok(serde_json::from_value(value.clone())?)
}

/// `e2e.backend.relay`: reads `input` to its end (SHA-256, texts with their offsets)
/// while writing everything back to `output` in the same order, then closes it.
async fn relay(iii: Iii, input: Value) -> Result<Value, Error> {
    let mut reader = ChannelReader::new(&iii, &channel_ref(&input["input"])?);
    let writer = ChannelWriter::new(&iii, &channel_ref(&input["output"])?);
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut messages = Vec::new();
    while let Some(item) = reader.next_item().await? {
        match item {
            ChannelItem::Binary(chunk) => {
                hasher.update(&chunk);
                bytes += chunk.len() as u64;
                writer.write_bytes(chunk).await?;
            }
            ChannelItem::Text(text) => {
                writer.send_message(&text).await?;
                messages.push(json!({"at": bytes, "text": text}));
            }
        }
    }
    writer.close().await?;
    let sha256: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(json!({"sha256": sha256, "bytes": bytes, "messages": messages}))
}

fn backend(url: &str) -> Iii {
    let iii = connect(WorkerOptions {
        url: Some(url.to_owned()),
        name: Some("e2e-backend".into()),
        ..WorkerOptions::default()
    })
    .expect("backend worker");
    iii.register_function("e2e.backend.add", |input: Value| async move {
        let sum = input["a"].as_i64().unwrap_or(0) + input["b"].as_i64().unwrap_or(0);
        Ok::<_, Error>(json!({ "sum": sum }))
    })
    .expect("register add");
    iii.register_function("e2e.backend.fail", |input: Value| async move {
        Err::<Value, String>(format!("failing because {}", input["why"]))
    })
    .expect("register fail");
    iii.register_function("e2e.backend.received", |_input: Value| async move {
        Ok::<_, Error>(json!({ "received": RECEIVED.load(Ordering::Relaxed) }))
    })
    .expect("register received");
    iii.register_function("e2e.backend.slow", |_input: Value| async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok::<_, Error>(Value::Null)
    })
    .expect("register slow");
    let me = iii.clone();
    iii.register_function("e2e.backend.relay", move |input: Value| {
        relay(me.clone(), input)
    })
    .expect("register relay");
    iii
}

/// Calls `function` until it answers (the page or a worker is still connecting).
async fn until_callable(iii: &Iii, function: &str, within: Duration, browser: &Browser) {
    let deadline = Instant::now() + within;
    loop {
        match iii
            .trigger_with_timeout(function, json!({}), Duration::from_secs(5))
            .await
        {
            Ok(_) => return,
            Err(error) if Instant::now() > deadline => {
                panic!(
                    "{function} not callable within {within:?}: {error}\n--- browser log\n{}",
                    browser.log()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn call(iii: &Iii, function: &str, input: Value, browser: &Browser) -> Value {
    iii.trigger_with_timeout(function, input, Duration::from_secs(120))
        .await
        .unwrap_or_else(|error| panic!("{function}: {error}\n--- browser log\n{}", browser.log()))
}

/// Steps 1 and 2.
async fn calls_both_ways(iii: &Iii, browser: &Browser) {
    let doubled = call(iii, "e2e.browser.double", json!({"n": 21}), browser).await;
    assert_eq!(doubled, json!({"n": 42}));
    let called = call(iii, "e2e.browser.call_backend", json!({}), browser).await;
    assert_eq!(called["sum"], 42);
    assert!(called["workerId"].is_string(), "{called}");
}

/// Calls `function` with a fresh writer ref (straight from the engine: no local writer
/// end here) while a Rust reader reads its channel: the reader must fail with
/// `Error::Channel` (code 1011) after `size` bytes (all of them when `all_before`).
async fn writer_fails_its_reader(
    iii: &Iii,
    browser: &Browser,
    function: &str,
    size: usize,
    all_before: bool,
) {
    let refs = call(iii, "engine::channels::create", json!({}), browser).await;
    let mut reader = ChannelReader::new(iii, &channel_ref(&refs["reader"]).expect("reader ref"));
    RECEIVED.store(0, Ordering::Relaxed);
    let reading = tokio::spawn(async move {
        loop {
            match reader.next_binary().await {
                Ok(Some(chunk)) => RECEIVED.fetch_add(chunk.len(), Ordering::Relaxed),
                Ok(None) => return Ok(()),
                Err(error) => return Err(error),
            };
        }
    });
    let result = call(
        iii,
        function,
        json!({"writer": refs["writer"], "size": size}),
        browser,
    )
    .await;
    assert_eq!(result["written"], size);
    let outcome = tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .unwrap_or_else(|_| panic!("{function}: the reader did not end"))
        .expect("reader task");
    match outcome {
        Err(Error::Channel(iii_core::worker::EndOutcome::Aborted { code, .. })) => {
            assert_eq!(code.map(|c| c.0), Some(1011), "{function}: the engine's code");
        }
        other => panic!(
            "{function}: the Rust reader must fail with a typed error, got {other:?}\n--- browser log\n{}",
            browser.log()
        ),
    }
    let got = RECEIVED.load(Ordering::Relaxed);
    if all_before {
        assert_eq!(got, size, "{function}: every byte written before");
    } else {
        assert!(got <= size, "{function}: {got} bytes of {size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_worker_calls_streams_reconnects_and_fails_typed() {
    if !browser_toolchain_or_skip() {
        return;
    }
    tokio::task::block_in_place(build_package_once);
    let mut engine = Engine::start_on(
        "127.0.0.1:0",
        &["--allowed-origin", PAGE_ORIGINS],
        &[],
        Stdio::null(),
    );
    let port = engine.url.rsplit(':').next().expect("port").to_owned();
    let iii = backend(&engine.url);
    let page = format!("e2e.html?engine={}", engine.url);
    let browser = Browser::open(&page);
    until_callable(&iii, "e2e.browser.ready", Duration::from_secs(90), &browser).await;

    // 1, 2.
    calls_both_ways(&iii, &browser).await;

    // maxRetries, shutdown (checked in the page).
    let lifecycle = call(&iii, "e2e.browser.lifecycle", json!({}), &browser).await;
    assert_eq!(lifecycle["second"], "disconnected");

    // A running worker whose handles the page dropped and the browser collected still
    // serves (a freed worker left its socket open with dead callbacks: calls hung).
    call(&iii, "e2e.browser.unreferenced", json!({}), &browser).await;
    until_callable(
        &iii,
        "e2e.unreferenced.ping",
        Duration::from_secs(10),
        &browser,
    )
    .await;
    let pong = call(&iii, "e2e.unreferenced.ping", json!({}), &browser).await;
    assert_eq!(pong["pong"], true, "{pong}");

    // 3.
    let started = Instant::now();
    let stream = call(
        &iii,
        "e2e.browser.stream",
        json!({"size": STREAM_BYTES}),
        &browser,
    )
    .await;
    assert_eq!(stream["bytes"], STREAM_BYTES);
    assert_eq!(stream["rustSha256"], stream["sha256"]);
    assert_eq!(stream["echoedSha256"], stream["sha256"]);
    eprintln!(
        "16 MiB browser -> Rust -> browser in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 4.
    engine.kill();
    let mut engine = Engine::start_on(
        &format!("127.0.0.1:{port}"),
        &["--allowed-origin", PAGE_ORIGINS],
        &[],
        Stdio::null(),
    );
    until_callable(&iii, "e2e.browser.ready", Duration::from_secs(60), &browser).await;
    calls_both_ways(&iii, &browser).await;
    let states = call(&iii, "e2e.browser.states", json!({}), &browser).await;
    let seen: Vec<&str> = states["states"]
        .as_array()
        .expect("states")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let reconnecting = seen.iter().position(|s| *s == "reconnecting");
    assert!(
        reconnecting.is_some_and(|at| seen[at..].contains(&"connected")),
        "the page saw {seen:?}"
    );

    // An aborted page writer (it goes out as 4011: a page may not send 1011).
    writer_fails_its_reader(
        &iii,
        &browser,
        "e2e.browser.write_and_abort",
        LEAVE_BYTES,
        false,
    )
    .await;
    // 5.
    writer_fails_its_reader(
        &iii,
        &browser,
        "e2e.browser.write_and_leave",
        LEAVE_BYTES,
        true,
    )
    .await;
    iii.shutdown().await;
    engine.kill();
}

/// `listFunctions`, `listTriggers`, `listTriggerTypes` and `onFunctionsAvailable` in the
/// page (`iii-browser/web/discovery.js`, which checks what it gets and throws on a
/// difference) against what this crate's worker (another worker) and the page
/// registered: the listings with and without internal entries, over several of the
/// engine's pages; two subscribers behind
/// one engine binding, each called when the backend registers a function; an
/// unsubscribed one no longer called; the last unsubscribe removing the binding and the
/// private function; `unregisterTriggerType` removing the type from the listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_worker_lists_and_watches_what_the_engine_knows() {
    if !browser_toolchain_or_skip() {
        return;
    }
    tokio::task::block_in_place(build_package_once);
    // Pages small enough that the page's function listing spans two of them (the page
    // checks), large enough for every backend function in a notification.
    let engine = Engine::start_on(
        "127.0.0.1:0",
        &[
            "--allowed-origin",
            PAGE_ORIGINS,
            "--max-list-bytes",
            &DISCOVERY_PAGE_BYTES.to_string(),
        ],
        &[],
        Stdio::null(),
    );
    let iii = connect(WorkerOptions {
        url: Some(engine.url.clone()),
        name: Some("discovery-backend".into()),
        ..WorkerOptions::default()
    })
    .expect("backend worker");
    let function = |id: &str, description: &str| {
        iii_tokio::worker::FunctionDef::new(id).description(description)
    };
    let noop = |_input: Value| async move { Ok::<_, Error>(Value::Null) };
    iii.register_function(function("discovery.backend.alpha", "the first"), noop)
        .expect("register alpha");
    let browser = Browser::open(&format!("discovery.html?engine={}", engine.url));
    until_callable(
        &iii,
        "discovery.browser.ready",
        Duration::from_secs(90),
        &browser,
    )
    .await;
    // A binding by this worker of the page's trigger type.
    iii.register_trigger(
        "discovery.browser.type",
        "discovery.backend.alpha",
        json!({"from": "backend"}),
    )
    .await
    .expect("bind the page's trigger type");

    let lists = call(&iii, "discovery.browser.lists", json!({}), &browser).await;
    let ids = |list: &str, key: &str| -> Vec<String> {
        lists[list]
            .as_array()
            .unwrap_or_else(|| panic!("{list}: {lists}"))
            .iter()
            .filter_map(|row| row[key].as_str().map(str::to_owned))
            .collect()
    };
    assert!(ids("functions", "function_id").contains(&"discovery.backend.alpha".to_owned()));
    assert!(ids("types", "id").contains(&"discovery.browser.type".to_owned()));
    assert!(!ids("types", "id").contains(&"engine::functions-available".to_owned()));
    assert!(ids("allTypes", "id").contains(&"engine::functions-available".to_owned()));
    assert!(ids("triggers", "function_id").contains(&"discovery.backend.alpha".to_owned()));
    assert!(!ids("triggers", "function_id").contains(&"engine::functions::list".to_owned()));
    assert!(ids("allTriggers", "function_id").contains(&"engine::functions::list".to_owned()));

    // Two subscribers, one binding; both see a function another worker registers.
    call(
        &iii,
        "discovery.browser.subscribe",
        json!({"names": ["a", "b"]}),
        &browser,
    )
    .await;
    let await_function = |id: &'static str, names: Value, not: Value| {
        let iii = iii.clone();
        let browser = &browser;
        async move {
            let input = json!({"id": id, "names": names, "not": not});
            call(&iii, "discovery.browser.await_function", input, browser).await
        }
    };
    iii.register_function(function("discovery.backend.late", "second"), noop)
        .expect("register late");
    await_function("discovery.backend.late", json!(["a", "b"]), json!([])).await;

    // One unsubscribes: the other still sees changes, it does not.
    let left = call(
        &iii,
        "discovery.browser.unsubscribe",
        json!({"name": "a"}),
        &browser,
    )
    .await;
    assert_eq!(left["bindings"].as_array().map(Vec::len), Some(1), "{left}");
    iii.register_function(function("discovery.backend.later", "third"), noop)
        .expect("register later");
    await_function("discovery.backend.later", json!(["b"]), json!(["a"])).await;

    // The last unsubscribe removes the binding (checked in the page, with the private
    // function); a new subscriber sees the next change and the old ones do not.
    let none = call(
        &iii,
        "discovery.browser.unsubscribe",
        json!({"name": "b"}),
        &browser,
    )
    .await;
    assert_eq!(none["bindings"], json!([]), "{none}");
    call(
        &iii,
        "discovery.browser.subscribe",
        json!({"names": ["c"]}),
        &browser,
    )
    .await;
    iii.register_function(function("discovery.backend.last", "fourth"), noop)
        .expect("register last");
    await_function("discovery.backend.last", json!(["c"]), json!(["a", "b"])).await;

    let dropped = call(&iii, "discovery.browser.drop_type", json!({}), &browser).await;
    assert!(
        !dropped["types"]
            .as_array()
            .expect("types")
            .iter()
            .any(|t| t["id"] == "discovery.browser.type"),
        "{dropped}"
    );
    iii.shutdown().await;
    drop(engine);
}
