//! The engine server over real loopback sockets, driven by raw WebSocket clients.

use std::time::Duration;

use async_tungstenite::tokio::connect_async;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::{SinkExt, StreamExt};
use iii_tokio::engine::{bind, EngineServer, EngineSettings};
use serde_json::{json, Value};

async fn engine(settings: EngineSettings) -> EngineServer {
    bind("127.0.0.1:0", settings).await.expect("bind")
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("timely")
        {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("json"),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// Reads until the Close frame (skipping data), within 10 s.
async fn next_close<S>(ws: &mut S) -> Option<async_tungstenite::tungstenite::protocol::CloseFrame>
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timely")
        {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

type Control = async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream>;

/// An engine, a control connection past its greeting, and the refs of a new channel.
async fn engine_with_channel(settings: EngineSettings) -> (EngineServer, Control, Value) {
    let server = engine(settings).await;
    let (mut control, _) = connect_async(server.url()).await.expect("connect");
    next_json(&mut control).await;
    let refs = create_channel(&mut control).await;
    (server, control, refs)
}

fn status_of(result: Result<impl std::fmt::Debug, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

fn end_url(server: &EngineServer, r: &Value) -> String {
    format!(
        "{}/ws/channels/{}?key={}&dir={}",
        server.url(),
        r["channel_id"].as_str().unwrap_or(""),
        r["access_key"].as_str().unwrap_or(""),
        r["direction"].as_str().unwrap_or("")
    )
}

async fn create_channel<S>(control: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, WsError>>
        + futures_util::Sink<Message, Error = WsError>
        + Unpin,
{
    let call = json!({"type": "invokefunction", "invocation_id": "6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60",
        "function_id": "engine::channels::create", "data": {}});
    control
        .send(Message::text(call.to_string()))
        .await
        .expect("send");
    next_json(control).await["result"].clone()
}

#[tokio::test]
async fn control_connection_is_greeted_and_answers_ping() {
    let server = engine(EngineSettings::default()).await;
    let (mut ws, response) = connect_async(server.url()).await.expect("connect");
    assert_eq!(response.status().as_u16(), 101);
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "workerregistered");
    ws.send(Message::text(r#"{"type":"ping"}"#))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}));
    server.shutdown().await;
}

#[tokio::test]
async fn bad_urls_are_refused_before_the_upgrade() {
    let server = engine(EngineSettings::default()).await;
    let base = server.url();
    assert_eq!(status_of(connect_async(format!("{base}/nope")).await), 404);
    assert_eq!(
        status_of(connect_async(format!("{base}/ws/channels/x?key=k")).await),
        400
    );
    assert_eq!(
        status_of(connect_async(format!("{base}/ws/channels/x?key=k&dir=sideways")).await),
        400
    );
    assert_eq!(
        status_of(connect_async(format!("{base}/ws/channels/x?key=k&dir=read")).await),
        404
    );
    assert!(connect_async(format!("{base}/otel")).await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let mut settings = EngineSettings::default();
    settings.core.auth_token = Some("s3cret".into());
    let server = engine(settings).await;
    assert_eq!(status_of(connect_async(server.url()).await), 401);
    let mut request = server.url().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Authorization", "Bearer s3cret".parse().expect("header"));
    assert!(connect_async(request).await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn a_channel_relays_in_order_and_ends_cleanly() {
    let (server, _control, refs) = engine_with_channel(EngineSettings::default()).await;
    let (mut writer, _) = connect_async(end_url(&server, &refs["writer"]))
        .await
        .expect("writer");
    let payload: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    for chunk in payload.chunks(64 * 1024) {
        writer
            .send(Message::binary(chunk.to_vec()))
            .await
            .expect("write");
    }
    writer.send(Message::text("done")).await.expect("text");
    // The writer closes before the reader even exists: data and end are kept.
    writer.close(None).await.expect("close");
    let (mut reader, _) = connect_async(end_url(&server, &refs["reader"]))
        .await
        .expect("reader");
    let mut received = Vec::new();
    let mut texts = Vec::new();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .expect("timely")
        {
            Some(Ok(Message::Binary(bytes))) => received.extend_from_slice(&bytes),
            Some(Ok(Message::Text(text))) => texts.push((received.len(), text.to_string())),
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(received, payload);
    assert_eq!(texts, vec![(payload.len(), "done".to_owned())]);
    assert!(close.is_none(), "clean end: a Close without a code");
    // The spent ref is refused.
    assert_eq!(
        status_of(connect_async(end_url(&server, &refs["reader"])).await),
        404
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_writer_that_vanishes_fails_the_reader_with_1011() {
    let (server, _control, refs) = engine_with_channel(EngineSettings::default()).await;
    let (mut reader, _) = connect_async(end_url(&server, &refs["reader"]))
        .await
        .expect("reader");
    let (mut writer, _) = connect_async(end_url(&server, &refs["writer"]))
        .await
        .expect("writer");
    writer
        .send(Message::binary(vec![1u8; 1000]))
        .await
        .expect("write");
    drop(writer); // no Close frame
    let close = next_close(&mut reader).await;
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1011));
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_channel_message_closes_the_writer_1009_and_the_reader_1011() {
    let mut settings = EngineSettings::default();
    settings.core.max_channel_message_bytes = 64 * 1024;
    let (server, mut control, refs) = engine_with_channel(settings).await;
    let (mut reader, _) = connect_async(end_url(&server, &refs["reader"]))
        .await
        .expect("reader");
    for size in [64 * 1024 + 1, 1 << 20] {
        // Just over the limit reaches the core; far over it is cut off by the WebSocket
        // layer. Both must end the same way.
        let (mut writer, _) = match connect_async(end_url(&server, &refs["writer"])).await {
            Ok(ws) => ws,
            Err(_) => break, // the first round spent the writer ref
        };
        writer
            .send(Message::binary(vec![0u8; size]))
            .await
            .expect("write");
        let close = next_close(&mut writer).await;
        assert_eq!(close.map(|f| u16::from(f.code)), Some(1009), "size {size}");
    }
    let close = next_close(&mut reader).await;
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1011));
    // The WebSocket layer's cut-off, on a fresh channel.
    let refs = create_channel(&mut control).await;
    let (mut writer, _) = connect_async(end_url(&server, &refs["writer"]))
        .await
        .expect("writer");
    writer
        .send(Message::binary(vec![0u8; 1 << 20]))
        .await
        .expect("write");
    let close = next_close(&mut writer).await;
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1009));
    server.shutdown().await;
}

#[tokio::test]
async fn a_paused_writer_whose_reader_leaves_gets_1001_and_a_clean_close() {
    let mut settings = EngineSettings::default();
    settings.core.channel_buffer_bytes = 256 * 1024;
    settings.core.max_channel_message_bytes = 64 * 1024;
    settings.core.read_ahead_bytes = 64 * 1024;
    let (server, _control, refs) = engine_with_channel(settings).await;
    let (mut reader, _) = connect_async(end_url(&server, &refs["reader"]))
        .await
        .expect("reader");
    let (writer, _) = connect_async(end_url(&server, &refs["writer"]))
        .await
        .expect("writer");
    let (mut sink, mut stream) = writer.split();
    // Far more than the channel and the sockets hold while the reader reads nothing: the
    // engine pauses the writer and data waits unread in its socket.
    let flood = tokio::spawn(async move {
        for _ in 0..512 {
            if sink
                .send(Message::binary(vec![3u8; 64 * 1024]))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    reader.close(None).await.expect("reader closes");
    let close = next_close(&mut stream).await;
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    // The engine reads past the unread data to our Close reply and ends the connection
    // cleanly: no reset.
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the connection ends");
    assert!(
        matches!(end, None | Some(Err(WsError::ConnectionClosed))),
        "expected a clean end, got {end:?}"
    );
    flood.abort();
    server.shutdown().await;
}
