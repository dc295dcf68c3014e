//! A deterministic simulator: one [`Engine`] and N [`Worker`]s wired by simulated
//! WebSockets ([`link`]) on a virtual clock. Everything the machines see comes from
//! the simulator, so the same seed gives the same transcript.

pub mod apps;
mod engine_side;
pub mod link;
mod schedule;
mod worker_side;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iii_core::channel::{channel_url, ChannelRef, ChannelRefs};
use iii_core::engine::{Engine, EngineConfig, EngineEvent, EngineOutput};
use iii_core::upgrade::UpgradeRequest;
use iii_core::wire::control::{to_payload, Payload};
use iii_core::wire::ErrorBody;
use iii_core::worker::{
    CallOutcome, ConnectTarget, EndId, EndOutcome, FunctionSpec, Worker, WorkerConfig, WorkerEvent,
    WorkerIdentity, WorkerOutput,
};
use iii_core::{CloseCode, ConnId, InvocationId, PeerClose};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::Value;

use crate::transcript::Transcript;
use apps::{pattern, Sink, Source};
use link::{Item, Link, Pipe, PipeShape};

/// A function handler on a simulated worker: input in, result out.
pub type Handler = Box<dyn FnMut(Value) -> Result<Value, ErrorBody>>;

/// An invocation delivered to a worker that has no handler for it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Its id.
    pub id: InvocationId,
    /// The function.
    pub function_id: String,
    /// The payload.
    pub data: Value,
}

/// One simulated worker process.
pub struct SimWorker {
    /// The machine.
    pub core: Worker,
    /// Events the simulator did not consume itself (channel data is not logged).
    pub events: Vec<WorkerEvent>,
    /// Function handlers answered automatically.
    pub handlers: BTreeMap<String, Handler>,
    /// Invocations without a handler, in arrival order.
    pub invoked: Vec<Invocation>,
    /// Completed calls.
    pub outcomes: BTreeMap<InvocationId, CallOutcome>,
    /// Writer ends driven by the simulator.
    pub sources: BTreeMap<EndId, Source>,
    /// Reader ends driven by the simulator.
    pub sinks: BTreeMap<EndId, Sink>,
    /// Link shape for this worker's new connections.
    pub shape: (PipeShape, PipeShape),
    /// The process was killed: it gets no more inputs.
    pub dead: bool,
    closed: BTreeSet<ConnId>,
    consume_free_at: BTreeMap<EndId, Instant>,
}

/// Settings of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds the engine, the workers and nothing else.
    pub seed: u64,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Worker settings (the identity is filled per worker).
    pub worker: WorkerConfig,
    /// Default shape of each direction of a new link.
    pub shape: PipeShape,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            engine: EngineConfig::default(),
            // Keepalive pings recur forever; a run "until idle" needs them off.
            worker: WorkerConfig {
                keepalive: false,
                ..WorkerConfig::default()
            },
            shape: PipeShape::default(),
        }
    }
}

/// The simulation.
pub struct Sim {
    /// The virtual clock.
    pub now: Instant,
    start: Instant,
    /// The engine.
    pub engine: Engine,
    /// Every engine event, in order.
    pub engine_events: Vec<EngineEvent>,
    /// The workers, by index.
    pub workers: Vec<SimWorker>,
    /// Everything fed and emitted.
    pub transcript: Transcript,
    /// The largest number of bytes any channel held at any step.
    pub peak_channel_bytes: usize,
    /// The largest number of messages any channel held, relative to its limit, at any
    /// step (`held - limit`, so it must stay at or under 0).
    pub peak_channel_frame_excess: i64,
    /// Steps taken.
    pub steps: u64,
    config: SimConfig,
    links: BTreeMap<u64, Link>,
    by_engine: BTreeMap<ConnId, u64>,
    by_worker: BTreeMap<(usize, ConnId), u64>,
    next_link: u64,
    engine_closed: BTreeSet<ConnId>,
    consume_timers: BTreeSet<(Instant, usize, EndId, u64)>,
    rng: ChaCha20Rng,
}

fn seed_bytes(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    seed
}

impl Sim {
    /// A simulation with no workers yet.
    pub fn new(config: SimConfig) -> Self {
        #[allow(clippy::disallowed_methods)] // the one real Instant: only offsets matter
        let start = Instant::now();
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let engine = Engine::new(config.engine.clone(), seed_bytes(&mut rng), start)
            .unwrap_or_else(|e| panic!("engine config: {e}"));
        Self {
            now: start,
            start,
            engine,
            engine_events: Vec::new(),
            workers: Vec::new(),
            transcript: Transcript::default(),
            peak_channel_bytes: 0,
            peak_channel_frame_excess: i64::MIN,
            steps: 0,
            config,
            links: BTreeMap::new(),
            by_engine: BTreeMap::new(),
            by_worker: BTreeMap::new(),
            next_link: 1,
            engine_closed: BTreeSet::new(),
            consume_timers: BTreeSet::new(),
            rng,
        }
    }

    /// A simulation with default settings and `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Self::new(SimConfig {
            seed,
            ..SimConfig::default()
        })
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Starts a worker named `name`; it connects on the next steps.
    pub fn add_worker(&mut self, name: &str) -> usize {
        let index = self.workers.len();
        let mut config = self.config.worker.clone();
        config.identity = WorkerIdentity {
            name: name.to_owned(),
            pid: Some(1000 + index as u32),
            ..config.identity
        };
        let core = Worker::new(config, seed_bytes(&mut self.rng), self.now)
            .unwrap_or_else(|e| panic!("worker config: {e}"));
        self.workers.push(SimWorker {
            core,
            events: Vec::new(),
            handlers: BTreeMap::new(),
            invoked: Vec::new(),
            outcomes: BTreeMap::new(),
            sources: BTreeMap::new(),
            sinks: BTreeMap::new(),
            shape: (self.config.shape, self.config.shape),
            dead: false,
            closed: BTreeSet::new(),
            consume_free_at: BTreeMap::new(),
        });
        self.settle();
        index
    }

    /// Adds `count` workers and runs until all are registered.
    pub fn connected_workers(&mut self, count: usize) -> Vec<usize> {
        let ids: Vec<usize> = (0..count)
            .map(|i| self.add_worker(&format!("w{i}")))
            .collect();
        self.run_until("workers registered", 10_000, |sim| {
            ids.iter()
                .all(|w| sim.workers[*w].core.worker_id().is_some())
        });
        ids
    }

    /// Registers `function_id` on worker `w`, answered by `handler`.
    pub fn serve(
        &mut self,
        w: usize,
        function_id: &str,
        handler: impl FnMut(Value) -> Result<Value, ErrorBody> + 'static,
    ) {
        self.register(w, function_id);
        self.workers[w]
            .handlers
            .insert(function_id.to_owned(), Box::new(handler));
    }

    /// Registers `function_id` on worker `w` without a handler: its invocations are
    /// collected in `invoked` for the script to complete.
    pub fn register(&mut self, w: usize, function_id: &str) {
        let now = self.now;
        let spec = FunctionSpec {
            id: function_id.to_owned(),
            description: None,
            request_format: None,
            response_format: None,
            metadata: None,
        };
        self.workers[w]
            .core
            .register_function(now, spec)
            .unwrap_or_else(|e| panic!("register {function_id}: {e}"));
        let seen = self.engine_events.len();
        self.run_until("function registered at the engine", 100_000, |sim| {
            sim.engine_events[seen..].iter().any(|e| {
                matches!(e, EngineEvent::FunctionRegistered { function_id: f, .. } if f == function_id)
            })
        });
    }

    /// Worker `w` calls `function_id` with `data`.
    pub fn invoke(&mut self, w: usize, function_id: &str, data: Value) -> InvocationId {
        self.invoke_with_timeout(w, function_id, data, None)
    }

    /// Worker `w` calls `function_id` with `data` and a timeout.
    pub fn invoke_with_timeout(
        &mut self,
        w: usize,
        function_id: &str,
        data: Value,
        timeout: Option<Duration>,
    ) -> InvocationId {
        let now = self.now;
        let id = self.workers[w]
            .core
            .invoke(now, function_id, to_payload(&data), timeout)
            .unwrap_or_else(|e| panic!("invoke {function_id}: {e}"));
        self.settle();
        id
    }

    /// Runs until call `id` of worker `w` completes, and returns its outcome.
    pub fn outcome(&mut self, w: usize, id: InvocationId) -> CallOutcome {
        self.run_until("call completed", 1_000_000, |sim| {
            sim.workers[w].outcomes.contains_key(&id)
        });
        self.workers[w].outcomes[&id].clone()
    }

    /// Runs until call `id` of worker `w` completes and returns its result as JSON
    /// (panics on an error outcome).
    pub fn result(&mut self, w: usize, id: InvocationId) -> Value {
        match self.outcome(w, id) {
            CallOutcome::Ok(payload) => payload_value(payload.as_ref()),
            other => panic!("call failed: {other:?}"),
        }
    }

    /// Calls `engine::channels::create` from worker `w` and returns the refs.
    pub fn create_channel(&mut self, w: usize, buffer_size: Option<usize>) -> ChannelRefs {
        let now = self.now;
        let id = self.workers[w]
            .core
            .create_channel(now, buffer_size)
            .unwrap_or_else(|e| panic!("create_channel: {e}"));
        self.settle();
        let value = self.result(w, id);
        serde_json::from_value(value).unwrap_or_else(|e| panic!("channel refs: {e}"))
    }

    /// Opens a writer end on worker `w` driven by `source`; it starts writing now.
    pub fn open_writer(&mut self, w: usize, channel_ref: ChannelRef, source: Source) -> EndId {
        let now = self.now;
        let end = self.workers[w].core.open_channel(now, channel_ref);
        self.workers[w].sources.insert(end, source);
        self.pump_source(w, end);
        self.settle();
        end
    }

    /// Opens a reader end on worker `w` driven by `sink`; it starts reading now.
    pub fn open_reader(&mut self, w: usize, channel_ref: ChannelRef, sink: Sink) -> EndId {
        let now = self.now;
        let end = self.workers[w].core.open_channel(now, channel_ref);
        self.workers[w].sinks.insert(end, sink);
        self.workers[w]
            .core
            .channel_start_reading(now, end)
            .unwrap_or_else(|e| panic!("start reading: {e}"));
        self.settle();
        end
    }

    /// Opens an end on worker `w` that the script drives itself with `write_all`,
    /// `send_text` and `close_end` (a reader end also gets a keeping sink).
    pub fn open_end(&mut self, w: usize, channel_ref: ChannelRef) -> EndId {
        let now = self.now;
        let reading = channel_ref.direction == iii_core::channel::Direction::Read;
        let end = self.workers[w].core.open_channel(now, channel_ref);
        if reading {
            let mut sink = Sink::new(0);
            sink.keep = true;
            self.workers[w].sinks.insert(end, sink);
            self.workers[w]
                .core
                .channel_start_reading(now, end)
                .unwrap_or_else(|e| panic!("start reading: {e}"));
        }
        self.settle();
        end
    }

    /// Writes all of `data` to writer `end` of worker `w`, running the simulation while
    /// the send window is full.
    pub fn write_all(&mut self, w: usize, end: EndId, data: &[u8]) {
        let mut rest = Bytes::copy_from_slice(data);
        while !rest.is_empty() {
            let now = self.now;
            match self.workers[w].core.channel_write(now, end, rest.clone()) {
                Ok(accepted) => {
                    let _ = rest.split_to(accepted);
                    self.settle();
                }
                Err(iii_core::worker::WriteError::Blocked(_)) => {
                    assert!(self.step(), "blocked writer with nothing pending");
                }
                Err(e) => panic!("write: {e}"),
            }
        }
    }

    /// Sends a text message on writer `end` of worker `w`.
    pub fn send_text(&mut self, w: usize, end: EndId, text: &str) {
        loop {
            let now = self.now;
            match self.workers[w]
                .core
                .channel_send_text(now, end, text.to_owned().into())
            {
                Ok(()) => break,
                Err(iii_core::worker::WriteError::Blocked(_)) => {
                    assert!(self.step(), "blocked writer with nothing pending");
                }
                Err(e) => panic!("send_text: {e}"),
            }
        }
        self.settle();
    }

    /// Closes writer `end` of worker `w` cleanly.
    pub fn close_end(&mut self, w: usize, end: EndId) {
        let now = self.now;
        self.workers[w]
            .core
            .channel_close(now, end)
            .unwrap_or_else(|e| panic!("close: {e}"));
        self.settle();
    }

    /// The sink of reader `end` on worker `w`.
    pub fn sink(&self, w: usize, end: EndId) -> &Sink {
        &self.workers[w].sinks[&end]
    }

    /// The source of writer `end` on worker `w`.
    pub fn source(&self, w: usize, end: EndId) -> &Source {
        &self.workers[w].sources[&end]
    }

    /// Runs until the reader `end` of worker `w` has ended; returns how.
    pub fn read_to_end(&mut self, w: usize, end: EndId) -> EndOutcome {
        self.run_until("reader ended", 50_000_000, |sim| {
            sim.workers[w].sinks[&end].ended.is_some()
        });
        self.workers[w].sinks[&end]
            .ended
            .clone()
            .unwrap_or(EndOutcome::Lost)
    }

    /// Runs until worker `w` has an unanswered invocation of `function_id` and takes it.
    pub fn next_invocation(&mut self, w: usize, function_id: &str) -> Invocation {
        self.run_until("invocation delivered", 1_000_000, |sim| {
            sim.workers[w]
                .invoked
                .iter()
                .any(|i| i.function_id == function_id)
        });
        let index = self.workers[w]
            .invoked
            .iter()
            .position(|i| i.function_id == function_id)
            .unwrap_or_default();
        self.workers[w].invoked.remove(index)
    }

    /// Worker `w` answers invocation `id`.
    pub fn complete(&mut self, w: usize, id: InvocationId, result: Result<Value, ErrorBody>) {
        let now = self.now;
        let result = result.map(|v| Some(to_payload(&v)));
        self.workers[w]
            .core
            .complete(now, id, result)
            .unwrap_or_else(|e| panic!("complete: {e}"));
        self.settle();
    }

    /// Kills worker `w`: every connection of it is lost at once (no Close frames) and
    /// it gets no more inputs.
    pub fn kill_worker(&mut self, w: usize) {
        self.workers[w].dead = true;
        let links: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| l.worker == w)
            .map(|(id, _)| *id)
            .collect();
        for link in links {
            self.cut_link(link);
        }
        self.settle();
    }

    /// Abruptly drops worker `w`'s connection `conn` (both sides see it lost).
    pub fn cut(&mut self, w: usize, conn: ConnId) {
        if let Some(link) = self.by_worker.get(&(w, conn)).copied() {
            self.cut_link(link);
            self.settle();
        }
    }

    /// Stops (or restarts) delivery on worker `w`'s connection `conn`, both ways.
    pub fn stall(&mut self, w: usize, conn: ConnId, stalled: bool) {
        if let Some(link) = self
            .by_worker
            .get(&(w, conn))
            .and_then(|id| self.links.get_mut(id))
        {
            link.up.stalled = stalled;
            link.down.stalled = stalled;
        }
    }

    /// Worker `w`'s open connections.
    pub fn worker_conns(&self, w: usize) -> Vec<ConnId> {
        self.links
            .values()
            .filter(|l| l.worker == w && !l.worker_done)
            .map(|l| l.worker_conn)
            .collect()
    }
}

/// A payload as JSON (`null` when absent or unparsable).
pub fn payload_value(payload: Option<&Payload>) -> Value {
    payload
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or(Value::Null)
}
