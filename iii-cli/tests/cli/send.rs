//! `iii send`: files and standard input streamed to a function, in constant memory;
//! early answers, failures and Ctrl-C.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::support::{
    assert_constant_memory, iii, interrupt, pattern_file, run, run_measured, scratch, Backend,
    Engine, BIG, COMMAND_LIMIT,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_file_arrives_whole_in_constant_memory() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;
    let dir = scratch();
    let path = dir.path().join("big.bin");
    let expected = pattern_file(3, BIG, Some(&path));

    let command = iii(
        &engine.url,
        &[
            "send",
            "files.hash",
            "--payload",
            r#"{"label": "big"}"#,
            path.to_str().expect("utf-8 path"),
        ],
    );
    let (out, peak) = run_measured(command, None).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.json(),
        json!({"bytes": BIG, "sha256": expected, "label": "big", "field": "reader"})
    );
    assert!(
        out.stderr.is_empty(),
        "no progress bar off a terminal: {out:?}"
    );
    assert_constant_memory("send", &out, peak);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_input_is_streamed_under_the_chosen_field() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;
    let len = 8 << 20;
    let dir = scratch();
    let path = dir.path().join("input.bin");
    let expected = pattern_file(5, len, Some(&path));
    let data = std::fs::read(&path).expect("read back");

    let out = run(
        iii(
            &engine.url,
            &["send", "files.hash", "--field", "input", "-"],
        ),
        Some(&data),
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.json(),
        json!({"bytes": len, "sha256": expected, "label": null, "field": "input"})
    );

    // An empty input is a clean, empty stream.
    let empty = run(iii(&engine.url, &["send", "files.hash"]), Some(b"")).await;
    assert_eq!(empty.code, Some(0), "{empty:?}");
    assert_eq!(empty.json()["bytes"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_before_anything_is_called() {
    let engine = Engine::start().await;
    let backend = Backend::start(&engine.url).await;
    let dir = scratch();
    let missing = dir.path().join("missing.bin");

    let out = run(
        iii(
            &engine.url,
            &["send", "files.hash", missing.to_str().expect("utf-8")],
        ),
        None,
    )
    .await;
    assert_eq!(out.code, Some(6), "{out:?}");
    assert!(out.stderr.contains("cannot read"), "{out:?}");

    let taken = run(
        iii(
            &engine.url,
            &["send", "files.hash", "--payload", r#"{"reader": 1}"#],
        ),
        Some(b"x"),
    )
    .await;
    assert_eq!(taken.code, Some(2), "{taken:?}");
    assert!(taken.stderr.contains("--field"), "{taken:?}");

    let not_object = run(
        iii(&engine.url, &["send", "files.hash", "--payload", "[]"]),
        Some(b"x"),
    )
    .await;
    assert_eq!(not_object.code, Some(2), "{not_object:?}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(backend.outcomes().is_empty(), "files.hash was never called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_answers_early_ends_the_transfer() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;
    let dir = scratch();
    let path = dir.path().join("input.bin");
    pattern_file(1, 64 << 20, Some(&path));
    let path = path.to_str().expect("utf-8");

    // test.fail never reads: its error ends the command.
    let failed = run(iii(&engine.url, &["send", "test.fail", path]), None).await;
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(failed.stderr.contains("bad_input"), "{failed:?}");

    // test.echo never reads either, but succeeds: its result is printed, and the
    // command fails with the stream status (5), since most of the input never arrived.
    let early = run(
        iii(
            &engine.url,
            &["send", "test.echo", "--payload", r#"{"value": 5}"#, path],
        ),
        None,
    )
    .await;
    assert_eq!(early.code, Some(5), "{early:?}");
    assert_eq!(early.json(), json!(5));
    assert!(
        early
            .stderr
            .contains("`test.echo` returned before reading all of the input"),
        "{early:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_aborts_the_channel() {
    let engine = Engine::start().await;
    let backend = Backend::start(&engine.url).await;

    let mut command = iii(&engine.url, &["send", "files.hash", "-"]);
    command.stdin(Stdio::piped());
    let mut child = command.spawn().expect("spawn iii");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&[1u8; 1 << 20]).await.expect("feed");
    // The function is reading once the engine has relayed what we fed.
    wait_relayed(&backend, 1 << 20).await;
    interrupt(child.id().expect("running"));
    let output = tokio::time::timeout(COMMAND_LIMIT, child.wait_with_output())
        .await
        .expect("iii stopped")
        .expect("iii ran");
    drop(stdin);
    assert_eq!(output.status.code(), Some(130), "{output:?}");
    let outcome = backend.next_outcome(0).await;
    assert!(
        outcome.starts_with("error:"),
        "the function saw an error, not a short clean stream: {outcome}"
    );
}

/// Waits until some channel at the engine has relayed at least `bytes` bytes.
async fn wait_relayed(backend: &Backend, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = backend
            .iii
            .trigger("engine::channels::list", json!({}))
            .await
            .expect("list channels");
        let relayed = list["channels"]
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["bytes_in"].as_u64() >= Some(bytes)));
        if relayed {
            return;
        }
        assert!(Instant::now() < deadline, "nothing was relayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_bar_is_drawn_on_a_terminal() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;
    let dir = scratch();
    let path = dir.path().join("input.bin");
    pattern_file(2, 4 << 20, Some(&path));

    // `script` (util-linux) runs the command on a pseudo-terminal.
    let command_line = format!(
        "{} --url {} send files.hash --payload '{{\"delay_ms\": 20}}' {}",
        env!("CARGO_BIN_EXE_iii"),
        engine.url,
        path.display()
    );
    let mut command = tokio::process::Command::new("script");
    command
        .args(["-qec", &command_line, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = run(command, None).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let screen = out.stdout_text();
    assert!(
        screen.contains("ETA") && screen.contains("MiB/s") && screen.contains("4.00 MiB"),
        "a progress bar with rate and ETA: {screen:?}"
    );
    assert!(screen.contains("\"bytes\": 4194304"), "{screen:?}");
}
