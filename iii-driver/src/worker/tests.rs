//! Unit tests of the pure helpers: options, URL and request building, error mapping,
//! handler wrappers.

use iii_core::wire::ErrorBody;
use iii_core::worker::{CallOutcome, EndOutcome, RegisterError};
use iii_core::CloseCode;
use serde_json::{json, Value};

use super::calls::parse_result;
use super::dial::{endpoint, refused_status, resolve_name, resolve_token, resolve_url};
use super::error::{reader_end, ErrorContext};
use super::handlers::{erase, erase_typed, run_handler, DESERIALIZATION_ERROR};
use super::{Error, IntoErrorBody, DEFAULT_URL, INVOCATION_FAILED};

#[test]
fn url_comes_from_the_option_then_the_environment_then_the_default() {
    assert_eq!(resolve_url(Some("ws://a:1"), Some("ws://b:2")), "ws://a:1");
    assert_eq!(resolve_url(None, Some(" ws://b:2 ")), "ws://b:2");
    assert_eq!(resolve_url(None, Some("  ")), DEFAULT_URL);
    assert_eq!(resolve_url(None, None), "ws://127.0.0.1:49134");
}

#[test]
fn token_is_none_when_blank() {
    assert_eq!(resolve_token(Some("t"), Some("e")).as_deref(), Some("t"));
    assert_eq!(resolve_token(None, Some(" e ")).as_deref(), Some("e"));
    assert_eq!(resolve_token(None, Some("   ")), None);
    assert_eq!(resolve_token(None, None), None);
}

#[test]
fn names_default_to_the_pid_and_stay_unique_per_process() {
    assert_eq!(resolve_name(Some("n"), Some("e")), "n");
    assert_eq!(resolve_name(None, Some("e")), "e");
    let pid = std::process::id().to_string();
    let first = resolve_name(None, None);
    let second = resolve_name(None, Some(" "));
    assert!(
        first.starts_with("iii-rs:") && first.contains(&pid),
        "{first}"
    );
    assert_ne!(first, second);
}

#[test]
fn endpoint_parses_host_port_and_adds_the_bearer_token() {
    let headers = [("x-tenant".to_owned(), "acme".to_owned())];
    let ep = endpoint("ws://example.test:4000/base?x=1", Some("sekret"), &headers).expect("valid");
    assert_eq!(
        ep.request.headers().get("x-tenant").expect("custom header"),
        "acme"
    );
    assert_eq!((ep.host.as_str(), ep.port), ("example.test", 4000));
    assert_eq!(ep.request.uri().path(), "/base");
    assert_eq!(ep.request.uri().query(), Some("x=1"));
    let auth = ep.request.headers().get("authorization").expect("header");
    assert_eq!(auth, "Bearer sekret");
    assert!(ep.request.headers().contains_key("sec-websocket-key"));

    let ep = endpoint("ws://[::1]", None, &[]).expect("valid");
    assert_eq!((ep.host.as_str(), ep.port), ("::1", 80));
    assert!(ep.request.headers().get("authorization").is_none());
}

#[test]
fn wss_needs_tls_support_and_roots() {
    let ep = endpoint("wss://engine.example:8443/", None, &[]).expect("a wss URL parses");
    assert_eq!(ep.port, 8443);
    assert_eq!(
        endpoint("wss://engine.example", None, &[])
            .expect("valid")
            .port,
        443
    );
    let plain = super::dial::tls_config("ws://h:1", &[]).expect("no TLS for ws://");
    assert!(plain.is_none());
    // Built without a root feature and given no roots, wss:// is refused at connect.
    if cfg!(not(any(
        feature = "tls-native-roots",
        feature = "tls-webpki-roots"
    ))) {
        assert!(matches!(
            super::dial::tls_config("wss://h:1", &[]),
            Err(Error::InvalidOption(_))
        ));
    }
}

#[test]
fn endpoint_refuses_what_it_cannot_dial() {
    for url in ["http://h:1", "h:1", "not a url", "ws://"] {
        assert!(
            matches!(endpoint(url, None, &[]), Err(Error::InvalidOption(_))),
            "{url}"
        );
    }
    assert!(matches!(
        endpoint("ws://h:1", Some("bad\ntoken"), &[]),
        Err(Error::InvalidOption(_))
    ));
    for header in [("bad name", "v"), ("x-ok", "bad\nvalue")] {
        let headers = [(header.0.to_owned(), header.1.to_owned())];
        assert!(matches!(
            endpoint("ws://h:1", None, &headers),
            Err(Error::InvalidOption(_))
        ));
    }
}

#[test]
fn refused_upgrades_map_to_their_status() {
    use async_tungstenite::tungstenite::http::Response;
    use async_tungstenite::tungstenite::Error as WsError;
    let mut response = Response::new(None);
    *response.status_mut() = async_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
    assert_eq!(
        refused_status(&WsError::Http(Box::new(response))),
        Some(404)
    );
    assert_eq!(refused_status(&WsError::ConnectionClosed), None);
}

#[test]
fn call_outcomes_map_to_errors() {
    let context = ErrorContext {
        url: "ws://127.0.0.1:1".into(),
        last_dial_error: Some("connection refused".into()),
        unauthorized: None,
        rejection: None,
    };
    let call_result = |outcome| context.call_result(outcome);
    assert!(matches!(call_result(CallOutcome::Ok(None)), Ok(None)));
    let body = ErrorBody::new("function_not_found", "Function not found");
    assert!(
        matches!(call_result(CallOutcome::Error(body.clone())), Err(Error::Remote(b)) if b == body)
    );
    assert!(matches!(
        call_result(CallOutcome::TimedOut),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        call_result(CallOutcome::Disconnected),
        Err(Error::Disconnected)
    ));
    let unreachable = call_result(CallOutcome::Unreachable).unwrap_err();
    assert_eq!(
        unreachable.to_string(),
        "the engine at ws://127.0.0.1:1 is unreachable: connection refused"
    );
    let refused = ErrorContext {
        last_dial_error: Some("WebSocket handshake: HTTP error: 401 Unauthorized".into()),
        unauthorized: Some(401),
        ..context.clone()
    };
    let unauthorized = refused.call_result(CallOutcome::Unreachable).unwrap_err();
    assert!(
        matches!(&unauthorized, Error::Unauthorized { status: 401, .. }),
        "{unauthorized:?}"
    );
    assert!(
        unauthorized.to_string().contains("401 Unauthorized"),
        "{unauthorized}"
    );
    let rejection = iii_core::worker::Rejection {
        code: "WORKER_NAMESPACE_CONFLICT".into(),
        namespace: "default".into(),
        worker_name: Some("w".into()),
        function_id: None,
        owner_worker_id: "other".into(),
    };
    let context = ErrorContext {
        rejection: Some(rejection.clone()),
        ..context
    };
    assert!(matches!(
        context.call_result(CallOutcome::Rejected),
        Err(Error::Rejected(r)) if r == rejection
    ));
}

#[test]
fn only_a_clean_end_is_a_successful_read() {
    assert!(reader_end(EndOutcome::Clean).is_ok());
    let aborted = EndOutcome::Aborted {
        code: Some(CloseCode::INTERNAL),
        reason: "writer lost".into(),
    };
    for outcome in [
        aborted,
        EndOutcome::Lost,
        EndOutcome::Refused { status: Some(404) },
        EndOutcome::Closed,
    ] {
        let error = reader_end(outcome.clone()).expect_err("not clean");
        assert!(matches!(&error, Error::Channel(o) if *o == outcome));
        assert!(!error.to_string().is_empty());
        let io: std::io::Error = error.into();
        assert!(io.get_ref().is_some());
    }
    let refused = Error::Channel(EndOutcome::Refused { status: Some(404) });
    assert!(refused.to_string().contains("404"), "{refused}");
}

#[test]
fn handler_errors_become_error_bodies() {
    assert_eq!("boom".into_error_body().code, INVOCATION_FAILED);
    assert_eq!(String::from("boom").into_error_body().message, "boom");
    let remote = ErrorBody::new("custom", "kept");
    assert_eq!(Error::Remote(remote.clone()).into_error_body(), remote);
    assert_eq!(Error::Timeout.into_error_body().code, INVOCATION_FAILED);
    assert_eq!(
        Error::from(RegisterError::Stopped).into_error_body().code,
        INVOCATION_FAILED
    );
}

#[test]
fn anyhow_and_boxed_errors_are_handler_errors() {
    use anyhow::Context as _;
    // As handlers write them: `?` on anything, with context.
    let with_anyhow = erase(|input: Value| async move {
        let n: u32 = serde_json::from_value(input).context("`n` must be a number")?;
        Ok::<_, anyhow::Error>(json!(n))
    });
    let boxed = erase(|input: Value| async move {
        let n: u32 = serde_json::from_value(input)?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(json!(n))
    });
    futures_executor_lite(async move {
        let failed = run_handler(with_anyhow, json!("x"), invocation())
            .await
            .expect_err("not a number");
        assert_eq!(failed.code, INVOCATION_FAILED);
        assert!(
            failed
                .message
                .starts_with("`n` must be a number: invalid type"),
            "{}",
            failed.message
        );
        let failed = run_handler(boxed, json!("x"), invocation())
            .await
            .expect_err("not a number");
        assert!(
            failed.message.starts_with("invalid type"),
            "{}",
            failed.message
        );
    });
}

#[test]
fn results_parse_with_absent_as_null() {
    let value: Value = parse_result(None).expect("null");
    assert_eq!(value, Value::Null);
    let raw = serde_json::value::to_raw_value(&json!({"a": 1})).expect("raw");
    let value: Value = parse_result(Some(&raw)).expect("object");
    assert_eq!(value, json!({"a": 1}));
    assert!(matches!(
        parse_result::<u32>(Some(&raw)),
        Err(Error::Json(_))
    ));
}

#[test]
fn wrapped_handlers_report_bad_input_errors_and_panics() {
    #[derive(serde::Deserialize, serde::Serialize)]
    struct In {
        n: i64,
    }
    let typed = erase_typed(|input: In| async move { Ok::<_, String>(input.n + 1) });
    let plain = erase(|input: Value| async move {
        if input.is_null() {
            panic!("handler bug");
        }
        Err::<Value, _>("refused")
    });
    futures_executor_lite(async move {
        assert_eq!(
            run_handler(typed.clone(), json!({"n": 1}), invocation()).await,
            Ok(json!(2))
        );
        let bad = run_handler(typed, json!({"n": "x"}), invocation())
            .await
            .expect_err("bad");
        assert_eq!(bad.code, DESERIALIZATION_ERROR);
        let refused = run_handler(plain.clone(), json!(1), invocation())
            .await
            .expect_err("err");
        assert_eq!(
            (refused.code.as_str(), refused.message.as_str()),
            (INVOCATION_FAILED, "refused")
        );
        let panicked = run_handler(plain, Value::Null, invocation())
            .await
            .expect_err("panic");
        assert_eq!(panicked.code, INVOCATION_FAILED);
        assert_eq!(panicked.message, "the handler of `f` panicked: handler bug");
        let formatted = erase(|input: Value| async move {
            panic!("bad input {input}");
            #[allow(unreachable_code)]
            Ok::<_, String>(input)
        });
        let panicked = run_handler(formatted, json!(7), invocation())
            .await
            .expect_err("panic");
        assert_eq!(panicked.message, "the handler of `f` panicked: bad input 7");
    });
}

#[test]
fn the_engines_caller_keys_leave_the_input_for_the_invocation() {
    let mut input = json!({
        "x": 1,
        "_caller_worker_id": "w-1",
        "_caller_context": {"tenant": "acme"},
        "_caller_other": true,
        "inner": {"_caller_worker_id": "kept"},
    });
    let caller = super::CallerKeys::take_from(&mut input);
    assert_eq!(
        input,
        json!({"x": 1, "inner": {"_caller_worker_id": "kept"}})
    );
    assert_eq!(caller.worker_id(), Some("w-1"));
    assert_eq!(caller.context(), Some(&json!({"tenant": "acme"})));
    assert_eq!(caller.get("_caller_other"), Some(&json!(true)));
    for other in [json!([{"_caller_worker_id": "w"}]), json!("s"), Value::Null] {
        let mut input = other.clone();
        assert_eq!(super::CallerKeys::take_from(&mut input), Default::default());
        assert_eq!(input, other);
    }
}

/// Runs a future that never waits on anything external to completion.
fn futures_executor_lite<F: std::future::Future<Output = ()>>(future: F) {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(()) = future.as_mut().poll(&mut cx) {
            return;
        }
    }
    panic!("the future did not complete");
}

fn invocation() -> super::Invocation {
    super::Invocation {
        invocation_id: "6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60".into(),
        function_id: "f".into(),
        metadata: None,
        trace: super::TraceContext::default(),
        caller: super::CallerKeys::default(),
    }
}
