//! The engine on smol, over real loopback sockets, with raw WebSocket clients.

use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::StreamExt;
use iii_smol::{bind, EngineSettings};
use serde_json::Value;

#[test]
fn greeting_refusals_and_a_channel_on_smol() {
    smol::block_on(async {
        let server = bind("127.0.0.1:0", EngineSettings::default())
            .await
            .expect("bind");
        let addr = server.local_addr();
        let connect = move |path: String| async move {
            let tcp = smol::net::TcpStream::connect(addr).await.expect("tcp");
            async_tungstenite::client_async(format!("ws://{addr}{path}"), tcp).await
        };
        let (mut control, _) = connect("/".into()).await.expect("control");
        let Some(Ok(Message::Text(hello))) = control.next().await else {
            panic!("no greeting")
        };
        let hello: Value = serde_json::from_str(&hello).expect("json");
        assert_eq!(hello["type"], "workerregistered");
        match connect("/ws/channels/x?key=k&dir=read".into()).await {
            Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 404),
            other => panic!("expected 404, got {other:?}"),
        }
        let call = r#"{"type":"invokefunction","invocation_id":"6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60","function_id":"engine::channels::create","data":{}}"#;
        control.send(Message::text(call)).await.expect("send");
        let Some(Ok(Message::Text(answer))) = control.next().await else {
            panic!("no answer")
        };
        let refs: Value = serde_json::from_str(&answer).expect("json");
        let path = |r: &Value| {
            format!(
                "/ws/channels/{}?key={}&dir={}",
                r["channel_id"].as_str().unwrap_or(""),
                r["access_key"].as_str().unwrap_or(""),
                r["direction"].as_str().unwrap_or("")
            )
        };
        let (mut writer, _) = connect(path(&refs["result"]["writer"]))
            .await
            .expect("writer");
        let (mut reader, _) = connect(path(&refs["result"]["reader"]))
            .await
            .expect("reader");
        writer
            .send(Message::binary(vec![7u8; 100_000]))
            .await
            .expect("write");
        writer.close(None).await.expect("close");
        let mut received = 0;
        loop {
            match reader.next().await {
                Some(Ok(Message::Binary(b))) => received += b.len(),
                Some(Ok(Message::Close(frame))) => {
                    assert!(frame.is_none(), "clean end");
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, 100_000);
        server.shutdown().await;
    });
}
