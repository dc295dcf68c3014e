//! The `worker_inputs` target: one worker fed arbitrary inputs.

mod commands;
mod correlator;
mod messages;

pub use correlator::correlator;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::values::{error_value, finish_object, payload_value, push_capped, uuid_value, BINDINGS};
use crate::{Input, DRAIN_LIMIT, MAX_OPS};
use iii_core::Instant;

use iii_core::ids::{ConnId, InvocationId};
use iii_core::worker::{
    CallOutcome, ConnectTarget, EndId, Worker, WorkerConfig, WorkerEvent, WorkerOutput,
};

/// Worker limits small enough for fuzz inputs to reach them.
fn worker_config(flags: u8) -> WorkerConfig {
    WorkerConfig {
        invocation_timeout: Duration::from_millis(500),
        reconnect_initial: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(80),
        reconnect_jitter: 0.2,
        max_control_message_bytes: 4096,
        send_credit: 1 + usize::from(flags & 3),
        max_offline_queue_bytes: 1024,
        chunk_size: 32 + 32 * usize::from((flags >> 2) & 3),
        writer_window_bytes: 256,
        reader_window_bytes: 256,
        ..WorkerConfig::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// `Connect` emitted; no answer yet.
    Pending,
    /// Reported connected.
    Open,
    /// The worker emitted `Close` for it.
    Closed,
    /// Reported closed or failed.
    Gone,
}

#[derive(Debug)]
struct WorkerConn {
    control: bool,
    link: Link,
    paused: bool,
    in_flight: usize,
}

#[derive(Debug)]
struct CallModel {
    deadline: Instant,
    /// Handed to an open control connection (the engine knows it).
    sent: bool,
}

/// What a delivered `invocationresult` must complete, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    OkNone,
    Error,
}

struct WorkerRig {
    worker: Worker,
    credit: usize,
    default_timeout: Duration,
    now: Instant,
    conns: BTreeMap<ConnId, WorkerConn>,
    /// Calls returned by `invoke` and not completed.
    calls: BTreeMap<InvocationId, CallModel>,
    /// Every call ever made (results are also sent for finished ones).
    made: Vec<InvocationId>,
    completed: BTreeSet<InvocationId>,
    /// A result was delivered for a pending call: it must complete in this drain.
    expect: Option<(InvocationId, Expect, bool)>,
    /// `Invoked` ids waiting for `complete`.
    incoming: BTreeSet<InvocationId>,
    incoming_seen: Vec<InvocationId>,
    /// `TriggerRequested` ids waiting for an answer.
    trigger_requests: BTreeSet<String>,
    functions: Vec<String>,
    trigger_types: Vec<String>,
    bindings: Vec<String>,
    ends: Vec<EndId>,
    /// Only the ops about calls (the `correlator` target).
    calls_only: bool,
}

const WORKER_FUNCTIONS: [&str; 3] = ["f0", "f1", ""];

impl WorkerRig {
    fn new(flags: u8, start: Instant, calls_only: bool) -> Self {
        let config = worker_config(flags);
        let credit = config.send_credit;
        let default_timeout = config.invocation_timeout;
        let worker = match Worker::new(config, [flags; 32], start) {
            Ok(worker) => worker,
            Err(error) => panic!("fuzz worker config is invalid: {error}"),
        };
        let mut rig = Self {
            worker,
            credit,
            default_timeout,
            now: start,
            conns: BTreeMap::new(),
            calls: BTreeMap::new(),
            made: Vec::new(),
            completed: BTreeSet::new(),
            expect: None,
            incoming: BTreeSet::new(),
            incoming_seen: Vec::new(),
            trigger_requests: BTreeSet::new(),
            functions: Vec::new(),
            trigger_types: Vec::new(),
            bindings: Vec::new(),
            ends: Vec::new(),
            calls_only,
        };
        rig.drain();
        rig
    }

    /// The control connection the worker asked for last, if it is open.
    fn open_control(&self) -> Option<ConnId> {
        self.conns
            .iter()
            .rev()
            .find(|(_, c)| c.control)
            .filter(|(_, c)| c.link == Link::Open)
            .map(|(conn, _)| *conn)
    }

    fn live(&mut self, conn: ConnId, what: &str) -> &mut WorkerConn {
        let Some(state) = self.conns.get_mut(&conn) else {
            panic!("{what} for {conn}, which the worker never asked to connect");
        };
        assert!(
            !matches!(state.link, Link::Closed | Link::Gone),
            "{what} for {conn} after it was closed ({:?})",
            state.link
        );
        state
    }

    fn drain(&mut self) {
        let credit = self.credit;
        let mut count = 0;
        while let Some(output) = self.worker.poll_output() {
            count += 1;
            assert!(count <= DRAIN_LIMIT, "draining outputs does not terminate");
            match output {
                WorkerOutput::Connect { conn, target } => {
                    assert!(!self.conns.contains_key(&conn), "{conn} reused");
                    self.conns.insert(
                        conn,
                        WorkerConn {
                            control: target == ConnectTarget::Control,
                            link: Link::Pending,
                            paused: false,
                            in_flight: 0,
                        },
                    );
                }
                WorkerOutput::Transmit { conn, .. } => {
                    let state = self.live(conn, "Transmit");
                    assert_eq!(
                        state.link,
                        Link::Open,
                        "Transmit on {conn} before it opened"
                    );
                    state.in_flight += 1;
                    assert!(state.in_flight <= credit, "{conn}: in flight over credit");
                }
                WorkerOutput::Close { conn, .. } => self.live(conn, "Close").link = Link::Closed,
                WorkerOutput::PauseRead { conn } => self.live(conn, "PauseRead").paused = true,
                WorkerOutput::ResumeRead { conn } => {
                    self.live(conn, "ResumeRead").paused = false;
                }
                WorkerOutput::Event(event) => self.event(event),
            }
        }
        if let Some((id, _, _)) = self.expect.take() {
            panic!("a result for pending call {id} did not complete it");
        }
    }

    fn event(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::CallCompleted {
                invocation_id,
                outcome,
                ..
            } => {
                assert!(
                    self.calls.remove(&invocation_id).is_some(),
                    "call {invocation_id} completed but was not pending (completed before: {})",
                    self.completed.contains(&invocation_id)
                );
                self.completed.insert(invocation_id);
                if let Some((id, expect, _)) = self.expect {
                    if id == invocation_id {
                        let got = match &outcome {
                            CallOutcome::Ok(Some(_)) => Some(Expect::Ok),
                            CallOutcome::Ok(None) => Some(Expect::OkNone),
                            CallOutcome::Error(_) => Some(Expect::Error),
                            _ => None,
                        };
                        assert_eq!(got, Some(expect), "call {id} ended with {outcome:?}");
                        self.expect = None;
                    }
                }
            }
            WorkerEvent::Invoked { invocation_id, .. } => {
                self.incoming.insert(invocation_id);
                push_capped(&mut self.incoming_seen, invocation_id);
            }
            WorkerEvent::TriggerRequested { id, .. } => {
                self.trigger_requests.insert(id);
            }
            WorkerEvent::TriggerRemoved { id, .. } => {
                self.trigger_requests.remove(&id);
            }
            WorkerEvent::Disconnected { .. } => {
                // The worker drops incoming work and trigger requests with the connection.
                self.incoming.clear();
                self.trigger_requests.clear();
            }
            _ => {}
        }
    }

    fn pick_conn(&self, input: &mut Input<'_>, want: &[Link]) -> Option<ConnId> {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| want.contains(&c.link))
            .map(|(conn, _)| *conn)
            .collect();
        input.pick(&conns).copied()
    }

    fn step(&mut self, input: &mut Input<'_>) {
        if self.calls_only {
            self.correlator_step(input);
        } else {
            match input.below(4) {
                0 => self.network(input),
                1 => self.time(input),
                _ => self.command(input),
            }
        }
        self.drain();
    }

    /// Runs far past every deadline: each call made must have completed exactly once.
    fn finish(&mut self) {
        for _ in 0..3 {
            self.now += Duration::from_secs(3600);
            let now = self.now;
            self.worker.handle_timeout(now);
            self.drain();
        }
        assert!(
            self.calls.is_empty(),
            "calls never completed: {:?}",
            self.calls
        );
    }
}

/// `worker_inputs`: one [`Worker`] fed connects, connect failures, arbitrary engine
/// messages (raw and well-formed), channel data, send completions, closes, timeouts and
/// every command. After every input the outputs are drained (bounded) and checked: no
/// output for a connection after the worker closed it or it was reported closed,
/// `Transmit` only on connections reported open and within the send credit, connection
/// ids never reused, `poll_timeout` after `handle_timeout(now)` later than `now`, and the
/// call/invocation bookkeeping of [`correlator`]. At the end every call has completed
/// exactly once.
pub fn worker_inputs(data: &[u8], start: Instant) {
    let mut input = Input::new(data);
    let mut rig = WorkerRig::new(input.u8(), start, false);
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        rig.step(&mut input);
    }
    rig.finish();
}
