//! Untrusted workers of the RBAC harness: the published Python and Node SDKs as peer
//! processes (`tests/interop/rbac_peer.{py,mjs}`, role `guest`) and our SDK in this
//! process, all serving the same `run` function (published as `<tenant>::run`).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iii_tokio::worker::{Error, Iii, WorkerOptions};
use serde_json::{json, Value};

use super::super::bytes::generate;
use super::super::log_tail;
use super::super::setup::{clients, Clients};
use super::{wait_callable, RbacHarness, READY};

/// The SDK a worker of the RBAC tests is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    /// PyPI `iii-sdk==0.25.0`.
    Python,
    /// npm `iii-sdk@0.22.1`.
    Node,
    /// Our worker SDK on tokio, in the test process.
    Ours,
}

impl Sdk {
    /// The short name in function ids (`rbac.<name>.auth`) and `auth_sdk`.
    pub fn name(self) -> &'static str {
        match self {
            Sdk::Python => "py025",
            Sdk::Node => "node",
            Sdk::Ours => "ours",
        }
    }

    /// What it is, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Sdk::Python => "Python iii-sdk 0.25.0",
            Sdk::Node => "Node iii-sdk 0.22.1",
            Sdk::Ours => "iii-rs worker on tokio",
        }
    }
}

/// How an untrusted worker presents its key.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `x-api-key: <key>` in the upgrade request, through the SDK's own option for
    /// handshake headers.
    Header(String),
    /// `?key=<key>` in the engine URL, as a browser would. The SDKs keep the engine
    /// URL's query on channel URLs and append the channel's own `key` after it: the
    /// engine takes the last one.
    Query(String),
    /// `cookie: theme=dark; session=<key>` in the upgrade request, through the SDK's
    /// option for handshake headers.
    Cookie(String),
}

impl Credential {
    /// The key.
    pub fn key(&self) -> &str {
        match self {
            Credential::Header(key) | Credential::Query(key) | Credential::Cookie(key) => key,
        }
    }

    /// The tenant an admitted key names (`good-<tenant>`).
    pub fn tenant(&self) -> String {
        let key = self.key();
        key.strip_prefix("good-").unwrap_or(key).to_owned()
    }

    /// `credential` as the authentication functions report it.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Header(_) => "header",
            Credential::Query(_) => "query",
            Credential::Cookie(_) => "cookie",
        }
    }

    /// The engine URL to dial.
    pub fn url(&self, base: &str) -> String {
        match self {
            Credential::Query(key) => format!("{base}/?key={key}"),
            _ => base.to_owned(),
        }
    }

    /// The handshake headers to send.
    pub fn headers(&self) -> Vec<(String, String)> {
        match self {
            Credential::Header(key) => vec![("x-api-key".to_owned(), key.clone())],
            Credential::Cookie(key) => {
                vec![("cookie".to_owned(), format!("theme=dark; session={key}"))]
            }
            Credential::Query(_) => Vec::new(),
        }
    }
}

/// A peer process, killed (SIGKILL) and reaped on drop; its stdin is a pipe it watches,
/// so it never outlives the test process.
pub(crate) struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `tests/interop/rbac_peer.{py,mjs}` of `sdk` connected to `url`, output in
    /// `.cache/interop/logs/<name>.<pid>.log`.
    pub(crate) fn spawn(
        clients: &Clients,
        sdk: Sdk,
        name: &str,
        url: &str,
        env: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let mut command = match sdk {
            Sdk::Python => {
                let mut command = Command::new(&clients.python_025);
                command.arg(clients.scripts().join("rbac_peer.py"));
                command
            }
            Sdk::Node => {
                let mut command = Command::new("node");
                command
                    .arg(clients.scripts().join("rbac_peer.mjs"))
                    .env("INTEROP_NODE_MODULES", &clients.node_modules);
                command
            }
            Sdk::Ours => return Err(std::io::Error::other("our SDK runs in-process")),
        };
        let log = clients
            .logs
            .join(format!("{name}.{}.log", std::process::id()));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        command
            .env("III_URL", url)
            .env("RBAC_SDK", sdk.name())
            .env("PYTHONUNBUFFERED", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err);
        Ok(Self {
            child: command.spawn()?,
            log,
        })
    }

    /// The log's path and its last lines.
    pub(crate) fn describe(&self) -> String {
        format!("{}\n{}", self.log.display(), log_tail(&self.log))
    }

    /// Waits for the process to exit by itself, at most `bound` (then kills it).
    async fn exited(&mut self, bound: Duration) -> Result<(), String> {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!("did not exit within {bound:?}"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Running {
    Process(Process),
    Ours(Iii),
}

/// An admitted untrusted worker serving `<tenant>::run`.
pub struct Guest {
    /// What it is written with.
    pub sdk: Sdk,
    /// Its tenant, which is also its registration prefix.
    pub tenant: String,
    running: Running,
}

impl Guest {
    /// The id trusted workers call it by (the engine added the prefix).
    pub fn run_id(&self) -> String {
        format!("{}::run", self.tenant)
    }

    /// Its log, for failure messages.
    pub fn describe(&self) -> String {
        match &self.running {
            Running::Process(process) => process.describe(),
            Running::Ours(_) => "(in this process)".to_owned(),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Running::Ours(iii) = &self.running {
            iii.shutdown_now();
        }
    }
}

/// What a refused worker saw.
#[derive(Debug)]
pub struct RefusedOutcome {
    /// The peer's `RESULT` line (`{state, states?, call_error}`); for our SDK
    /// `{wait_connected, error, call_error, state}`.
    pub result: Value,
    /// Its log (empty for our SDK).
    pub log: String,
}

impl RbacHarness {
    /// Starts an untrusted worker of `sdk` on RBAC listener `listener` with
    /// `credential` and waits until the driver can call its `<tenant>::run`.
    pub async fn start_guest(&self, sdk: Sdk, listener: usize, credential: Credential) -> Guest {
        let started = Instant::now();
        let url = credential.url(&self.url(listener));
        let tenant = credential.tenant();
        let running = match sdk {
            Sdk::Ours => {
                let iii = our_guest(&url, &credential)
                    .await
                    .unwrap_or_else(|e| panic!("our SDK as {tenant} was not admitted: {e}"));
                Running::Ours(iii)
            }
            _ => {
                let headers = Value::from_iter(
                    credential
                        .headers()
                        .into_iter()
                        .map(|(name, value)| (name, Value::from(value))),
                );
                let process = Process::spawn(
                    clients(),
                    sdk,
                    &format!("rbac-guest-{tenant}"),
                    &url,
                    &[
                        ("RBAC_ROLE", "guest"),
                        ("RBAC_HEADERS", &headers.to_string()),
                    ],
                )
                .unwrap_or_else(|e| panic!("could not start {}: {e}", sdk.label()));
                Running::Process(process)
            }
        };
        let guest = Guest {
            sdk,
            tenant,
            running,
        };
        let ping = wait_callable(self.driver(), &guest.run_id(), json!({"op": "ping"})).await;
        if let Err(e) = ping {
            panic!(
                "{} as {}: {e}\n--- log {}",
                sdk.label(),
                guest.tenant,
                guest.describe()
            );
        }
        eprintln!(
            "{} guest {} on listener {listener} ready in {:.1} s",
            sdk.label(),
            guest.tenant,
            started.elapsed().as_secs_f64()
        );
        guest
    }

    /// Has `guest` do `op` (its `run` function, called by the trusted driver).
    pub async fn run(&self, guest: &Guest, op: Value) -> Value {
        let run_id = guest.run_id();
        match self.driver().call(&run_id, op.clone(), super::CALL).await {
            Ok(answer) => answer,
            Err(e) => panic!("{run_id} {op}: {e}\n--- log {}", guest.describe()),
        }
    }

    /// Connects a worker of `sdk` with a `credential` the authentication function
    /// refuses and reports what it saw. Bounded: the peers give up after two retries
    /// and are killed if they have not exited within [`READY`].
    pub async fn refused(
        &self,
        sdk: Sdk,
        listener: usize,
        credential: Credential,
    ) -> RefusedOutcome {
        let url = credential.url(&self.url(listener));
        if sdk == Sdk::Ours {
            return our_refused(&url, &credential).await;
        }
        let headers = Value::from_iter(
            credential
                .headers()
                .into_iter()
                .map(|(name, value)| (name, Value::from(value))),
        );
        let name = format!("rbac-refused-{}-{}", sdk.name(), credential.kind());
        let mut process = Process::spawn(
            clients(),
            sdk,
            &name,
            &url,
            &[
                ("RBAC_ROLE", "guest"),
                ("RBAC_EXPECT", "refused"),
                ("RBAC_HEADERS", &headers.to_string()),
            ],
        )
        .unwrap_or_else(|e| panic!("could not start {}: {e}", sdk.label()));
        if let Err(e) = process.exited(READY).await {
            panic!(
                "refused {}: {e}\n--- log {}",
                sdk.label(),
                process.describe()
            );
        }
        let log = std::fs::read_to_string(&process.log).unwrap_or_default();
        let result = log
            .lines()
            .find_map(|line| line.strip_prefix("RESULT "))
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_else(|| panic!("refused {} printed no RESULT:\n{log}", sdk.label()));
        RefusedOutcome { result, log }
    }
}

/// Our SDK as an untrusted worker: the same `run` function as the peers.
async fn our_guest(url: &str, credential: &Credential) -> Result<Iii, Error> {
    let iii = iii_tokio::worker::connect(WorkerOptions {
        url: Some(url.to_owned()),
        name: Some(format!("rbac-guest-ours-{}", credential.tenant())),
        headers: credential.headers(),
        ..WorkerOptions::default()
    })?;
    let me = iii.clone();
    iii.register_function("run", move |data: Value| {
        let iii = me.clone();
        async move { run(&iii, data).await }
    })?;
    iii.wait_registered(READY).await?;
    Ok(iii)
}

async fn run(iii: &Iii, data: Value) -> Result<Value, Error> {
    match data["op"].as_str() {
        Some("ping") => Ok(json!({"sdk": "ours"})),
        Some("call") => Ok(call(
            iii,
            data["function_id"].as_str().unwrap_or(""),
            data["payload"].clone(),
        )
        .await),
        Some("channel") => {
            let size = data["size"].as_u64().unwrap_or(0) as usize;
            let payload = generate(data["seed"].as_u64().unwrap_or(0), size);
            let channel = iii.create_channel(None).await?;
            let writer = channel.writer;
            let write = async {
                for chunk in payload.chunks(100_000) {
                    writer.write(chunk).await?;
                }
                writer.close().await?;
                Ok::<_, Error>(size)
            };
            let reader_function = data["reader_function"].as_str().unwrap_or("");
            let read = call(iii, reader_function, json!({"reader": channel.reader_ref}));
            let (written, read) = tokio::join!(write, read);
            Ok(json!({"written": written?, "read": read}))
        }
        other => Err(Error::InvalidOption(format!("unknown op {other:?}"))),
    }
}

/// `{ok: result}` or `{error: {class, code, message}}`, like the peers' `call`.
async fn call(iii: &Iii, function_id: &str, payload: Value) -> Value {
    match iii.trigger(function_id, payload).await {
        Ok(result) => json!({"ok": result}),
        Err(Error::Remote(body)) => {
            json!({"error": {"class": "Error::Remote", "code": body.code, "message": body.message}})
        }
        Err(other) => {
            json!({"error": {"class": "other", "code": null, "message": other.to_string()}})
        }
    }
}

async fn our_refused(url: &str, credential: &Credential) -> RefusedOutcome {
    let mut options = WorkerOptions {
        url: Some(url.to_owned()),
        name: Some("rbac-refused-ours".into()),
        headers: credential.headers(),
        ..WorkerOptions::default()
    };
    // Report the engine unreachable after 2 s instead of 10 s, and give up a call after
    // 2 s instead of 30 s (like the peers' refused calls).
    options.core.connect_timeout = Duration::from_secs(2);
    options.invocation_timeout = Duration::from_secs(2);
    let iii = iii_tokio::worker::connect(options).expect("valid options");
    let outcome = iii.wait_connected(READY).await;
    let call = iii.trigger("api::echo", json!({})).await;
    let result = json!({
        "wait_connected": format!("{outcome:?}"),
        "error": outcome.err().map(|e| e.to_string()),
        "call_error": call.err().map(|e| e.to_string()),
        "state": format!("{:?}", iii.connection_state()),
    });
    iii.shutdown().await;
    RefusedOutcome {
        result,
        log: String::new(),
    }
}
