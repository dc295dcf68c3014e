//! The in-process clients behind one small interface: `ours` (the iii-rs worker SDK on
//! tokio) and `raw` (the protocol over async-tungstenite, see [`crate::raw`]). The third
//! client, `published`, runs out of process (see [`crate::published`]).

use std::time::Duration;

use bytes::Bytes;
use clap::ValueEnum;
use iii_tokio::worker::{self, ChannelReader, ChannelWriter, Iii, WorkerOptions};
use serde_json::{json, Value};

use crate::raw::{self, Ws};
use crate::{BoxError, ECHO, SINK};

/// Which client library drives the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// The iii-rs worker SDK (`iii_tokio::worker`).
    Ours,
    /// Raw async-tungstenite speaking the protocol directly.
    Raw,
    /// The published crates.io `iii-sdk` (=0.23.0-rc.4), in the separate
    /// `iii-bench-published` process (see [`crate::published`]).
    Published,
}

impl Kind {
    /// The name used in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Raw => "raw",
            Kind::Published => "published",
        }
    }
}

const OUT_OF_PROCESS: &str = "the published client runs in iii-bench-published";

/// One worker: a control connection and whatever channel ends it opens.
#[derive(Clone)]
pub enum Side {
    /// An SDK worker.
    Ours(Iii),
    /// A raw control connection (multiplexed) and the engine URL.
    Raw {
        /// The engine URL.
        url: String,
        /// The control connection.
        control: raw::Control,
    },
}

/// Connects an SDK worker and waits until the engine has registered it.
pub async fn ours_worker(url: &str, name: &str) -> Result<Iii, BoxError> {
    let iii = worker::connect(WorkerOptions {
        url: Some(url.to_owned()),
        name: Some(name.to_owned()),
        ..WorkerOptions::default()
    })?;
    iii.wait_connected(raw::STEP).await?;
    Ok(iii)
}

impl Side {
    /// Connects a worker of `kind` to `url`.
    pub async fn connect(kind: Kind, url: &str, name: &str) -> Result<Self, BoxError> {
        Ok(match kind {
            Kind::Ours => Side::Ours(ours_worker(url, name).await?),
            Kind::Raw => Side::Raw {
                url: url.to_owned(),
                control: raw::Control::connect(url).await?,
            },
            Kind::Published => return Err(OUT_OF_PROCESS.into()),
        })
    }

    /// Calls `function_id`.
    pub async fn call(&self, function_id: &str, data: Value) -> Result<Value, BoxError> {
        match self {
            Side::Ours(iii) => Ok(iii.trigger(function_id, data).await?),
            Side::Raw { control, .. } => control.call(function_id, data).await,
        }
    }

    /// Creates a channel here; the writer is this side's, the reader is opened on
    /// `reader_side` from its ref.
    pub async fn open_channel(&self, reader_side: &Side) -> Result<(Writer, Reader), BoxError> {
        match (self, reader_side) {
            (Side::Ours(iii), Side::Ours(other)) => {
                let channel = iii.create_channel(None).await?;
                let reader = ChannelReader::new(other, &channel.reader_ref);
                Ok((Writer::Ours(channel.writer), Reader::Ours(reader)))
            }
            (Side::Raw { url, control }, Side::Raw { .. }) => {
                let refs = control.create_channel().await?;
                let writer = raw::open_end(url, &refs.writer).await?;
                let reader = raw::open_end(url, &refs.reader).await?;
                Ok((Writer::Raw(Box::new(writer)), Reader::Raw(Box::new(reader))))
            }
            _ => Err("both sides must use the same client".into()),
        }
    }

    /// Stops the worker.
    pub async fn shutdown(self) {
        match self {
            Side::Ours(iii) => {
                let _ = tokio::time::timeout(Duration::from_secs(10), iii.shutdown()).await;
            }
            Side::Raw { .. } => {}
        }
    }
}

/// A callee serving [`ECHO`] and [`SINK`].
pub enum Callee {
    /// An SDK worker.
    Ours(Iii),
    /// A raw connection's task.
    Raw(tokio::task::JoinHandle<()>),
}

impl Callee {
    /// Starts a callee of `kind` and waits until both functions are callable from
    /// `caller`.
    pub async fn start(kind: Kind, url: &str, caller: &Side) -> Result<Self, BoxError> {
        let callee = match kind {
            Kind::Ours => {
                let iii = ours_worker(url, "bench-callee").await?;
                let reader_worker = iii.clone();
                iii.register_function(SINK, move |input: Value| {
                    let iii = reader_worker.clone();
                    async move {
                        let reader_ref = serde_json::from_value(input["reader"].clone())
                            .map_err(|e| e.to_string())?;
                        let mut reader = ChannelReader::new(&iii, &reader_ref);
                        let mut n = 0usize;
                        while let Some(chunk) =
                            reader.next_binary().await.map_err(|e| e.to_string())?
                        {
                            n += chunk.len();
                        }
                        Ok::<_, String>(json!({ "bytes": n }))
                    }
                })?;
                iii.register_function(ECHO, |input: Value| async move { Ok::<_, String>(input) })?;
                Callee::Ours(iii)
            }
            Kind::Raw => Callee::Raw(raw::serve(url).await?),
            Kind::Published => return Err(OUT_OF_PROCESS.into()),
        };
        // SINK is registered before ECHO on the same connection: ECHO callable means both.
        for attempt in 0.. {
            match caller.call(ECHO, json!({"probe": attempt})).await {
                Ok(_) => break,
                Err(_) if attempt < 100 => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return Err(format!("echo never became callable: {e}").into()),
            }
        }
        Ok(callee)
    }

    /// Stops the callee.
    pub async fn stop(self) {
        match self {
            Callee::Ours(iii) => {
                let _ = tokio::time::timeout(Duration::from_secs(10), iii.shutdown()).await;
            }
            Callee::Raw(task) => task.abort(),
        }
    }
}

/// The writing end of a channel.
pub enum Writer {
    /// SDK end.
    Ours(ChannelWriter),
    /// Raw WebSocket.
    Raw(Box<Ws>),
}

impl Writer {
    /// Writes one chunk (zero-copy where the client allows it).
    pub async fn write(&mut self, data: Bytes) -> Result<(), BoxError> {
        match self {
            Writer::Ours(w) => Ok(w.write_bytes(data).await?),
            Writer::Raw(ws) => raw::write(ws, data).await,
        }
    }

    /// Ends the stream cleanly.
    pub async fn close(&mut self) -> Result<(), BoxError> {
        match self {
            Writer::Ours(w) => Ok(w.close().await?),
            Writer::Raw(ws) => raw::close(ws).await,
        }
    }
}

/// The reading end of a channel.
pub enum Reader {
    /// SDK end.
    Ours(ChannelReader),
    /// Raw WebSocket.
    Raw(Box<Ws>),
}

impl Reader {
    /// The next binary chunk; `None` at a clean end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, BoxError> {
        match self {
            Reader::Ours(r) => match tokio::time::timeout(raw::STEP, r.next_binary()).await {
                Ok(chunk) => Ok(chunk?),
                Err(_) => Err("read timed out".into()),
            },
            Reader::Raw(ws) => raw::next_binary(ws).await,
        }
    }
}
