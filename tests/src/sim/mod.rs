//! A deterministic simulator: one [`Engine`] and N [`Worker`]s wired by simulated
//! WebSockets ([`link`]) on a virtual clock. Everything the machines see comes from
//! the simulator, so the same seed gives the same transcript.

pub mod apps;
pub mod link;

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

    /// Runs until `done` holds; panics after `max_steps` steps or if nothing can happen.
    pub fn run_until(&mut self, what: &str, max_steps: u64, mut done: impl FnMut(&Sim) -> bool) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            if !self.step() {
                assert!(
                    done(self),
                    "simulation idle before: {what}\n{}",
                    self.tail()
                );
                return;
            }
        }
        assert!(done(self), "step bound hit before: {what}\n{}", self.tail());
    }

    /// Runs until nothing is left to do; panics after `max_steps` (a livelock).
    pub fn run_until_idle(&mut self, max_steps: u64) {
        for _ in 0..max_steps {
            if !self.step() {
                return;
            }
        }
        panic!("no quiescence after {max_steps} steps\n{}", self.tail());
    }

    /// Advances the clock by `duration`, running everything due meanwhile.
    pub fn advance(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.next_event().is_some_and(|at| at <= until) {
            self.step();
        }
        self.now = self.now.max(until);
        self.settle();
    }

    fn tail(&self) -> String {
        self.transcript.tail().join("\n")
    }

    fn next_event(&self) -> Option<Instant> {
        let links = self
            .links
            .values()
            .flat_map(|l| [l.up.next_ready(), l.down.next_ready()])
            .flatten();
        let workers = self
            .workers
            .iter()
            .filter(|w| !w.dead)
            .filter_map(|w| w.core.poll_timeout());
        let consume = self.consume_timers.first().map(|(at, ..)| *at);
        links
            .chain(workers)
            .chain(self.engine.poll_timeout())
            .chain(consume)
            .min()
    }

    /// Takes one step: advances the clock to the next event and handles everything due
    /// at that instant, one delivery at a time. Returns false when nothing is pending.
    pub fn step(&mut self) -> bool {
        self.settle();
        let Some(at) = self.next_event() else {
            return false;
        };
        self.now = self.now.max(at);
        self.steps += 1;
        let now = self.now;
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.transcript
                .record(format!("{:?} E timeout", self.elapsed()));
            self.engine.handle_timeout(now);
            assert!(
                self.engine.poll_timeout().is_none_or(|t| t > now),
                "engine deadline in the past after handle_timeout"
            );
        }
        for w in 0..self.workers.len() {
            if self.workers[w].dead {
                continue;
            }
            if self.workers[w]
                .core
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.transcript
                    .record(format!("{:?} W{w} timeout", self.elapsed()));
                self.workers[w].core.handle_timeout(now);
                assert!(
                    self.workers[w].core.poll_timeout().is_none_or(|t| t > now),
                    "worker deadline in the past after handle_timeout"
                );
                self.drain_worker(w);
            }
        }
        while let Some(&(t, w, end, bytes)) = self.consume_timers.first() {
            if t > now {
                break;
            }
            self.consume_timers.pop_first();
            if let Some(sink) = self.workers[w].sinks.get_mut(&end) {
                sink.unconsumed -= bytes;
            }
            let _ = self.workers[w]
                .core
                .channel_consumed(now, end, bytes as usize);
            self.drain_worker(w);
        }
        self.deliver_one(now);
        self.settle();
        self.check_buffers();
        true
    }

    fn check_buffers(&mut self) {
        for channel in self.engine.channels() {
            self.peak_channel_bytes = self.peak_channel_bytes.max(channel.buffered_bytes);
            let excess = channel.buffered_frames as i64 - channel.buffer_size as i64;
            self.peak_channel_frame_excess = self.peak_channel_frame_excess.max(excess);
            assert!(
                channel.buffered_bytes <= self.config.engine.channel_buffer_bytes,
                "channel {} holds {} bytes, over the limit",
                channel.channel_id,
                channel.buffered_bytes
            );
            assert!(
                excess <= 0,
                "channel {} holds too many frames",
                channel.channel_id
            );
        }
    }

    /// Delivers the earliest due item (ties broken by link id, up before down).
    fn deliver_one(&mut self, now: Instant) {
        let mut best: Option<(Instant, u64, bool)> = None;
        for (id, link) in &self.links {
            for (up, pipe) in [(true, &link.up), (false, &link.down)] {
                if let Some(at) = pipe.next_ready().filter(|at| *at <= now) {
                    if best.is_none_or(|(b, ..)| at < b) {
                        best = Some((at, *id, up));
                    }
                }
            }
        }
        let Some((_, id, up)) = best else {
            return;
        };
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        let pipe = if up { &mut link.up } else { &mut link.down };
        let Some(item) = pipe.pop_due(now) else {
            return;
        };
        let (w, wconn, econn) = (link.worker, link.worker_conn, link.engine_conn);
        if up {
            if link.engine_done {
                return;
            }
            match item {
                Item::Msg(message) => {
                    self.transcript
                        .record(format!("{:?} E<-{econn} {message:?}", self.elapsed()));
                    self.engine.handle_message(now, econn, message);
                }
                Item::Close(close) => {
                    link.engine_done = true;
                    self.engine_closed.insert(econn);
                    self.transcript
                        .record(format!("{:?} E<-{econn} {close:?}", self.elapsed()));
                    self.engine.handle_closed(now, econn, close);
                }
            }
            self.drain_engine();
        } else {
            if link.worker_done || self.workers[w].dead {
                return;
            }
            match item {
                Item::Msg(message) => {
                    self.transcript
                        .record(format!("{:?} W{w}<-{wconn} {message:?}", self.elapsed()));
                    self.workers[w].core.handle_message(now, wconn, message);
                }
                Item::Close(close) => {
                    link.worker_done = true;
                    self.workers[w].closed.insert(wconn);
                    self.transcript
                        .record(format!("{:?} W{w}<-{wconn} {close:?}", self.elapsed()));
                    self.workers[w].core.handle_closed(now, wconn, close);
                }
            }
            self.drain_worker(w);
        }
        self.reap(id);
    }

    fn cut_link(&mut self, id: u64) {
        let now = self.now;
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        link.up = Pipe::new(link.up.shape);
        link.down = Pipe::new(link.down.shape);
        let (w, wconn, econn) = (link.worker, link.worker_conn, link.engine_conn);
        let (engine_done, worker_done) = (link.engine_done, link.worker_done);
        link.engine_done = true;
        link.worker_done = true;
        if !engine_done {
            self.engine_closed.insert(econn);
            self.transcript
                .record(format!("{:?} E<-{econn} lost", self.elapsed()));
            self.engine.handle_closed(now, econn, PeerClose::Lost);
            self.drain_engine();
        }
        if !worker_done && !self.workers[w].dead {
            self.workers[w].closed.insert(wconn);
            self.transcript
                .record(format!("{:?} W{w}<-{wconn} lost", self.elapsed()));
            self.workers[w]
                .core
                .handle_closed(now, wconn, PeerClose::Lost);
            self.drain_worker(w);
        }
        self.reap(id);
    }

    fn reap(&mut self, id: u64) {
        if self.links.get(&id).is_some_and(Link::is_dead) {
            if let Some(link) = self.links.remove(&id) {
                self.by_engine.remove(&link.engine_conn);
                self.by_worker.remove(&(link.worker, link.worker_conn));
            }
        }
    }

    /// Runs every machine's pending outputs and lets the pipes accept what fits, until
    /// nothing changes.
    pub fn settle(&mut self) {
        loop {
            let mut progressed = self.drain_engine();
            for w in 0..self.workers.len() {
                progressed |= self.drain_worker(w);
            }
            let now = self.now;
            let ids: Vec<u64> = self.links.keys().copied().collect();
            for id in ids {
                let Some(link) = self.links.get_mut(&id) else {
                    continue;
                };
                let up = link.up.accept(now);
                let down = link.down.accept(now);
                let (w, wconn, econn) = (link.worker, link.worker_conn, link.engine_conn);
                let (engine_done, worker_done) = (link.engine_done, link.worker_done);
                if up > 0 && !worker_done && !self.workers[w].dead {
                    self.workers[w].core.handle_sent(now, wconn, up);
                    progressed = true;
                }
                if down > 0 && !engine_done {
                    self.engine.handle_sent(now, econn, down);
                    progressed = true;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// The engine closes `conn` (dropping what it had not written yet when `abort`).
    fn engine_close(&mut self, conn: ConnId, code: Option<CloseCode>, reason: &str, abort: bool) {
        assert!(
            !self.engine_closed.contains(&conn),
            "engine closed {conn} twice"
        );
        let elapsed = self.elapsed();
        let verb = if abort { "abort" } else { "close" };
        self.transcript
            .record(format!("{elapsed:?} E->{conn} {verb} {code:?} {reason}"));
        self.engine_closed.insert(conn);
        let close = PeerClose::Frame {
            code,
            reason: reason.to_owned(),
        };
        if let Some(link) = self.engine_link(conn) {
            if abort {
                link.down.abandon_waiting();
            }
            link.down.push(Item::Close(close.clone()));
            link.engine_done = true;
        }
        let now = self.now;
        self.engine.handle_closed(now, conn, close);
    }

    fn drain_engine(&mut self) -> bool {
        let mut any = false;
        while let Some(output) = self.engine.poll_output() {
            any = true;
            let elapsed = self.elapsed();
            match output {
                EngineOutput::Transmit { conn, message } => {
                    assert!(
                        !self.engine_closed.contains(&conn),
                        "engine sent to closed {conn}"
                    );
                    self.transcript
                        .record(format!("{elapsed:?} E->{conn} {message:?}"));
                    if let Some(link) = self.engine_link(conn) {
                        link.down.push(Item::Msg(message));
                    }
                }
                EngineOutput::Admitted { ticket, .. } => {
                    panic!("the simulation has no RBAC listener, yet {ticket:?} was decided")
                }
                EngineOutput::Close { conn, code, reason } => {
                    self.engine_close(conn, code, reason, false);
                }
                EngineOutput::Abort { conn, code, reason } => {
                    self.engine_close(conn, Some(code), reason, true);
                }
                EngineOutput::PauseRead { conn } => {
                    self.transcript
                        .record(format!("{elapsed:?} E pause {conn}"));
                    if let Some(link) = self.engine_link(conn) {
                        link.up.paused = true;
                    }
                }
                EngineOutput::ResumeRead { conn } => {
                    self.transcript
                        .record(format!("{elapsed:?} E resume {conn}"));
                    if let Some(link) = self.engine_link(conn) {
                        link.up.paused = false;
                    }
                }
                EngineOutput::Event(event) => {
                    self.transcript
                        .record(format!("{elapsed:?} E event {event:?}"));
                    self.engine_events.push(event);
                }
            }
        }
        any
    }

    fn engine_link(&mut self, conn: ConnId) -> Option<&mut Link> {
        let id = self.by_engine.get(&conn)?;
        self.links.get_mut(id)
    }

    fn worker_link(&mut self, w: usize, conn: ConnId) -> Option<&mut Link> {
        let id = self.by_worker.get(&(w, conn))?;
        self.links.get_mut(id)
    }

    fn connect(&mut self, w: usize, conn: ConnId, target: ConnectTarget) {
        let now = self.now;
        let path = match &target {
            ConnectTarget::Control => "/".to_owned(),
            ConnectTarget::Channel(channel_ref) => channel_url("", channel_ref),
        };
        // Only the main listener: every upgrade is decided at once.
        let accepted = self
            .engine
            .accept(now, &UpgradeRequest::to(&path))
            .decided()
            .expect("the main listener decides every upgrade at once");
        self.transcript.record(format!(
            "{:?} W{w} connect {conn} {path} -> {accepted:?}",
            self.elapsed()
        ));
        match accepted {
            Ok(accepted) => {
                let id = self.next_link;
                self.next_link += 1;
                let (up, down) = self.workers[w].shape;
                self.links.insert(
                    id,
                    Link {
                        worker: w,
                        worker_conn: conn,
                        engine_conn: accepted.conn,
                        up: Pipe::new(up),
                        down: Pipe::new(down),
                        worker_done: false,
                        engine_done: false,
                    },
                );
                self.by_engine.insert(accepted.conn, id);
                self.by_worker.insert((w, conn), id);
                self.workers[w].core.handle_connected(now, conn);
            }
            Err(rejection) => {
                self.workers[w].closed.insert(conn);
                self.workers[w]
                    .core
                    .handle_connect_failed(now, conn, Some(rejection.status()));
            }
        }
    }

    fn drain_worker(&mut self, w: usize) -> bool {
        let mut any = false;
        if self.workers[w].dead {
            return false;
        }
        while let Some(output) = self.workers[w].core.poll_output() {
            any = true;
            let elapsed = self.elapsed();
            match output {
                WorkerOutput::Connect { conn, target } => self.connect(w, conn, target),
                WorkerOutput::Transmit { conn, message } => {
                    assert!(
                        !self.workers[w].closed.contains(&conn),
                        "W{w} sent to closed {conn}"
                    );
                    self.transcript
                        .record(format!("{elapsed:?} W{w}->{conn} {message:?}"));
                    if let Some(link) = self.worker_link(w, conn) {
                        link.up.push(Item::Msg(message));
                    }
                }
                WorkerOutput::Close { conn, code, reason } => {
                    assert!(
                        !self.workers[w].closed.contains(&conn),
                        "W{w} closed {conn} twice"
                    );
                    self.transcript
                        .record(format!("{elapsed:?} W{w}->{conn} close {code:?} {reason}"));
                    self.workers[w].closed.insert(conn);
                    let close = PeerClose::Frame {
                        code,
                        reason: reason.to_owned(),
                    };
                    if let Some(link) = self.worker_link(w, conn) {
                        link.up.push(Item::Close(close.clone()));
                        link.worker_done = true;
                    }
                    let now = self.now;
                    self.workers[w].core.handle_closed(now, conn, close);
                }
                WorkerOutput::PauseRead { conn } => {
                    self.transcript
                        .record(format!("{elapsed:?} W{w} pause {conn}"));
                    if let Some(link) = self.worker_link(w, conn) {
                        link.down.paused = true;
                    }
                }
                WorkerOutput::ResumeRead { conn } => {
                    self.transcript
                        .record(format!("{elapsed:?} W{w} resume {conn}"));
                    if let Some(link) = self.worker_link(w, conn) {
                        link.down.paused = false;
                    }
                }
                WorkerOutput::Event(event) => self.worker_event(w, event),
            }
        }
        any
    }

    fn worker_event(&mut self, w: usize, event: WorkerEvent) {
        let now = self.now;
        let elapsed = self.elapsed();
        match event {
            WorkerEvent::ChannelData { end, data } => {
                self.transcript
                    .record(format!("{elapsed:?} W{w} data {end} {}", data.len()));
                self.sink_received(w, end, data.len() as u64, |sink| sink.on_data(&data));
            }
            WorkerEvent::ChannelText { end, text } => {
                self.transcript
                    .record(format!("{elapsed:?} W{w} text {end} {text:?}"));
                self.sink_received(w, end, text.len() as u64, |sink| {
                    sink.on_text(text.as_str())
                });
            }
            WorkerEvent::ChannelWritable { end } => {
                self.transcript
                    .record(format!("{elapsed:?} W{w} writable {end}"));
                self.pump_source(w, end);
            }
            WorkerEvent::ChannelEnded { end, outcome } => {
                self.transcript
                    .record(format!("{elapsed:?} W{w} ended {end} {outcome:?}"));
                let worker = &mut self.workers[w];
                if let Some(sink) = worker.sinks.get_mut(&end) {
                    sink.ended = Some(outcome.clone());
                }
                if let Some(source) = worker.sources.get_mut(&end) {
                    source.ended = Some(outcome.clone());
                }
                worker
                    .events
                    .push(WorkerEvent::ChannelEnded { end, outcome });
            }
            WorkerEvent::CallCompleted {
                invocation_id,
                outcome,
                ..
            } => {
                self.transcript.record(format!(
                    "{elapsed:?} W{w} completed {invocation_id} {outcome:?}"
                ));
                let previous = self.workers[w].outcomes.insert(invocation_id, outcome);
                assert!(previous.is_none(), "invocation {invocation_id} ended twice");
            }
            WorkerEvent::Invoked {
                invocation_id,
                function_id,
                data,
                ..
            } => {
                self.transcript.record(format!(
                    "{elapsed:?} W{w} invoked {invocation_id} {function_id} {}",
                    data.get()
                ));
                let input = payload_value(Some(&data));
                let worker = &mut self.workers[w];
                if let Some(handler) = worker.handlers.get_mut(&function_id) {
                    let result = handler(input).map(|v| Some(to_payload(&v)));
                    let _ = worker.core.complete(now, invocation_id, result);
                } else {
                    worker.invoked.push(Invocation {
                        id: invocation_id,
                        function_id,
                        data: input,
                    });
                }
            }
            other => {
                self.transcript
                    .record(format!("{elapsed:?} W{w} event {other:?}"));
                self.workers[w].events.push(other);
            }
        }
    }

    fn sink_received(&mut self, w: usize, end: EndId, len: u64, record: impl FnOnce(&mut Sink)) {
        let now = self.now;
        let worker = &mut self.workers[w];
        let Some(sink) = worker.sinks.get_mut(&end) else {
            return;
        };
        record(sink);
        match sink.rate {
            None => {
                sink.unconsumed -= len;
                let _ = worker.core.channel_consumed(now, end, len as usize);
            }
            Some(rate) => {
                let free = worker
                    .consume_free_at
                    .get(&end)
                    .copied()
                    .unwrap_or(now)
                    .max(now);
                let done = free
                    + Duration::from_nanos(
                        (len as u128 * 1_000_000_000 / rate.max(1) as u128) as u64,
                    );
                worker.consume_free_at.insert(end, done);
                self.consume_timers.insert((done, w, end, len));
            }
        }
    }

    /// Writes as much of `end`'s source as the window takes.
    fn pump_source(&mut self, w: usize, end: EndId) {
        let now = self.now;
        let worker = &mut self.workers[w];
        let Some(source) = worker.sources.get_mut(&end) else {
            return;
        };
        loop {
            if source.texts_sent < source.texts.len()
                && source.texts[source.texts_sent].0 <= source.written
            {
                let text = source.texts[source.texts_sent].1.clone();
                match worker.core.channel_send_text(now, end, text.into()) {
                    Ok(()) => source.texts_sent += 1,
                    Err(_) => break,
                }
            } else if source.written < source.total {
                let len = (source.total - source.written).min(source.write_size as u64) as usize;
                let data: Bytes = pattern(source.key, source.written, len);
                match worker.core.channel_write(now, end, data) {
                    Ok(accepted) => {
                        source.written += accepted as u64;
                        if accepted < len {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            } else {
                if source.close_at_end && !source.closed {
                    source.closed = true;
                    let _ = worker.core.channel_close(now, end);
                }
                break;
            }
        }
    }
}

/// A payload as JSON (`null` when absent or unparsable).
pub fn payload_value(payload: Option<&Payload>) -> Value {
    payload
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or(Value::Null)
}
