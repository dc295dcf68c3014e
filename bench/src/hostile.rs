//! `hostile`: `--hostile-conns` hostile connections against a child engine while a
//! bystander makes sequential `bench::echo` calls. The hostile connections take turns
//! between four attacks:
//!
//! * **pong flood**: a raw WebSocket with a 4 KiB receive buffer that never reads and
//!   sends 125-byte pings without pause (each one asks for a pong);
//! * **partial message**: a text frame announced as 63 MiB, of which up to
//!   `--hostile-partial-mib` MiB are sent, never finished;
//! * **slow channel reader**: a channel whose writer writes 64 KiB messages without
//!   pause while its reader (4 KiB receive buffer) never reads;
//! * **half-sent upgrade**: the first line of an upgrade request, then silence (again
//!   whenever the engine drops it).
//!
//! Measured: the engine's peak resident set (`VmHWM`) and its `VmRSS` sampled every
//! 50 ms, and the bystander's call latency alone and under attack. The run fails if the
//! bystander's p99 under attack is 50 ms or more, or the peak passes `--rss-ceiling-mib`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iii_core::channel::channel_url;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::raw::{self, Control};
use crate::scenarios::Fields;
use crate::shared::summary;
use crate::target::Target;
use crate::{BoxError, Opts};

/// The bystander's target p99 under attack.
const P99_TARGET_MS: f64 = 50.0;

/// What each hostile connection's task counts.
#[derive(Default)]
struct Tally {
    opened: [AtomicU64; 4],
    /// Connections the engine closed or dropped (the attack's socket failed or ended).
    cut: [AtomicU64; 4],
}

const KINDS: [&str; 4] = [
    "pong_flood",
    "partial_message",
    "slow_reader",
    "half_upgrade",
];

/// A TCP connection to `authority` with a 4 KiB receive buffer.
async fn small_window(authority: &str) -> Result<TcpStream, BoxError> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    Ok(socket.connect(authority.parse()?).await?)
}

/// Upgrades `tcp` to `path` by hand and reads exactly the response head.
async fn upgrade(tcp: &mut TcpStream, authority: &str, path: &str) -> Result<(), BoxError> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await?;
        head.push(byte[0]);
        if head.len() > 4096 {
            return Err("response head too long".into());
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(format!("not upgraded: {}", String::from_utf8_lossy(&head)).into());
    }
    Ok(())
}

/// A masked client frame header (zero mask) announcing `len` bytes.
fn header(first: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 4]);
    out
}

async fn pong_flood(authority: String, stop: Arc<AtomicBool>) -> Result<bool, BoxError> {
    let mut tcp = small_window(&authority).await?;
    upgrade(&mut tcp, &authority, "/").await?;
    let mut ping = header(0x89, 125);
    ping.extend_from_slice(&[b'p'; 125]);
    let burst = ping.repeat(256);
    while !stop.load(Ordering::Relaxed) {
        if tcp.write_all(&burst).await.is_err() {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn partial_message(
    authority: String,
    mib: u64,
    stop: Arc<AtomicBool>,
) -> Result<bool, BoxError> {
    let mut tcp = small_window(&authority).await?;
    upgrade(&mut tcp, &authority, "/").await?;
    tcp.write_all(&header(0x01, 63 << 20)).await?;
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..mib * 16 {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        if tcp.write_all(&chunk).await.is_err() {
            return Ok(true);
        }
    }
    // Hold it, never finished; an engine that cuts it ends the wait.
    let mut byte = [0u8; 1];
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(true),
            _ => {}
        }
    }
    Ok(false)
}

async fn slow_reader(
    url: String,
    control: Control,
    stop: Arc<AtomicBool>,
) -> Result<bool, BoxError> {
    let refs = control.create_channel().await?;
    let reader_url = channel_url(&url, &refs.reader);
    let rest = reader_url.strip_prefix("ws://").ok_or("not ws://")?;
    let (authority, path) = rest.split_at(rest.find('/').ok_or("no path")?);
    let mut reader = small_window(authority).await?;
    upgrade(&mut reader, authority, path).await?;
    let mut writer = raw::open_end(&url, &refs.writer).await?;
    let chunk = Bytes::from(vec![b'w'; 64 * 1024]);
    while !stop.load(Ordering::Relaxed) {
        // A paused writer waits here; the run's end drops it.
        match tokio::time::timeout(
            Duration::from_millis(200),
            writer.send(chunk.clone().into()),
        )
        .await
        {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(_)) => return Ok(true),
        }
    }
    drop(reader);
    Ok(false)
}

async fn half_upgrade(authority: String, stop: Arc<AtomicBool>) -> Result<bool, BoxError> {
    let mut dropped = false;
    while !stop.load(Ordering::Relaxed) {
        let mut tcp = TcpStream::connect(&authority).await?;
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await?;
        let mut byte = [0u8; 1];
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(dropped);
            }
            match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut byte)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Ok(Ok(_)) => {
                    dropped = true;
                    break;
                }
                Err(_) => {}
            }
        }
    }
    Ok(dropped)
}

/// Starts hostile connection `i` (its kind is `i % 4`).
fn spawn_hostile(
    i: usize,
    url: &str,
    control: &Control,
    o: &Opts,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> JoinHandle<()> {
    let kind = i % 4;
    let authority = url
        .strip_prefix("ws://")
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_owned();
    let (url, control, stop, tally) =
        (url.to_owned(), control.clone(), stop.clone(), tally.clone());
    let mib = o.hostile_partial_mib;
    tokio::spawn(async move {
        tally.opened[kind].fetch_add(1, Ordering::Relaxed);
        let outcome = match kind {
            0 => pong_flood(authority, stop).await,
            1 => partial_message(authority, mib, stop).await,
            2 => slow_reader(url, control, stop).await,
            _ => half_upgrade(authority, stop).await,
        };
        // A failure to connect or upgrade counts as cut too: the engine refused it.
        if !matches!(outcome, Ok(false)) {
            tally.cut[kind].fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Sequential echo calls until `until`; latencies in milliseconds.
async fn calls_until(control: &Control, until: Instant) -> Result<Vec<f64>, BoxError> {
    let mut samples = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        let payload = json!({"n": n});
        let start = Instant::now();
        let answer = control.call(crate::ECHO, payload.clone()).await?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
        // The engine may add `_caller_*` keys; the payload's own must come back.
        if answer["n"] != payload["n"] {
            return Err(format!("echo {n} answered {answer}").into());
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(samples)
}

/// `hostile`: see the module docs.
pub async fn hostile(target: &Target, o: &Opts) -> Result<Fields, BoxError> {
    if target.pid().is_none() {
        return Err("hostile measures the engine's RSS: use --spawn-engine".into());
    }
    let url = target.url();
    let callee = raw::serve(&url).await?;
    let bystander = Control::connect(&url).await?;
    let owner = Control::connect(&url).await?;
    let secs = Duration::from_secs_f64(o.hostile_secs);
    let alone = calls_until(&bystander, Instant::now() + secs / 4).await?;
    let rss_before = target.rss();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    let started = Instant::now();
    for i in 0..o.hostile_conns {
        tasks.push(spawn_hostile(i, &url, &owner, o, &stop, &tally));
        if i % 64 == 63 {
            tokio::task::yield_now().await;
        }
    }
    let sampling = {
        let stop = stop.clone();
        let pid = target.pid();
        tokio::spawn(async move {
            let mut max = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = pid.and_then(|p| crate::target::proc_status_kib(p, "VmRSS:")) {
                    max = max.max(kib);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            max
        })
    };
    let attacked = calls_until(&bystander, started + secs).await;
    let peak = target.peak_rss();
    let rss_end = target.rss();
    stop.store(true, Ordering::Relaxed);
    let sampled_max_kib = sampling.await.unwrap_or(0);
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
    callee.abort();
    let mut attacked = attacked?;
    let mut alone = alone;
    let kib = |b: Option<u64>| b.map(|b| b / 1024);
    let mut f = Fields::new();
    f.insert("hostile_conns".into(), json!(o.hostile_conns));
    f.insert("hostile_secs".into(), json!(o.hostile_secs));
    f.insert("partial_mib".into(), json!(o.hostile_partial_mib));
    for (k, name) in KINDS.iter().enumerate() {
        f.insert(
            format!("{name}_opened"),
            json!(tally.opened[k].load(Ordering::Relaxed)),
        );
        f.insert(
            format!("{name}_cut"),
            json!(tally.cut[k].load(Ordering::Relaxed)),
        );
    }
    f.insert("engine_rss_before_kib".into(), json!(kib(rss_before)));
    f.insert("engine_rss_max_sampled_kib".into(), json!(sampled_max_kib));
    f.insert("engine_rss_end_kib".into(), json!(kib(rss_end)));
    f.insert("engine_rss_peak_kib".into(), json!(kib(peak)));
    f.insert("calls_alone".into(), json!(alone.len()));
    f.insert("calls_attacked".into(), json!(attacked.len()));
    for (name, value) in summary(&mut alone) {
        f.insert(format!("alone_{name}_ms"), json!(value));
    }
    let attacked_summary = summary(&mut attacked);
    for (name, value) in attacked_summary {
        f.insert(format!("attacked_{name}_ms"), json!(value));
    }
    f.insert("rss_ceiling_mib".into(), json!(o.rss_ceiling_mib));
    let p99 = attacked_summary[2].1;
    let peak_mib = peak.unwrap_or(0) / (1 << 20);
    if p99.is_nan() || p99 >= P99_TARGET_MS {
        f.insert(
            "failed".into(),
            json!(format!("bystander p99 {p99} ms under attack")),
        );
    } else if peak_mib >= o.rss_ceiling_mib {
        f.insert(
            "failed".into(),
            json!(format!("engine RSS peak {peak_mib} MiB")),
        );
    }
    Ok(f)
}
