//! What the end-to-end tests share: an in-process engine on loopback, a backend worker
//! serving the functions the commands call, the real `iii` binary, and a deterministic
//! byte stream to check transfers with SHA-256.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iii_tokio::worker::{
    connect, extract_channel_refs, ChannelReader, ChannelRef, ChannelWriter, Direction, Error,
    ErrorBody, Iii, TriggerHandler, TriggerRequest, WorkerOptions,
};
use iii_tokio::{EngineServer, EngineSettings};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::mpsc;

/// The longest any single command may take before the test fails.
pub(crate) const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// An engine on an ephemeral loopback port, stopped when dropped.
pub(crate) struct Engine {
    /// `ws://127.0.0.1:<port>`.
    pub(crate) url: String,
    _server: EngineServer,
}

impl Engine {
    /// An engine with default settings.
    pub(crate) async fn start() -> Engine {
        Self::with(EngineSettings::default()).await
    }

    /// An engine that requires `token`.
    pub(crate) async fn with_token(token: &str) -> Engine {
        let mut settings = EngineSettings::default();
        settings.core.auth_token = Some(token.to_owned());
        Self::with(settings).await
    }

    async fn with(settings: EngineSettings) -> Engine {
        let server = iii_tokio::bind("127.0.0.1:0", settings)
            .await
            .expect("bind an engine on loopback");
        Engine {
            url: server.url(),
            _server: server,
        }
    }
}

/// A worker connected to `url` as `name`.
pub(crate) async fn worker(url: &str, name: &str, token: Option<&str>) -> Iii {
    let iii = connect(WorkerOptions {
        url: Some(url.to_owned()),
        name: Some(name.to_owned()),
        token: token.map(str::to_owned),
        ..WorkerOptions::default()
    })
    .expect("valid options");
    iii.wait_connected(Duration::from_secs(10))
        .await
        .expect("worker connected");
    iii
}

/// The worker serving the test functions, and what they saw.
pub(crate) struct Backend {
    /// The worker.
    pub(crate) iii: Iii,
    /// Inputs of `test.record` calls, in order.
    pub(crate) recorded: mpsc::UnboundedReceiver<Value>,
    /// How each channel the functions used ended: `ok` or `error: …`.
    pub(crate) outcomes: Arc<Mutex<Vec<String>>>,
}

/// The backend's worker name.
pub(crate) const BACKEND: &str = "cli-test-backend";

/// The functions every test can call.
pub(crate) const FUNCTIONS: [&str; 6] = [
    "test.echo",
    "test.fail",
    "test.sleep",
    "test.record",
    "files.hash",
    "files.generate",
];

impl Backend {
    /// Connects the backend to `url`, registers its functions and waits until the
    /// engine lists them.
    pub(crate) async fn start(url: &str) -> Backend {
        Self::start_with_token(url, None).await
    }

    /// [`Backend::start`] for an engine that requires `token`.
    pub(crate) async fn start_with_token(url: &str, token: Option<&str>) -> Backend {
        let iii = worker(url, BACKEND, token).await;
        let (record, recorded) = mpsc::unbounded_channel();
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        iii.register_function("test.echo", |input: Value| async move {
            Ok::<_, Error>(input["value"].clone())
        })
        .expect("register");
        iii.register_function("test.fail", |_input: Value| async move {
            Err::<Value, _>(ErrorBody::new("bad_input", "the input was rejected"))
        })
        .expect("register");
        iii.register_function("test.sleep", |input: Value| async move {
            let ms = input["ms"].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, Error>(json!({ "slept": ms }))
        })
        .expect("register");
        iii.register_function("test.record", move |mut input: Value| {
            let record = record.clone();
            async move {
                if let Some(object) = input.as_object_mut() {
                    object.remove("_caller_worker_id");
                }
                let _ = record.send(input);
                Ok::<_, Error>(Value::Null)
            }
        })
        .expect("register");
        let (me, log) = (iii.clone(), outcomes.clone());
        iii.register_function("files.hash", move |input: Value| {
            hash_function(me.clone(), log.clone(), input)
        })
        .expect("register");
        let (me, log) = (iii.clone(), outcomes.clone());
        iii.register_function("files.generate", move |input: Value| {
            generate_function(me.clone(), log.clone(), input)
        })
        .expect("register");
        iii.register_trigger_type("test.tick", "Fires on test ticks", NoTriggers)
            .expect("register trigger type");
        for function in FUNCTIONS {
            wait_listed(&iii, function).await;
        }
        Backend {
            iii,
            recorded,
            outcomes,
        }
    }

    /// The channel outcomes logged so far.
    pub(crate) fn outcomes(&self) -> Vec<String> {
        self.outcomes.lock().expect("outcomes").clone()
    }

    /// Waits (at most 10 s) until a channel outcome is logged and returns it.
    pub(crate) async fn next_outcome(&self, seen: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(outcome) = self.outcomes().get(seen) {
                return outcome.clone();
            }
            assert!(Instant::now() < deadline, "no channel outcome logged");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Refuses nothing and binds nothing: only there to be listed.
struct NoTriggers;

type Reply = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ErrorBody>> + Send>>;

impl TriggerHandler for NoTriggers {
    fn register(&self, _request: TriggerRequest) -> Reply {
        Box::pin(async { Ok(()) })
    }
    fn unregister(&self, _request: TriggerRequest) -> Reply {
        Box::pin(async { Ok(()) })
    }
}

/// Waits until the engine lists `function` (registration is asynchronous).
pub(crate) async fn wait_listed(iii: &Iii, function: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = iii
            .trigger("engine::functions::list", json!({ "prefix": function }))
            .await
            .expect("list functions");
        let listed = list["functions"]
            .as_array()
            .is_some_and(|l| l.iter().any(|f| f["function_id"] == function));
        if listed {
            return;
        }
        assert!(Instant::now() < deadline, "{function} never listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first channel ref of `direction` in `input`, with its path.
fn channel_ref(input: &Value, direction: Direction) -> Result<(String, ChannelRef), ErrorBody> {
    extract_channel_refs(input)
        .into_iter()
        .find(|(_, r)| r.direction == direction)
        .ok_or_else(|| ErrorBody::new("bad_input", "no channel ref in the input"))
}

fn log(outcomes: &Mutex<Vec<String>>, outcome: String) {
    outcomes.lock().expect("outcomes").push(outcome);
}

/// `files.hash`: reads the channel whose reader ref is anywhere in the input; answers
/// `{bytes, sha256, label, field}` (`field`: where the ref was). `delay_ms` sleeps after every chunk (a slow reader).
async fn hash_function(
    iii: Iii,
    outcomes: Arc<Mutex<Vec<String>>>,
    input: Value,
) -> Result<Value, ErrorBody> {
    let (field, reader_ref) = channel_ref(&input, Direction::Read)?;
    let mut reader = ChannelReader::new(&iii, &reader_ref);
    let delay = Duration::from_millis(input["delay_ms"].as_u64().unwrap_or(0));
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    loop {
        match reader.next_binary().await {
            Ok(Some(chunk)) => {
                hasher.update(&chunk);
                bytes += chunk.len() as u64;
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            Ok(None) => break,
            Err(error) => {
                log(&outcomes, format!("error: {error}"));
                return Err(ErrorBody::new("read_failed", error.to_string()));
            }
        }
    }
    log(&outcomes, "ok".into());
    Ok(json!({
        "bytes": bytes,
        "sha256": hex(&hasher.finalize()),
        "label": input["label"],
        "field": field,
    }))
}

/// `files.generate`: writes `bytes` bytes of [`Pattern`] `seed` into the channel whose
/// writer ref is in the input, a text message `at <offset>` every `message_every` bytes,
/// then closes; answers `{bytes, sha256}`. `abort_after`: aborts after that many bytes
/// and answers `{aborted: true}`. `endless`: writes until the channel fails.
async fn generate_function(
    iii: Iii,
    outcomes: Arc<Mutex<Vec<String>>>,
    input: Value,
) -> Result<Value, ErrorBody> {
    let writer = ChannelWriter::new(&iii, &channel_ref(&input, Direction::Write)?.1);
    let endless = input["endless"].as_bool().unwrap_or(false);
    let total = input["bytes"].as_u64().unwrap_or(0);
    let abort_after = input["abort_after"].as_u64();
    let message_every = input["message_every"].as_u64().unwrap_or(0);
    let mut pattern = Pattern::new(input["seed"].as_u64().unwrap_or(1));
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 100_000];
    let mut written = 0u64;
    let mut next_message = message_every;
    while endless || written < total {
        let mut n = chunk.len() as u64;
        if !endless {
            n = n.min(total - written);
        }
        if message_every > 0 {
            n = n.min(next_message - written);
        }
        let n = n as usize;
        pattern.fill(&mut chunk[..n]);
        if let Err(error) = writer.write(&chunk[..n]).await {
            log(&outcomes, format!("error: {error}"));
            return Err(ErrorBody::new("write_failed", error.to_string()));
        }
        hasher.update(&chunk[..n]);
        written += n as u64;
        if message_every > 0 && written >= next_message {
            let sent = writer.send_message(&format!("at {written}")).await;
            sent.map_err(|e| ErrorBody::new("write_failed", e.to_string()))?;
            next_message += message_every;
        }
        if abort_after.is_some_and(|limit| written >= limit) {
            writer.abort();
            log(&outcomes, "aborted".into());
            return Ok(json!({ "aborted": true }));
        }
    }
    writer
        .close()
        .await
        .map_err(|e| ErrorBody::new("close_failed", e.to_string()))?;
    log(&outcomes, "ok".into());
    Ok(json!({ "bytes": written, "sha256": hex(&hasher.finalize()) }))
}

/// A deterministic byte stream (xorshift64*), the same for a seed whatever the chunking.
pub(crate) struct Pattern {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Pattern {
    /// The stream of `seed`.
    pub(crate) fn new(seed: u64) -> Pattern {
        Pattern {
            state: seed.max(1),
            word: [0; 8],
            used: 8,
        }
    }

    /// The next `buf.len()` bytes.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf {
            if self.used == 8 {
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.word = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
                self.used = 0;
            }
            *byte = self.word[self.used];
            self.used += 1;
        }
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 (hex) of `len` bytes of pattern `seed`, written to `path` as well when
/// given.
pub(crate) fn pattern_file(seed: u64, len: u64, path: Option<&std::path::Path>) -> String {
    use std::io::Write;
    let mut file = path.map(|p| std::io::BufWriter::new(std::fs::File::create(p).expect("create")));
    let mut pattern = Pattern::new(seed);
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = chunk.len().min(left as usize);
        pattern.fill(&mut chunk[..n]);
        hasher.update(&chunk[..n]);
        if let Some(file) = file.as_mut() {
            file.write_all(&chunk[..n]).expect("write");
        }
        left -= n as u64;
    }
    if let Some(mut file) = file {
        file.flush().expect("flush");
    }
    hex(&hasher.finalize())
}

/// `iii --url <url> <args>`, with piped standard streams (so no progress bar).
pub(crate) fn iii(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iii"));
    command
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("III_URL")
        .env_remove("III_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// What a finished command did.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Its exit status (`None`: killed by a signal).
    pub(crate) code: Option<i32>,
    /// Standard output.
    pub(crate) stdout: Vec<u8>,
    /// Standard error.
    pub(crate) stderr: String,
    /// How long it ran.
    pub(crate) elapsed: Duration,
}

impl Outcome {
    /// Standard output as text.
    pub(crate) fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard output as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// Runs `command` to the end (at most [`COMMAND_LIMIT`]), feeding it `stdin`.
pub(crate) async fn run(command: Command, stdin: Option<&[u8]>) -> Outcome {
    run_measured(command, stdin).await.0
}

/// [`run`], also returning the command's peak resident memory in bytes (`VmHWM`, read
/// from /proc while it runs; 0 where there is no /proc).
pub(crate) async fn run_measured(mut command: Command, stdin: Option<&[u8]>) -> (Outcome, u64) {
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let start = Instant::now();
    let mut child = command.spawn().expect("spawn iii");
    let pid = child.id().expect("a running child");
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        tokio::spawn(async move {
            let _ = pipe.write_all(&data).await;
        });
    }
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            while let Some(bytes) = peak_rss(pid) {
                peak.fetch_max(bytes, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let output = tokio::time::timeout(COMMAND_LIMIT, child.wait_with_output())
        .await
        .expect("iii finished in time")
        .expect("iii ran");
    sampler.abort();
    let outcome = Outcome {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: start.elapsed(),
    };
    (outcome, peak.load(std::sync::atomic::Ordering::Relaxed))
}

/// The peak resident memory of live process `pid`, in bytes (`None` once it is gone).
pub(crate) fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// The size of the big transfers.
pub(crate) const BIG: u64 = 256 << 20;

/// What `iii send` or `iii recv` may hold, whatever the stream's size: the runtime, the
/// SDK's window (1 MiB) and a chunk, with room for the allocator. A command that
/// buffered the stream would need more than [`BIG`].
const MEMORY_LIMIT: u64 = 32 << 20;

/// Asserts that `iii <command>` moved [`BIG`] bytes within [`MEMORY_LIMIT`] (where
/// /proc tells), and prints its rate and peak memory.
pub(crate) fn assert_constant_memory(command: &str, out: &Outcome, peak: u64) {
    if cfg!(target_os = "linux") {
        assert!(peak > 0, "the peak RSS was measured");
        assert!(
            peak < MEMORY_LIMIT,
            "iii {command} held {} MiB moving {} MiB",
            peak >> 20,
            BIG >> 20
        );
    }
    eprintln!(
        "iii {command}: {} MiB in {:.2?} ({:.0} MiB/s), peak RSS {:.1} MiB",
        BIG >> 20,
        out.elapsed,
        (BIG >> 20) as f64 / out.elapsed.as_secs_f64(),
        peak as f64 / f64::from(1 << 20)
    );
}

/// Sends SIGINT (what Ctrl-C sends) to process `pid`.
pub(crate) fn interrupt(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -INT {pid} failed");
}

/// A scratch directory removed when dropped.
pub(crate) fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("iii-cli-test")
        .tempdir()
        .expect("scratch directory")
}
