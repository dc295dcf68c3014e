//! Arbitrary operation sequences over a simulated engine and three workers, with the
//! invariants checked after every operation. Used by the proptest suite and by the
//! `sim_ops` fuzz target.

use std::time::Duration;

use bytes::Bytes;
use iii_core::channel::{ChannelRef, ChannelRefs};
use iii_core::wire::control::to_payload;
use iii_core::worker::{CallOutcome, EndId, EndOutcome};
use iii_core::{CloseCode, InvocationId};

use crate::sim::apps::{pattern, Sink};
use crate::sim::{Sim, SimConfig};

/// Number of simulated workers.
pub const WORKERS: usize = 3;

/// Which key an attach presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChoice {
    /// The ref's own key (a second use of it is a reuse).
    Right,
    /// A random key.
    Wrong,
    /// The other direction's key.
    OtherDirection,
}

/// One operation. Indexes are taken modulo what exists, so every value is valid.
#[derive(Debug, Clone)]
#[allow(missing_docs)] // the fields are the operation's arguments, named plainly
pub enum Op {
    /// Worker `from` calls function `f{target}` (served by worker `target`).
    Invoke {
        from: u8,
        target: u8,
        timeout_ms: u16,
    },
    /// Worker `worker` answers its `index`-th waiting invocation.
    Complete { worker: u8, index: u8, ok: bool },
    /// Worker `by` creates a channel.
    CreateChannel { by: u8, buffer: Option<u8> },
    /// Worker `by` creates a channel; `writer` and `reader` open its two ends.
    OpenPair { by: u8, writer: u8, reader: u8 },
    /// Worker `worker` opens an end of channel `channel`.
    Attach {
        worker: u8,
        channel: u8,
        read: bool,
        key: KeyChoice,
    },
    /// An open writer writes `len` bytes.
    Write { end: u8, len: u16 },
    /// An open writer sends a text message.
    SendText { end: u8 },
    /// An open reader starts consuming slowly.
    ReadSlowly { end: u8 },
    /// An open writer closes cleanly.
    Close { end: u8 },
    /// An open writer aborts.
    Abort { end: u8 },
    /// One of a worker's connections drops.
    Disconnect { worker: u8, which: u8 },
    /// Virtual time passes.
    Advance { ms: u16 },
    /// The simulation takes `n` steps.
    Steps { n: u8 },
}

struct Channel {
    refs: ChannelRefs,
    key: u64,
    writer_used: bool,
    reader_used: bool,
}

struct End {
    worker: usize,
    id: EndId,
    channel: usize,
    writer: bool,
    /// Opened with a key that must never pair (wrong, or the other direction's).
    bad: bool,
    key: u64,
    written: u64,
    closed: bool,
    /// The end tried to connect (writers connect on first use, readers at once).
    touched: bool,
}

/// The system under test plus what the operations did.
pub struct Harness {
    /// The simulation.
    pub sim: Sim,
    channels: Vec<Channel>,
    ends: Vec<End>,
    calls: Vec<(usize, InvocationId)>,
}

impl Harness {
    /// Three connected workers, each serving `f{i}` by hand.
    pub fn new(seed: u64) -> Self {
        let mut config = SimConfig {
            seed,
            ..SimConfig::default()
        };
        config.engine.channel_attach_timeout = Duration::from_secs(20);
        config.engine.channel_buffer_bytes = 256 * 1024;
        config.engine.max_channel_message_bytes = 64 * 1024;
        config.engine.read_ahead_bytes = 64 * 1024;
        // Little credit, so the relay really queues and its ordering is exercised.
        config.engine.send_credit = 2;
        config.worker.send_credit = 2;
        // Small, finite socket buffers: backlogs form and backpressure propagates.
        config.shape.window = 16 * 1024;
        config.shape.rate = Some(32 << 20);
        config.worker.writer_window_bytes = 128 * 1024;
        config.worker.reader_window_bytes = 128 * 1024;
        let mut sim = Sim::new(config);
        let workers = sim.connected_workers(WORKERS);
        for w in workers {
            sim.register(w, &format!("f{w}"));
        }
        Self {
            sim,
            channels: Vec::new(),
            ends: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// Applies one operation, then checks the invariants.
    pub fn apply(&mut self, op: &Op) {
        let now = self.sim.now;
        match *op {
            Op::Invoke {
                from,
                target,
                timeout_ms,
            } => {
                let from = usize::from(from) % WORKERS;
                let target = usize::from(target) % WORKERS;
                if self.sim.workers[from].dead {
                    return;
                }
                let timeout = Duration::from_millis(u64::from(timeout_ms % 3000) + 1);
                let data = to_payload(&serde_json::json!({"from": from}));
                if let Ok(id) = self.sim.workers[from].core.invoke(
                    now,
                    &format!("f{target}"),
                    data,
                    Some(timeout),
                ) {
                    self.calls.push((from, id));
                }
            }
            Op::Complete { worker, index, ok } => {
                let w = usize::from(worker) % WORKERS;
                let invoked = &mut self.sim.workers[w].invoked;
                if invoked.is_empty() {
                    return;
                }
                let call = invoked.remove(usize::from(index) % invoked.len());
                let result = if ok {
                    Ok(Some(to_payload(&call.data)))
                } else {
                    Err(iii_core::wire::ErrorBody::new("invocation_failed", "op"))
                };
                // The call may be gone (the connection dropped): that is an error, not a panic.
                let _ = self.sim.workers[w].core.complete(now, call.id, result);
            }
            Op::CreateChannel { by, buffer } => {
                let w = usize::from(by) % WORKERS;
                if self.sim.workers[w].dead || !self.sim.workers[w].core.is_connected() {
                    return;
                }
                let Ok(id) = self.sim.workers[w]
                    .core
                    .create_channel(now, buffer.map(usize::from))
                else {
                    return;
                };
                self.sim.settle();
                if let CallOutcome::Ok(Some(payload)) = self.sim.outcome(w, id) {
                    if let Ok(refs) = serde_json::from_str::<ChannelRefs>(payload.get()) {
                        let key = 1000 + self.channels.len() as u64;
                        self.channels.push(Channel {
                            refs,
                            key,
                            writer_used: false,
                            reader_used: false,
                        });
                    }
                }
            }
            Op::OpenPair { by, writer, reader } => {
                let before = self.channels.len();
                self.apply(&Op::CreateChannel { by, buffer: None });
                if self.channels.len() > before {
                    self.attach(writer, 0, false, KeyChoice::Right);
                    self.attach(reader, 0, true, KeyChoice::Right);
                }
            }
            Op::Attach {
                worker,
                channel,
                read,
                key,
            } => self.attach(worker, channel, read, key),
            Op::Write { end, len } => {
                let Some(index) = self.open_writer(end) else {
                    return;
                };
                self.ends[index].touched = true;
                let e = &self.ends[index];
                let data: Bytes = pattern(e.key, e.written, usize::from(len) * 4);
                let accepted = self.sim.workers[e.worker]
                    .core
                    .channel_write(now, e.id, data);
                if let Ok(n) = accepted {
                    self.ends[index].written += n as u64;
                }
            }
            Op::SendText { end } => {
                let Some(index) = self.open_writer(end) else {
                    return;
                };
                self.ends[index].touched = true;
                let e = &self.ends[index];
                let text = format!("t@{}", e.written);
                let _ = self.sim.workers[e.worker]
                    .core
                    .channel_send_text(now, e.id, text.into());
            }
            Op::ReadSlowly { end } => {
                if self.ends.is_empty() {
                    return;
                }
                let e = &self.ends[usize::from(end) % self.ends.len()];
                if let Some(sink) = self.sim.workers[e.worker].sinks.get_mut(&e.id) {
                    sink.rate = Some(16 * 1024);
                }
            }
            Op::Close { end } => {
                let Some(index) = self.open_writer(end) else {
                    return;
                };
                let e = &mut self.ends[index];
                e.closed = true;
                e.touched = true;
                let _ = self.sim.workers[e.worker].core.channel_close(now, e.id);
            }
            Op::Abort { end } => {
                let Some(index) = self.open_writer(end) else {
                    return;
                };
                let e = &mut self.ends[index];
                e.closed = true;
                e.touched = true;
                let _ =
                    self.sim.workers[e.worker]
                        .core
                        .channel_abort(now, e.id, CloseCode::INTERNAL);
            }
            Op::Disconnect { worker, which } => {
                let w = usize::from(worker) % WORKERS;
                let conns = self.sim.worker_conns(w);
                if !conns.is_empty() {
                    self.sim.cut(w, conns[usize::from(which) % conns.len()]);
                }
            }
            Op::Advance { ms } => self.sim.advance(Duration::from_millis(u64::from(ms))),
            Op::Steps { n } => {
                for _ in 0..n {
                    if !self.sim.step() {
                        break;
                    }
                }
            }
        }
        self.sim.settle();
        self.check();
    }

    fn open_writer(&self, end: u8) -> Option<usize> {
        let writers: Vec<usize> = (0..self.ends.len())
            .filter(|i| self.ends[*i].writer && !self.ends[*i].closed)
            .collect();
        if writers.is_empty() {
            return None;
        }
        Some(writers[usize::from(end) % writers.len()])
    }

    fn attach(&mut self, worker: u8, channel: u8, read: bool, choice: KeyChoice) {
        if self.channels.is_empty() {
            return;
        }
        let w = usize::from(worker) % WORKERS;
        if self.sim.workers[w].dead {
            return;
        }
        // One of the two newest channels, so that ends meet often enough to move data.
        let index = self.channels.len() - 1 - usize::from(channel) % self.channels.len().min(2);
        let c = &mut self.channels[index];
        let (own, other) = if read {
            (&c.refs.reader, &c.refs.writer)
        } else {
            (&c.refs.writer, &c.refs.reader)
        };
        let mut channel_ref: ChannelRef = own.clone();
        let used = if read {
            &mut c.reader_used
        } else {
            &mut c.writer_used
        };
        let bad = match choice {
            // A ref used twice is fine to present: whichever connects first wins the end,
            // and the other is refused (checked in `finish`).
            KeyChoice::Right => {
                *used = true;
                false
            }
            KeyChoice::Wrong => {
                channel_ref.access_key = format!("{:064x}", c.key * 7919);
                true
            }
            KeyChoice::OtherDirection => {
                channel_ref.access_key = other.access_key.clone();
                true
            }
        };
        let key = if bad { c.key + 1_000_000 } else { c.key };
        let now = self.sim.now;
        let id = self.sim.workers[w].core.open_channel(now, channel_ref);
        if read {
            self.sim.workers[w].sinks.insert(id, Sink::new(c.key));
            let _ = self.sim.workers[w].core.channel_start_reading(now, id);
        }
        self.ends.push(End {
            worker: w,
            id,
            channel: index,
            writer: !read,
            bad,
            key,
            written: 0,
            closed: false,
            touched: read,
        });
    }

    /// The invariants that hold after every operation.
    pub fn check(&self) {
        for end in &self.ends {
            let worker = &self.sim.workers[end.worker];
            let Some(sink) = worker.sinks.get(&end.id) else {
                continue;
            };
            assert_eq!(
                sink.mismatch, None,
                "reader bytes are not a prefix of the writer's"
            );
            assert_eq!(sink.order_violation, None, "text and binary out of order");
            if end.bad {
                assert!(sink.pieces.is_empty(), "a bad key paired and received data");
                if let Some(outcome) = &sink.ended {
                    assert!(
                        matches!(outcome, EndOutcome::Refused { .. }),
                        "bad key ended {outcome:?}"
                    );
                }
            }
        }
    }

    fn outcome(&self, end: &End) -> Option<EndOutcome> {
        let worker = &self.sim.workers[end.worker];
        let sink = worker.sinks.get(&end.id).and_then(|s| s.ended.clone());
        sink.or_else(|| {
            worker.events.iter().rev().find_map(|event| match event {
                iii_core::worker::WorkerEvent::ChannelEnded { end: id, outcome }
                    if *id == end.id =>
                {
                    Some(outcome.clone())
                }
                _ => None,
            })
        })
    }

    /// Lets everything finish, then checks the end-state invariants: every call ended
    /// exactly once, and every reader whose writer closed cleanly got all of it.
    pub fn finish(&mut self) {
        self.sim.run_until_idle(2_000_000);
        self.check();
        for (w, id) in &self.calls {
            if !self.sim.workers[*w].dead {
                assert!(
                    self.sim.workers[*w].outcomes.contains_key(id),
                    "call {id} never ended"
                );
            }
        }
        // Per channel and direction, at most one end ever pairs.
        for channel in 0..self.channels.len() {
            for writer in [false, true] {
                let paired: Vec<&End> = self
                    .ends
                    .iter()
                    .filter(|e| e.channel == channel && e.writer == writer && !e.bad && e.touched)
                    .filter(|e| !matches!(self.outcome(e), Some(EndOutcome::Refused { .. })))
                    .collect();
                assert!(
                    paired.len() <= 1,
                    "{} ends paired on one side of a channel",
                    paired.len()
                );
            }
        }
        // A reader that ended cleanly received exactly what its writer wrote.
        for reader in self.ends.iter().filter(|e| !e.writer && !e.bad) {
            if self.outcome(reader) != Some(EndOutcome::Clean) {
                continue;
            }
            let received = self.sim.workers[reader.worker].sinks[&reader.id].received;
            let writer = self.ends.iter().find(|e| {
                e.writer
                    && !e.bad
                    && e.touched
                    && e.channel == reader.channel
                    && !matches!(self.outcome(e), Some(EndOutcome::Refused { .. }))
            });
            let written = writer.map_or(0, |w| w.written);
            assert_eq!(received, written, "a clean end delivered everything");
        }
        let stats = self.sim.engine.stats();
        assert_eq!(stats.channel_buffered_bytes, 0, "{stats:?}");
        if std::env::var_os("III_OPS_STATS").is_some() {
            let received: u64 = self
                .sim
                .workers
                .iter()
                .flat_map(|w| w.sinks.values())
                .map(|s| s.received)
                .sum();
            let clean = self
                .sim
                .workers
                .iter()
                .flat_map(|w| w.sinks.values())
                .filter(|s| s.ended == Some(EndOutcome::Clean))
                .count();
            let refused = self
                .sim
                .workers
                .iter()
                .flat_map(|w| w.sinks.values())
                .filter(|s| matches!(s.ended, Some(EndOutcome::Refused { .. })))
                .count();
            let outcomes: usize = self.sim.workers.iter().map(|w| w.outcomes.len()).sum();
            eprintln!("channels={} ends={} received={received} clean={clean} refused={refused} calls={} outcomes={outcomes} steps={}",
                self.channels.len(), self.ends.len(), self.calls.len(), self.sim.steps);
        }
    }
}

/// Reads fuzz input; past the end every read is zero.
struct ByteReader<'a>(&'a [u8]);

impl ByteReader<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((byte, rest)) => {
                self.0 = rest;
                *byte
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
}

impl Op {
    /// Decodes operations from raw bytes (the `sim_ops` fuzz target): one tag byte picks
    /// the operation with the proptest's weights, the following bytes fill its fields,
    /// clamped to the proptest's ranges. Any byte string decodes; at most `max` ops.
    pub fn decode_all(data: &[u8], max: usize) -> Vec<Op> {
        let mut input = ByteReader(data);
        let mut ops = Vec::new();
        while !input.0.is_empty() && ops.len() < max {
            ops.push(Op::decode(&mut input));
        }
        ops
    }

    fn decode(input: &mut ByteReader<'_>) -> Op {
        // Cumulative weights as in tests/prop_ops.rs (3,3,2,3,3,6,2,1,2,1,1,2,4 of 33).
        match input.u8() % 33 {
            0..=2 => Op::Invoke {
                from: input.u8(),
                target: input.u8(),
                timeout_ms: input.u16(),
            },
            3..=5 => Op::Complete {
                worker: input.u8(),
                index: input.u8(),
                ok: input.bool(),
            },
            6 | 7 => Op::CreateChannel {
                by: input.u8(),
                buffer: {
                    let raw = input.u8();
                    (raw & 0x80 == 0).then_some(raw % 8)
                },
            },
            8..=10 => Op::OpenPair {
                by: input.u8(),
                writer: input.u8(),
                reader: input.u8(),
            },
            11..=13 => Op::Attach {
                worker: input.u8(),
                channel: input.u8(),
                read: input.bool(),
                key: match input.u8() % 8 {
                    0 => KeyChoice::Wrong,
                    1 => KeyChoice::OtherDirection,
                    _ => KeyChoice::Right,
                },
            },
            14..=19 => Op::Write {
                end: input.u8(),
                len: 1 + input.u16() % 19_999,
            },
            20 | 21 => Op::SendText { end: input.u8() },
            22 => Op::ReadSlowly { end: input.u8() },
            23 | 24 => Op::Close { end: input.u8() },
            25 => Op::Abort { end: input.u8() },
            26 => Op::Disconnect {
                worker: input.u8(),
                which: input.u8(),
            },
            27 | 28 => Op::Advance {
                ms: input.u16() % 2000,
            },
            _ => Op::Steps {
                n: 1 + input.u8() % 39,
            },
        }
    }
}
