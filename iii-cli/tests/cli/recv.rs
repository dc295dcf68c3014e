//! `iii recv`: a function's stream to a file or standard output, text messages on
//! standard error; a killed or aborting writer, a closed pipe and Ctrl-C.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::support::{
    assert_constant_memory, hex, iii, interrupt, pattern_file, run, run_measured, scratch, Backend,
    Engine, Pattern, BIG, COMMAND_LIMIT,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_stream_lands_whole_in_a_file() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;
    let dir = scratch();
    let path = dir.path().join("received.bin");
    let expected = pattern_file(9, BIG, None);
    let payload = json!({"bytes": BIG, "seed": 9, "message_every": 64 << 20}).to_string();

    let command = iii(
        &engine.url,
        &[
            "recv",
            "files.generate",
            "--payload",
            &payload,
            path.to_str().expect("utf-8 path"),
        ],
    );
    let (out, peak) = run_measured(command, None).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json(), json!({"bytes": BIG, "sha256": expected}));
    assert_eq!(file_sha256(&path), expected, "the file holds the stream");
    assert_eq!(
        out.stderr, "at 67108864\nat 134217728\nat 201326592\nat 268435456\n",
        "text messages on standard error, in order"
    );
    assert_constant_memory("recv", &out, peak);
}

fn file_sha256(path: &std::path::Path) -> String {
    let mut file = std::fs::File::open(path).expect("open");
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).expect("read");
    hex(&hasher.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_output_carries_the_stream_and_messages_can_be_json() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;
    let len: u64 = 16 << 20;
    let expected = pattern_file(4, len, None);
    let payload = json!({"bytes": len, "seed": 4, "message_every": 4 << 20}).to_string();

    let out = run(
        iii(
            &engine.url,
            &[
                "recv",
                "files.generate",
                "--messages",
                "json",
                "--payload",
                &payload,
            ],
        ),
        None,
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.len() as u64, len);
    assert_eq!(hex(&Sha256::digest(&out.stdout)), expected);
    // Standard error: one JSON line per message, then the result (standard output
    // carries the stream).
    let mut lines = out.stderr.lines();
    for n in 1..=4u64 {
        let line: Value =
            serde_json::from_str(lines.next().expect("a message line")).expect("a JSON message");
        let at = n * (4 << 20);
        assert_eq!(line, json!({"offset": at, "text": format!("at {at}")}));
    }
    let result: Value =
        serde_json::from_str(&lines.collect::<Vec<_>>().join("\n")).expect("the result as JSON");
    assert_eq!(result, json!({"bytes": len, "sha256": expected}));

    let quiet = run(
        iii(
            &engine.url,
            &[
                "recv",
                "files.generate",
                "--messages",
                "none",
                "--payload",
                &payload,
            ],
        ),
        None,
    )
    .await;
    assert_eq!(quiet.code, Some(0), "{quiet:?}");
    assert!(quiet.stderr.starts_with('{'), "only the result: {quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_stream_exits_with_the_stream_status() {
    let engine = Engine::start().await;
    let backend = Backend::start(&engine.url).await;
    let payload = json!({"bytes": 64 << 20, "abort_after": 1 << 20}).to_string();

    let out = run(
        iii(
            &engine.url,
            &["recv", "files.generate", "--payload", &payload],
        ),
        None,
    )
    .await;
    assert_eq!(backend.next_outcome(0).await, "aborted");
    assert_eq!(out.code, Some(5), "{out:?}");
    assert!(out.stderr.contains("the channel failed after"), "{out:?}");
    assert!(
        (out.stdout.len() as u64) < 64 << 20,
        "a short stream: {} bytes",
        out.stdout.len()
    );

    // A function that fails without writing: its error, at once.
    let failed = run(iii(&engine.url, &["recv", "test.fail"]), None).await;
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(failed.stderr.contains("bad_input"), "{failed:?}");
    assert!(failed.elapsed < Duration::from_secs(10), "{failed:?}");

    // Into a file: a failure before any data leaves no empty file behind, and says so
    // by the file's path.
    let dir = scratch();
    let path = dir.path().join("never.bin");
    let path_text = path.to_str().expect("utf-8");
    let failed = run(iii(&engine.url, &["recv", "test.fail", path_text]), None).await;
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(!path.exists(), "an empty output file was left: {failed:?}");
    assert!(
        failed.stderr.contains(&format!("{path_text}: removed")),
        "{failed:?}"
    );
    // A stream that fails midway keeps what arrived, and the message names the file.
    let partial = dir.path().join("partial.bin");
    let partial_text = partial.to_str().expect("utf-8");
    let out = run(
        iii(
            &engine.url,
            &[
                "recv",
                "files.generate",
                "--payload",
                &payload,
                partial_text,
            ],
        ),
        None,
    )
    .await;
    assert_eq!(backend.next_outcome(1).await, "aborted");
    assert_eq!(out.code, Some(5), "{out:?}");
    let kept = std::fs::metadata(&partial).expect("the partial file").len();
    assert!(
        out.stderr.contains(&format!(
            "{partial_text}: holds only the {kept} bytes received"
        )) || (kept == 0 && out.stderr.contains(&format!("{partial_text}: removed"))),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_cannot_be_created_fails_first() {
    let engine = Engine::start().await;
    let backend = Backend::start(&engine.url).await;
    let dir = scratch();
    let path = dir.path().join("no-such-dir").join("out.bin");
    let out = run(
        iii(
            &engine.url,
            &["recv", "files.generate", path.to_str().expect("utf-8")],
        ),
        None,
    )
    .await;
    assert_eq!(out.code, Some(6), "{out:?}");
    assert!(out.stderr.contains("cannot write"), "{out:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        backend.outcomes().is_empty(),
        "files.generate was never called"
    );
}

/// `iii recv` of an endless stream to a pipe, once its first MiB has arrived (checked).
async fn endless_recv(url: &str) -> (tokio::process::Child, tokio::process::ChildStdout) {
    let mut child = iii(
        url,
        &[
            "recv",
            "files.generate",
            "--payload",
            r#"{"endless": true}"#,
        ],
    )
    .spawn()
    .expect("spawn iii");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut head = vec![0u8; 1 << 20];
    stdout.read_exact(&mut head).await.expect("the first MiB");
    assert_stream_prefix(&head);
    (child, stdout)
}

/// Asserts that `data` is the start of the stream `files.generate` writes by default.
fn assert_stream_prefix(data: &[u8]) {
    let mut expected = vec![0u8; data.len()];
    Pattern::new(1).fill(&mut expected);
    assert!(data == expected, "not a prefix of the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_standard_output_exits_quietly() {
    let engine = Engine::start().await;
    let backend = Backend::start(&engine.url).await;

    let (child, stdout) = endless_recv(&engine.url).await;
    drop(stdout);
    let output = tokio::time::timeout(COMMAND_LIMIT, child.wait_with_output())
        .await
        .expect("iii stopped")
        .expect("iii ran");
    assert_eq!(output.status.code(), Some(141), "{output:?}");
    assert!(output.stderr.is_empty(), "quietly: {output:?}");
    let outcome = backend.next_outcome(0).await;
    assert!(
        outcome.starts_with("error:"),
        "the writer failed: {outcome}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_the_stream_for_the_writer() {
    let engine = Engine::start().await;
    let backend = Backend::start(&engine.url).await;

    let (child, mut stdout) = endless_recv(&engine.url).await;
    interrupt(child.id().expect("running"));
    // Keep reading so that the command is never blocked on its output.
    let drain = tokio::spawn(async move {
        let mut rest = Vec::new();
        let _ = stdout.read_to_end(&mut rest).await;
    });
    let output = tokio::time::timeout(COMMAND_LIMIT, child.wait_with_output())
        .await
        .expect("iii stopped")
        .expect("iii ran");
    let _ = drain.await;
    assert_eq!(output.status.code(), Some(130), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("iii: interrupted"), "{stderr}");
    let outcome = backend.next_outcome(0).await;
    assert!(
        outcome.starts_with("error:"),
        "the writer failed: {outcome}"
    );
}

/// Tells the writer process which engine to serve.
const WRITER_ENGINE: &str = "III_CLI_TEST_WRITER_ENGINE";

/// Not a test: the process `a_killed_writer_fails_recv` starts (running this test
/// binary again) and kills. It serves the backend functions until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a helper process of a_killed_writer_fails_recv"]
async fn writer_process() {
    let Ok(url) = std::env::var(WRITER_ENGINE) else {
        return;
    };
    let _backend = Backend::start(&url).await;
    println!("writer ready");
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_fails_recv() {
    let engine = Engine::start().await;
    let mut writer = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "recv::writer_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(WRITER_ENGINE, &engine.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the writer process");
    let mut lines = BufReader::new(writer.stdout.take().expect("stdout")).lines();
    loop {
        let line = tokio::time::timeout(COMMAND_LIMIT, lines.next_line())
            .await
            .expect("the writer process started in time")
            .expect("read its output");
        match line {
            Some(line) if line.contains("writer ready") => break,
            Some(_) => continue,
            None => panic!("the writer process ended before it was ready"),
        }
    }

    let dir = scratch();
    let path = dir.path().join("partial.bin");
    let receiving = tokio::spawn(run(
        iii(
            &engine.url,
            &[
                "recv",
                "files.generate",
                "--payload",
                r#"{"endless": true}"#,
                path.to_str().expect("utf-8"),
            ],
        ),
        None,
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&path).map_or(0, |m| m.len()) < 4 << 20 {
        assert!(Instant::now() < deadline, "no data arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.kill().await.expect("kill the writer process");

    let out = receiving.await.expect("the command ran");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("`files.generate` failed: invocation_stopped"),
        "{out:?}"
    );
    // What arrived before is the stream's exact prefix.
    assert_stream_prefix(&std::fs::read(&path).expect("read the output"));
}
