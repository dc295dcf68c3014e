//! The machine's limit with the engine's own WebSocket library: a raw one-hop stream
//! (client → server) and a raw relay (client → relay → server) that forwards each
//! message as the same `Bytes`, like the engine does. Everything on 127.0.0.1.

use std::time::Instant;

use async_tungstenite::tokio::accept_async;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use serde_json::json;
use tokio::net::TcpListener;

use crate::raw;
use crate::scenarios::{pool, verify, Fields};
use crate::{BoxError, Opts, CHUNK};

const MIB: f64 = 1024.0 * 1024.0;

async fn listen() -> Result<(TcpListener, String), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}", listener.local_addr()?);
    Ok((listener, url))
}

async fn accept(listener: &TcpListener) -> Result<raw::Ws, BoxError> {
    let (tcp, _) = listener.accept().await?;
    tcp.set_nodelay(true)?;
    Ok(accept_async(tcp).await?)
}

/// A server that reads `n` streams, checks them and returns the byte counts.
async fn server(listener: TcpListener, n: usize) -> Result<Vec<u64>, BoxError> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut ws = accept(&listener).await?;
        tasks.push(tokio::spawn(async move {
            let mut received = 0u64;
            while let Some(chunk) = raw::next_binary(&mut ws).await? {
                verify(received, &chunk)?;
                received += chunk.len() as u64;
            }
            Ok::<_, BoxError>(received)
        }));
    }
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await??);
    }
    Ok(counts)
}

/// A relay: every accepted client gets its own upstream connection to `upstream`;
/// messages are forwarded unchanged (same `Bytes`), Close included.
async fn relay(listener: TcpListener, upstream: String, n: usize) -> Result<(), BoxError> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut down = accept(&listener).await?;
        let mut up = raw::dial(&upstream).await?;
        tasks.push(tokio::spawn(async move {
            while let Some(message) = down.next().await {
                match message? {
                    Message::Close(frame) => {
                        up.close(frame).await?;
                        while let Some(Ok(_)) = up.next().await {}
                        break;
                    }
                    m @ (Message::Binary(_) | Message::Text(_)) => up.send(m).await?,
                    _ => {}
                }
            }
            Ok::<_, BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Sends `total` bytes split over `n` streams to `url` (directly or through a relay);
/// returns MiB/s measured until the server has every byte.
async fn run(n: usize, total: u64, through_relay: bool) -> Result<f64, BoxError> {
    let per = (total / n as u64) / CHUNK as u64 * CHUNK as u64;
    let (server_listener, server_url) = listen().await?;
    let server_task = tokio::spawn(server(server_listener, n));
    let url = if through_relay {
        let (relay_listener, relay_url) = listen().await?;
        tokio::spawn(relay(relay_listener, server_url, n));
        relay_url
    } else {
        server_url
    };
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(raw::dial(&url).await?);
    }
    let pool = pool();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut ws in clients {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per / CHUNK as u64 {
                raw::write(&mut ws, pool[(i % 16) as usize].clone()).await?;
            }
            raw::close(&mut ws).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let counts = server_task.await??;
    let secs = start.elapsed().as_secs_f64();
    if counts.iter().any(|&c| c != per) {
        return Err(format!("server got {counts:?}, expected {per} each").into());
    }
    Ok(per as f64 * n as f64 / MIB / secs)
}

/// `limit`: one-hop and relay, one stream and 8 streams (total `--bytes` each run).
pub async fn limit(o: &Opts) -> Result<Fields, BoxError> {
    let mut f = Fields::new();
    f.insert("bytes".into(), json!(o.bytes));
    let round = |x: f64| (x * 10.0).round() / 10.0;
    f.insert(
        "onehop_one_mib_s".into(),
        json!(round(run(1, o.bytes, false).await?)),
    );
    f.insert(
        "relay_one_mib_s".into(),
        json!(round(run(1, o.bytes, true).await?)),
    );
    f.insert(
        "relay_eight_mib_s".into(),
        json!(round(run(8, o.bytes, true).await?)),
    );
    Ok(f)
}
