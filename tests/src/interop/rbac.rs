//! The RBAC interop harness (`interop_rbac`): our engine with a main listener and three
//! RBAC listeners, the published Python and Node SDKs as the authentication functions
//! (trusted, on the main listener) and as untrusted workers, and our own SDK on both
//! sides. See INTEROP.md, "Untrusted workers (RBAC)".
//!
//! One [`RbacHarness`] per test process, separate from [`super::Harness`] (which the
//! other interop binaries share and which has no RBAC listener):
//!
//! | listener | authentication function | middleware |
//! |---|---|---|
//! | [`NODE_AUTH`] | `rbac.node.auth` (Node, `tests/interop/rbac_peer.mjs`) | none |
//! | [`PYTHON_AUTH`] | `rbac.py025.auth` (Python 0.25, `tests/interop/rbac_peer.py`) | none |
//! | [`PYTHON_MIDDLEWARE`] | `rbac.node.auth` | `rbac.py025.middleware` |
//! | [`NODE_MIDDLEWARE`] | `rbac.py025.auth` | `rbac.node.middleware` |
//!
//! Every listener exposes `api::*`, functions with metadata `{"public": true}` and
//! `engine::functions::list`. Both authentication functions admit `good-<tenant>` from
//! the `x-api-key` header, the `key` query parameter or the `session` cookie, answer
//! an `AuthResult` with `function_registration_prefix: <tenant>`,
//! `forbidden_functions: ["api::admin"]` and `context: {tenant, auth_sdk, credential,
//! ip}`, and raise for anything else (401). Both middlewares wrap what they forward as
//! `{middleware, seen, result}` and refuse payloads with `deny: true`.
//!
//! The trusted backend is our SDK in this process: `api::echo` (answers `{seen: input}`),
//! `api::admin`, `api::read_channel` (reads a reader ref, answers its SHA-256),
//! `internal::secret` (not exposed) and `meta::open` (exposed by its metadata).

mod guest;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use iii_tokio::engine::{
    EngineServer, EngineSettings, FunctionFilter, ListenerPolicy, ListenerSettings, MetadataMatch,
    Pattern, Rbac,
};
use iii_tokio::worker::{
    ChannelReader, ChannelRef, Error, FunctionDef, Iii, Invocation, WorkerOptions,
};
use serde_json::{json, Value};

pub use guest::{Credential, Guest, RefusedOutcome, Sdk};

use super::bytes::sha256_hex;
use super::control::Driver;
use super::setup::{clients, Clients};

/// The RBAC listener whose authentication function is the Node SDK's.
pub const NODE_AUTH: usize = 1;
/// The RBAC listener whose authentication function is the Python SDK's.
pub const PYTHON_AUTH: usize = 2;
/// The RBAC listener with the Node authentication function and the Python middleware.
pub const PYTHON_MIDDLEWARE: usize = 3;
/// The RBAC listener with the Python authentication function and the Node middleware.
pub const NODE_MIDDLEWARE: usize = 4;

/// Timeout of one call through the driver.
pub const CALL: Duration = Duration::from_secs(30);
/// How long a peer may take from spawn to serving its functions.
pub const READY: Duration = Duration::from_secs(60);

/// Our engine, the driver, the trusted backend and the two authentication peers.
pub struct RbacHarness {
    runtime: tokio::runtime::Runtime,
    engine: EngineServer,
    driver: Driver,
    _backend: Iii,
    _auth_peers: Vec<guest::Process>,
}

static HARNESS: OnceLock<RbacHarness> = OnceLock::new();

/// The process's RBAC harness (installs the clients and starts everything on first
/// use). Panics, naming the peer and its log, when a peer cannot be started.
pub fn rbac_harness() -> &'static RbacHarness {
    HARNESS.get_or_init(|| {
        let clients = clients();
        eprintln!("interop set-up: {:.1} s", clients.setup_secs);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (engine, driver, backend, auth_peers) = runtime.block_on(start(clients));
        RbacHarness {
            runtime,
            engine,
            driver,
            _backend: backend,
            _auth_peers: auth_peers,
        }
    })
}

fn exposed() -> Vec<FunctionFilter> {
    vec![
        FunctionFilter::Id(Pattern::new("api::*")),
        FunctionFilter::Metadata(vec![(
            "public".to_owned(),
            MetadataMatch::Equals(json!(true)),
        )]),
        FunctionFilter::Id(Pattern::new("engine::functions::list")),
    ]
}

fn listener(name: &str, auth: &str, middleware: Option<&str>) -> ListenerSettings {
    let mut policy = ListenerPolicy::untrusted(
        name,
        Rbac {
            auth_function_id: Some(auth.to_owned()),
            // Generous: the authentication functions run in Python and Node processes
            // on a loaded 2-core machine.
            hook_timeout: Duration::from_secs(10),
            expose_functions: exposed(),
            ..Rbac::default()
        },
    );
    // Every guest of the binary connects from 127.0.0.1 (plus the SDKs' telemetry
    // sockets): no per-address limit.
    policy.max_connections_per_ip = None;
    policy.middleware_function_id = middleware.map(str::to_owned);
    ListenerSettings::new("127.0.0.1:0", policy)
}

async fn start(clients: &Clients) -> (EngineServer, Driver, Iii, Vec<guest::Process>) {
    let settings = EngineSettings {
        listeners: vec![
            listener("node-auth", "rbac.node.auth", None),
            listener("python-auth", "rbac.py025.auth", None),
            listener(
                "python-middleware",
                "rbac.node.auth",
                Some("rbac.py025.middleware"),
            ),
            listener(
                "node-middleware",
                "rbac.py025.auth",
                Some("rbac.node.middleware"),
            ),
        ],
        ..EngineSettings::default()
    };
    let engine = iii_tokio::bind("127.0.0.1:0", settings)
        .await
        .expect("bind our engine with its RBAC listeners on 127.0.0.1");
    let driver = Driver::connect(&engine.url()).await.expect("driver");
    let backend = backend(&engine.url())
        .await
        .unwrap_or_else(|e| panic!("the trusted backend (our SDK) did not start: {e}"));
    let started = Instant::now();
    let mut auth_peers = Vec::new();
    for sdk in [Sdk::Node, Sdk::Python] {
        let process = guest::Process::spawn(
            clients,
            sdk,
            &format!("rbac-auth-{}", sdk.name()),
            &engine.url(),
            &[("RBAC_ROLE", "auth")],
        )
        .unwrap_or_else(|e| panic!("could not start the {} auth peer: {e}", sdk.label()));
        auth_peers.push(process);
    }
    for (sdk, process) in [Sdk::Node, Sdk::Python].into_iter().zip(&auth_peers) {
        let ready = format!("rbac.{}.ready", sdk.name());
        if let Err(e) = wait_callable(&driver, &ready, json!({})).await {
            panic!("{}\n--- log {}", e, process.describe());
        }
    }
    eprintln!(
        "auth peers (Node, Python) ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (engine, driver, backend, auth_peers)
}

/// `input` with the engine's `_caller_*` keys put back (our SDK hands them to the
/// handler on its invocation, not in its input), as the published SDKs' handlers see it.
fn with_caller(mut input: Value) -> Value {
    if let (Some(object), Some(call)) = (input.as_object_mut(), Invocation::current()) {
        object.extend(call.caller.as_map().clone());
    }
    input
}

/// The trusted backend: our SDK on the main listener.
async fn backend(url: &str) -> Result<Iii, Error> {
    let iii = iii_tokio::worker::connect(WorkerOptions {
        url: Some(url.to_owned()),
        name: Some("rbac-backend".into()),
        ..WorkerOptions::default()
    })?;
    iii.register_function("api::echo", |input: Value| async move {
        Ok::<_, Error>(json!({ "seen": with_caller(input) }))
    })?;
    iii.register_function("api::admin", |_: Value| async move {
        Ok::<_, Error>(json!("admin"))
    })?;
    iii.register_function("internal::secret", |_: Value| async move {
        Ok::<_, Error>(json!("secret"))
    })?;
    iii.register_function(
        FunctionDef::new("meta::open").metadata(json!({"public": true})),
        |input: Value| async move {
            Ok::<_, Error>(json!({ "open": true, "seen": with_caller(input) }))
        },
    )?;
    let me = iii.clone();
    iii.register_function("api::read_channel", move |input: Value| {
        let iii = me.clone();
        async move {
            let reader_ref: ChannelRef = serde_json::from_value(input["reader"].clone())?;
            let bytes = ChannelReader::new(&iii, &reader_ref).read_all().await?;
            Ok::<_, Error>(json!({
                "sha256": sha256_hex(&bytes),
                "bytes": bytes.len(),
                "caller_context": Invocation::current()
                    .and_then(|call| call.caller_context().cloned()),
            }))
        }
    })?;
    iii.wait_registered(READY).await?;
    Ok(iii)
}

/// Calls `function_id` through the driver until it answers (at most [`READY`]).
pub(crate) async fn wait_callable(
    driver: &Driver,
    function_id: &str,
    data: Value,
) -> Result<Value, String> {
    let deadline = Instant::now() + READY;
    loop {
        let last = match driver
            .call(function_id, data.clone(), Duration::from_secs(5))
            .await
        {
            Ok(answer) => return Ok(answer),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{function_id} not callable within {READY:?} (last: {last})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl RbacHarness {
    /// Runs `future` on the harness runtime. Not to be called from inside it.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The driver (a raw control connection on the main listener: trusted).
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// The URL of RBAC listener `index` ([`NODE_AUTH`], [`PYTHON_AUTH`],
    /// [`PYTHON_MIDDLEWARE`], [`NODE_MIDDLEWARE`]).
    pub fn url(&self, index: usize) -> String {
        self.engine
            .listener_url(index)
            .unwrap_or_else(|| panic!("no listener {index}"))
    }

    /// Calls `function_id` through the driver; panics on an error.
    pub async fn call(&self, function_id: &str, data: Value) -> Value {
        self.driver
            .call(function_id, data, CALL)
            .await
            .unwrap_or_else(|e| panic!("{function_id} failed: {e}"))
    }

    /// The decisions the authentication function of `sdk` took for `key`.
    pub async fn decisions(&self, sdk: Sdk, key: &str) -> Vec<Value> {
        self.log_of(sdk, "decisions")
            .await
            .into_iter()
            .filter(|d| d["key"] == key)
            .collect()
    }

    /// What the middleware of `sdk` saw (every call it did not pass through as an
    /// engine call).
    pub async fn middleware_log(&self, sdk: Sdk) -> Vec<Value> {
        self.log_of(sdk, "middleware").await
    }

    async fn log_of(&self, sdk: Sdk, log: &str) -> Vec<Value> {
        let all = self
            .call(&format!("rbac.{}.decisions", sdk.name()), json!({}))
            .await;
        all[log]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no list {log} in {all}", sdk.label()))
            .clone()
    }

    /// The ids `engine::functions::list` shows the trusted driver.
    pub async fn trusted_function_ids(&self) -> Vec<String> {
        function_ids(&self.call("engine::functions::list", json!({})).await)
    }
}

/// The sorted `function_id`s of an `engine::functions::list` answer.
pub fn function_ids(listing: &Value) -> Vec<String> {
    let mut ids: Vec<String> = listing["functions"]
        .as_array()
        .unwrap_or_else(|| panic!("not a function list: {listing}"))
        .iter()
        .filter_map(|f| f["function_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}
