//! `iii call`: results, errors, void calls, timeouts, connection failures and their
//! exit statuses.

use std::time::Duration;

use serde_json::json;

use crate::support::{iii, run, Backend, Engine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_is_printed_as_json() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;

    let out = run(
        iii(
            &engine.url,
            &["call", "test.echo", r#"{"value": {"a": [1, 2]}}"#],
        ),
        None,
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json(), json!({"a": [1, 2]}));
    assert_eq!(out.stdout_text(), "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n");
    assert!(out.stderr.is_empty(), "{out:?}");

    let compact = run(
        iii(
            &engine.url,
            &["call", "test.echo", r#"{"value": {"a": 1}}"#, "--compact"],
        ),
        None,
    )
    .await;
    assert_eq!(compact.stdout_text(), "{\"a\":1}\n", "{compact:?}");

    let piped = run(
        iii(&engine.url, &["call", "test.echo", "-"]),
        Some(br#"{"value": "from stdin"}"#),
    )
    .await;
    assert_eq!(piped.code, Some(0), "{piped:?}");
    assert_eq!(piped.json(), json!("from stdin"));

    let no_payload = run(iii(&engine.url, &["call", "test.echo"]), None).await;
    assert_eq!(no_payload.code, Some(0), "{no_payload:?}");
    assert_eq!(no_payload.json(), json!(null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_with_their_status_and_message() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;

    let failed = run(iii(&engine.url, &["call", "test.fail"]), None).await;
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(failed.stdout.is_empty(), "{failed:?}");
    assert!(
        failed
            .stderr
            .contains("`test.fail` failed: bad_input: the input was rejected"),
        "{failed:?}"
    );

    let missing = run(iii(&engine.url, &["call", "no.such.function"]), None).await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("function_not_found"), "{missing:?}");

    let not_json = run(iii(&engine.url, &["call", "test.echo", "hello"]), None).await;
    assert_eq!(not_json.code, Some(2), "{not_json:?}");
    assert!(
        not_json.stderr.contains("the payload is not valid JSON")
            && not_json.stderr.contains("must be quoted"),
        "{not_json:?}"
    );

    let too_big = run(
        iii(
            &engine.url,
            &["call", "test.echo", "-", "--max-payload-bytes", "8"],
        ),
        Some(br#"{"value": "longer than eight bytes"}"#),
    )
    .await;
    assert_eq!(too_big.code, Some(2), "{too_big:?}");
    assert!(
        too_big.stderr.contains("larger than 8 bytes"),
        "{too_big:?}"
    );

    let bad_flag = run(
        iii(&engine.url, &["call", "test.echo", "--timeout", "0s"]),
        None,
    )
    .await;
    assert_eq!(bad_flag.code, Some(2), "{bad_flag:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_function_times_out() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;

    let out = run(
        iii(
            &engine.url,
            &[
                "call",
                "test.sleep",
                r#"{"ms": 20000}"#,
                "--timeout",
                "300ms",
            ],
        ),
        None,
    )
    .await;
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(
        out.stderr
            .contains("no answer from `test.sleep` within 300ms"),
        "{out:?}"
    );
    assert!(out.elapsed < Duration::from_secs(10), "{out:?}");

    let in_time = run(
        iii(
            &engine.url,
            &["call", "test.sleep", r#"{"ms": 50}"#, "--timeout", "20s"],
        ),
        None,
    )
    .await;
    assert_eq!(in_time.code, Some(0), "{in_time:?}");
    assert_eq!(in_time.json(), json!({"slept": 50}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_call_reaches_the_function_and_prints_nothing() {
    let engine = Engine::start().await;
    let mut backend = Backend::start(&engine.url).await;

    let out = run(
        iii(
            &engine.url,
            &["call", "--void", "test.record", r#"{"n": 7}"#],
        ),
        None,
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let recorded = tokio::time::timeout(Duration::from_secs(10), backend.recorded.recv())
        .await
        .expect("the void call arrived")
        .expect("recorded");
    assert_eq!(recorded, json!({"n": 7}));

    // A void call of a failing function still succeeds: its errors are not reported.
    let failing = run(iii(&engine.url, &["call", "--void", "test.fail"]), None).await;
    assert_eq!(failing.code, Some(0), "{failing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_are_diagnosed() {
    // A port with nothing behind it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("ws://127.0.0.1:{port}");
    let refused = run(iii(&url, &["functions"]), None).await;
    assert_eq!(refused.code, Some(3), "{refused:?}");
    assert!(
        refused.stderr.contains(&format!("cannot connect to {url}"))
            && refused.stderr.contains("is the engine running?"),
        "{refused:?}"
    );
    assert!(refused.elapsed < Duration::from_secs(5), "{refused:?}");

    let bad_url = run(iii("http://127.0.0.1:1", &["functions"]), None).await;
    assert_eq!(bad_url.code, Some(2), "{bad_url:?}");
    assert!(bad_url.stderr.contains("ws://"), "{bad_url:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_comes_from_the_flag_or_the_environment() {
    let engine = Engine::with_token("s3cret").await;
    let _backend = Backend::start_with_token(&engine.url, Some("s3cret")).await;

    let without = run(iii(&engine.url, &["call", "test.echo"]), None).await;
    assert_eq!(without.code, Some(3), "{without:?}");
    assert!(
        without.stderr.contains("HTTP 401") && without.stderr.contains("requires a token"),
        "{without:?}"
    );

    let wrong = run(iii(&engine.url, &["--token", "nope", "functions"]), None).await;
    assert_eq!(wrong.code, Some(3), "{wrong:?}");
    assert!(wrong.stderr.contains("refused the token"), "{wrong:?}");

    let flag = run(
        iii(
            &engine.url,
            &["call", "--token", "s3cret", "test.echo", r#"{"value": 1}"#],
        ),
        None,
    )
    .await;
    assert_eq!(flag.code, Some(0), "{flag:?}");
    assert_eq!(flag.json(), json!(1));

    let mut from_env = iii(&engine.url, &["call", "test.echo", r#"{"value": 2}"#]);
    from_env.env("III_TOKEN", "s3cret");
    let from_env = run(from_env, None).await;
    assert_eq!(from_env.code, Some(0), "{from_env:?}");
    assert_eq!(from_env.json(), json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_comes_from_the_environment() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_iii"));
    command
        .args(["call", "test.echo", r#"{"value": "via III_URL"}"#])
        .env("III_URL", &engine.url)
        .env_remove("III_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = run(command, None).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json(), json!("via III_URL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_is_call_and_key_value_pairs_make_the_payload() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;

    // `iii trigger`, the official command's name, is `iii call`.
    let triggered = run(
        iii(
            &engine.url,
            &["trigger", "test.echo", r#"{"value": 7}"#, "--compact"],
        ),
        None,
    )
    .await;
    assert_eq!(triggered.code, Some(0), "{triggered:?}");
    assert_eq!(triggered.json(), json!(7));

    // KEY=VALUE pairs: JSON values where they are JSON, strings otherwise.
    let pairs = run(
        iii(
            &engine.url,
            &[
                "call",
                "test.echo",
                "value={\"n\":1}",
                "note=hello",
                "--compact",
            ],
        ),
        None,
    )
    .await;
    assert_eq!(pairs.code, Some(0), "{pairs:?}");
    assert_eq!(pairs.json(), json!({"n": 1}));
    let mixed = run(iii(&engine.url, &["call", "test.echo", "a=1", "{}"]), None).await;
    assert_eq!(mixed.code, Some(2), "{mixed:?}");
    assert!(mixed.stderr.contains("KEY=VALUE"), "{mixed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_need_no_engine() {
    // No engine listens here: completions never connect.
    let out = run(iii("ws://127.0.0.1:9", &["completions", "bash"]), None).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let script = out.stdout_text();
    assert!(script.contains("_iii()"), "{script}");
    for word in ["call", "trigger", "send", "recv", "channels"] {
        assert!(script.contains(word), "{word} missing");
    }
}
