//! A window of requests in flight on one raw WebSocket: at most `in_flight` requests are
//! outstanding, a new one is queued as soon as one completes, and the socket is flushed
//! only when no further message can be read at once (a burst of answers costs one flush,
//! not one per message). Serves control pings (`idle_conns`) and checked calls (the raw
//! client of `latency` and `soak`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_util::{FutureExt, SinkExt, StreamExt};

use crate::raw::Ws;
use crate::BoxError;

/// One kind of request and answer.
pub trait Exchange {
    /// The message of request number `seq` (0, 1, ...), sent at `now`.
    fn request(&mut self, seq: u64, now: Instant) -> Message;
    /// Handles an incoming text message received at `now`; returns how many outstanding
    /// requests it completed.
    fn answer(&mut self, text: &str, now: Instant) -> Result<u64, BoxError>;
    /// Called about once a second: completes the requests outstanding for too long (as
    /// lost, returning how many), or fails when nothing has been answered for too long.
    fn sweep(&mut self, now: Instant) -> Result<u64, BoxError>;
}

/// When a pipeline stops sending new requests (it then waits for the outstanding ones).
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// After this many requests.
    Count(u64),
    /// At this instant.
    Deadline(Instant),
}

impl Until {
    fn more(self, sent: u64, now: Instant) -> bool {
        match self {
            Until::Count(n) => sent < n,
            Until::Deadline(at) => now < at,
        }
    }
}

/// What a pipeline did.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Requests sent.
    pub sent: u64,
    /// Requests completed (answered or swept).
    pub completed: u64,
    /// From the first request to the last completion.
    pub elapsed: Duration,
}

impl Run {
    /// Completed requests per second.
    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `exchange` on `ws` with `in_flight` requests outstanding until `until`, then
/// waits for the outstanding ones. Every completion is added to `progress`.
pub async fn pipeline<E: Exchange>(
    ws: &mut Ws,
    until: Until,
    in_flight: usize,
    exchange: &mut E,
    progress: &AtomicU64,
) -> Result<Run, BoxError> {
    let window = in_flight.max(1) as u64;
    let start = Instant::now();
    let (mut sent, mut completed) = (0u64, 0u64);
    let mut last = start;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        let now = Instant::now();
        while sent - completed < window && until.more(sent, now) {
            ws.feed(exchange.request(sent, now)).await?;
            sent += 1;
        }
        ws.flush().await?;
        if sent == completed {
            break;
        }
        let done = tokio::select! {
            message = ws.next() => {
                let mut done = handle(message, exchange)?;
                // Everything already readable, before the next flush.
                while let Some(message) = ws.next().now_or_never() {
                    done += handle(message, exchange)?;
                    let now = Instant::now();
                    while sent - (completed + done) < window && until.more(sent, now) {
                        ws.feed(exchange.request(sent, now)).await?;
                        sent += 1;
                    }
                }
                done
            }
            _ = tick.tick() => exchange.sweep(Instant::now())?,
        };
        if done > 0 {
            completed += done;
            last = Instant::now();
            progress.fetch_add(done, Ordering::Relaxed);
        }
    }
    Ok(Run {
        sent,
        completed,
        elapsed: last - start,
    })
}

fn handle<E: Exchange>(
    message: Option<Result<Message, async_tungstenite::tungstenite::Error>>,
    exchange: &mut E,
) -> Result<u64, BoxError> {
    match message {
        Some(Ok(Message::Text(text))) => exchange.answer(&text, Instant::now()),
        Some(Ok(Message::Close(frame))) => Err(format!("connection closed: {frame:?}").into()),
        Some(Ok(_)) => Ok(0),
        Some(Err(e)) => Err(e.into()),
        None => Err("connection ended".into()),
    }
}
