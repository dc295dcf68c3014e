//! The worker task: it owns the core [`Worker`], the connections and every waiting
//! caller, and is the only place the core is touched.
//!
//! Each loop iteration waits for one input (a command from a handle, a network report,
//! or the deadline), reads the clock once, feeds the input, feeds messages held for
//! resumed connections, and executes every output the core produced.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures_channel::oneshot;
use futures_util::{FutureExt, StreamExt};
use iii_core::channel::{channel_url, ChannelRef, ChannelRefs};
use iii_core::wire::{ErrorBody, Payload};
use iii_core::worker::{
    CallOptions, ConnectTarget, ConnectionState, EndId, EndOutcome, FunctionSpec, Rejection,
    SyncId, TraceContext, TriggerSpec, TriggerTypeSpec, Worker, WorkerOutput,
};
use iii_core::{ConnId, InvocationId, Text};
use serde_json::Value;

mod commands;
mod control;
mod ends;
mod events;

use super::credit::WriteCredit;
use super::dial::{dial, DialConfig, DialFailure, Socket};
use super::error::ErrorContext;
use super::handlers::{Handler, TriggerHandler, TriggerRequest};
use super::{Error, Shared};
use crate::conn::{pump, ConnEvent, Conns, Ready, CLOSE_GRACE};
use crate::runtime::{self, BoxFuture, Runtime};
use control::{ControlEvent, ControlSocket};

/// What a reader handle receives, in arrival order.
#[derive(Debug)]
pub(crate) enum ReaderItem {
    Binary(Bytes),
    Text(String),
    /// The end is over: `Ok` for a clean end of stream.
    End(Result<(), Error>),
}

/// How a new end reaches its handle.
pub(crate) enum EndKind {
    /// A reader: items go here.
    Reader(UnboundedSender<ReaderItem>),
    /// A writer: the window it shares with its handle.
    Writer(Arc<WriteCredit>),
}

/// A request from a handle to the task.
pub(crate) enum Command {
    WaitConnected {
        deadline: Instant,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Sync {
        timeout: Duration,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    RegisterFunction(FunctionSpec, Handler),
    UnregisterFunction(String),
    RegisterTriggerType(TriggerTypeSpec, Arc<dyn TriggerHandler>),
    UnregisterTriggerType(String),
    RegisterTrigger(TriggerSpec, oneshot::Sender<Result<String, Error>>),
    UnregisterTrigger(String),
    Invoke {
        function_id: String,
        data: Payload,
        options: CallOptions,
        reply: oneshot::Sender<CallReply>,
    },
    InvokeVoid {
        function_id: String,
        data: Payload,
        options: CallOptions,
    },
    CreateChannel {
        buffer_size: Option<usize>,
        writer: u64,
        reader: u64,
        credit: Arc<WriteCredit>,
        items: UnboundedSender<ReaderItem>,
        reply: oneshot::Sender<Result<ChannelRefs, Error>>,
    },
    OpenEnd {
        key: u64,
        channel_ref: ChannelRef,
        kind: EndKind,
    },
    /// Bytes for a writer: `credited` ones were granted (they fit the window at once);
    /// the rest of a cancelled write is not.
    Write {
        key: u64,
        data: Bytes,
        credited: bool,
    },
    /// A text message for a writer, costing `cost` bytes of credit.
    Text {
        key: u64,
        text: Text,
        cost: usize,
    },
    CloseWriter {
        key: u64,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Abort(u64),
    StartReading(u64),
    CloseReader(u64),
    Consumed {
        key: u64,
        bytes: usize,
    },
    DropEnd(u64),
    Shutdown(Option<oneshot::Sender<()>>),
}

/// A call's raw result and the trace context that came back with it.
pub(crate) type CallReply = Result<(Option<Payload>, TraceContext), Error>;

/// What the network side (and spawned handlers) report to the task.
pub(crate) enum Net<R: Runtime> {
    Conn(ConnEvent),
    Dialed(ConnId, Result<Box<WebSocketStream<Socket<R>>>, DialFailure>),
    Complete(InvocationId, Result<Value, ErrorBody>),
    TriggerResult(String, Result<(), ErrorBody>),
}

enum Waiter {
    Call(oneshot::Sender<CallReply>),
    Channel {
        writer: u64,
        reader: u64,
        credit: Arc<WriteCredit>,
        items: UnboundedSender<ReaderItem>,
        reply: oneshot::Sender<Result<ChannelRefs, Error>>,
    },
}

/// The task's record of one channel end handle.
struct Slot {
    end: EndId,
    kind: SlotKind,
    ended: Option<EndOutcome>,
    /// The handle was dropped: release the end once it is over.
    dropped: bool,
}

enum SlotKind {
    Reader(UnboundedSender<ReaderItem>),
    Writer(WriterSlot),
}

/// A writer's data on its way into the core, and its share of the window.
struct WriterSlot {
    credit: Arc<WriteCredit>,
    /// Credited bytes received from the handle (cumulative).
    arrived: u64,
    /// Data the core's window has not taken yet, in order.
    queue: VecDeque<Queued>,
    /// Credit the queue stands for.
    queued: usize,
    /// The handle's close, answered when the end is over.
    close: Option<oneshot::Sender<Result<(), Error>>>,
    /// `channel_close` was called.
    close_sent: bool,
}

enum Queued {
    Binary(Bytes),
    Text(Text, usize),
}

enum Input<R: Runtime> {
    Command(Option<Command>),
    Net(Net<R>),
    Control(ControlEvent),
    Deadline,
}

/// The task's state. See the [module docs](self).
pub(crate) struct Task<R: Runtime> {
    rt: R,
    core: Worker,
    conns: Conns,
    dialing: BTreeSet<ConnId>,
    address: String,
    dial: DialConfig,
    net_tx: UnboundedSender<Net<R>>,
    shared: Arc<Shared>,
    handlers: BTreeMap<String, Handler>,
    trigger_types: BTreeMap<String, Arc<dyn TriggerHandler>>,
    bindings: BTreeMap<String, TriggerRequest>,
    calls: BTreeMap<InvocationId, Waiter>,
    /// `wait_connected` callers and their deadlines.
    connect_waiters: Vec<(Instant, oneshot::Sender<Result<(), Error>>)>,
    /// `wait_registered` callers.
    syncs: BTreeMap<SyncId, oneshot::Sender<Result<(), Error>>>,
    /// Function registrations the engine refused on the current connection.
    function_rejections: Vec<Rejection>,
    /// The control connection being dialed, to keep its error.
    control_dial: Option<ConnId>,
    /// The open control connection, driven by this task.
    control: Option<ControlSocket<R>>,
    errors: ErrorContext,
    registered: bool,
    /// The core reported the engine unreachable (until it registers a connection).
    unreachable: bool,
    state: ConnectionState,
    slots: BTreeMap<u64, Slot>,
    keys: BTreeMap<EndId, u64>,
    stopping: Option<(Instant, Vec<oneshot::Sender<()>>)>,
}

impl<R: Runtime> Task<R> {
    /// A task around `core`; run it with [`Task::run`].
    pub(crate) fn new(
        rt: R,
        core: Worker,
        address: String,
        dial: DialConfig,
        shared: Arc<Shared>,
        net_tx: UnboundedSender<Net<R>>,
    ) -> Self {
        Self {
            rt,
            core,
            conns: Conns::default(),
            dialing: BTreeSet::new(),
            errors: ErrorContext {
                url: address.clone(),
                ..ErrorContext::default()
            },
            address,
            dial,
            net_tx,
            shared,
            handlers: BTreeMap::new(),
            trigger_types: BTreeMap::new(),
            bindings: BTreeMap::new(),
            calls: BTreeMap::new(),
            connect_waiters: Vec::new(),
            syncs: BTreeMap::new(),
            function_rejections: Vec::new(),
            control_dial: None,
            control: None,
            registered: false,
            unreachable: false,
            state: ConnectionState::Connecting,
            slots: BTreeMap::new(),
            keys: BTreeMap::new(),
            stopping: None,
        }
    }

    /// Drives the worker until it is shut down (or every handle is dropped) and its
    /// connections are closed.
    pub(crate) async fn run(
        mut self,
        mut commands: UnboundedReceiver<Command>,
        mut net: UnboundedReceiver<Net<R>>,
    ) {
        let mut sleep: Option<(Instant, BoxFuture<'static, ()>)> = None;
        let mut commands_open = true;
        let mut net_first = false;
        // The core's first output (the control connect) is already queued.
        self.drain(runtime::now());
        loop {
            let deadline = self.deadline();
            if sleep.as_ref().map(|(at, _)| *at) != deadline {
                sleep = deadline.map(|at| (at, self.rt.sleep_until(at)));
            }
            net_first = !net_first;
            let control = &mut self.control;
            let input = futures_util::future::poll_fn(|cx| {
                // The control connection is written by this task (no hop to another):
                // what the last turn transmitted is fed now, read next, and flushed once
                // nothing else is ready, so that one flush covers a batch.
                if let Some(socket) = control.as_mut() {
                    if let Poll::Ready(event) = socket.poll_feed(cx) {
                        return Poll::Ready(Input::Control(event));
                    }
                    if let Poll::Ready(event) = socket.poll_read(cx) {
                        return Poll::Ready(Input::Control(event));
                    }
                }
                let mut command = |cx: &mut std::task::Context<'_>| {
                    if commands_open {
                        if let Poll::Ready(command) = commands.poll_next_unpin(cx) {
                            return Some(Input::Command(command));
                        }
                    }
                    None
                };
                let mut network = |cx: &mut std::task::Context<'_>| match net.poll_next_unpin(cx) {
                    Poll::Ready(Some(event)) => Some(Input::Net(event)),
                    _ => None,
                };
                let first = if net_first { network(cx) } else { command(cx) };
                if let Some(input) = first {
                    return Poll::Ready(input);
                }
                let second = if net_first { command(cx) } else { network(cx) };
                if let Some(input) = second {
                    return Poll::Ready(input);
                }
                if let Some((_, timer)) = sleep.as_mut() {
                    if timer.poll_unpin(cx).is_ready() {
                        return Poll::Ready(Input::Deadline);
                    }
                }
                if let Some(socket) = control.as_mut() {
                    if let Poll::Ready(event) = socket.poll_flush(cx) {
                        return Poll::Ready(Input::Control(event));
                    }
                }
                Poll::Pending
            })
            .await;
            let now = runtime::now();
            match input {
                Input::Command(Some(command)) => self.command(now, command),
                Input::Command(None) => {
                    commands_open = false;
                    self.begin_stop(now, None);
                }
                Input::Net(event) => self.net(now, event),
                Input::Control(event) => self.control_event(now, event),
                Input::Deadline => {
                    sleep = None;
                    self.core.handle_timeout(now);
                    self.expire_waiters(now);
                }
            }
            self.drain(now);
            self.publish_state();
            if self.stop_done(now) {
                return;
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let stop = self.stopping.as_ref().map(|(at, _)| *at);
        let waiter = self.connect_waiters.iter().map(|(at, _)| *at).min();
        [self.core.poll_timeout(), stop, waiter]
            .into_iter()
            .flatten()
            .min()
    }

    /// `wait_connected` callers whose deadline passed get `Timeout`.
    fn expire_waiters(&mut self, now: Instant) {
        let (expired, waiting) = std::mem::take(&mut self.connect_waiters)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.connect_waiters = waiting;
        for (_, reply) in expired {
            let _ = reply.send(Err(Error::Timeout));
        }
    }

    /// Publishes the core's connection state when it changed.
    fn publish_state(&mut self) {
        let state = self.core.connection_state();
        if state != self.state {
            self.state = state;
            self.shared.state.set(state);
        }
    }

    fn begin_stop(&mut self, now: Instant, reply: Option<oneshot::Sender<()>>) {
        self.shared.stopped.store(true, Ordering::Release);
        match &mut self.stopping {
            Some((_, replies)) => replies.extend(reply),
            None => {
                self.core.shutdown(now);
                let grace = CLOSE_GRACE + Duration::from_millis(500);
                self.stopping = Some((now + grace, reply.into_iter().collect()));
            }
        }
    }

    fn stop_done(&mut self, now: Instant) -> bool {
        let Some((deadline, _)) = &self.stopping else {
            return false;
        };
        if (self.conns.len() > 0 || self.control.is_some()) && now < *deadline {
            return false;
        }
        if let Some((_, replies)) = self.stopping.take() {
            for reply in replies {
                let _ = reply.send(());
            }
        }
        true
    }

    fn control_event(&mut self, now: Instant, event: ControlEvent) {
        let Some(conn) = self.control.as_ref().map(|control| control.conn) else {
            return;
        };
        match event {
            ControlEvent::Message(message) => self.core.handle_message(now, conn, message),
            ControlEvent::Sent(count) => self.core.handle_sent(now, conn, count),
            ControlEvent::Closed(close) => {
                let ours = self.control.take().is_some_and(|control| control.closing);
                if !ours {
                    self.core.handle_closed(now, conn, close);
                }
            }
        }
    }

    /// Executes outputs until there are none, feeding held messages of resumed
    /// connections in between.
    fn drain(&mut self, now: Instant) {
        loop {
            while let Some(output) = self.core.poll_output() {
                self.execute(now, output);
            }
            match self.conns.next_ready() {
                Some(Ready::Message(conn, message)) => {
                    self.core.handle_message(now, conn, message);
                    self.conns.consumed(conn);
                }
                Some(Ready::Closed(conn, close)) => self.core.handle_closed(now, conn, close),
                None => return,
            }
        }
    }

    fn execute(&mut self, now: Instant, output: WorkerOutput) {
        match output {
            WorkerOutput::Connect { conn, target } => {
                let url = match target {
                    ConnectTarget::Control => {
                        self.control_dial = Some(conn);
                        self.address.clone()
                    }
                    ConnectTarget::Channel(channel_ref) => channel_url(&self.address, &channel_ref),
                };
                self.dialing.insert(conn);
                let rt = self.rt.clone();
                let tx = self.net_tx.clone();
                let config = self.dial.clone();
                let control = self.control_dial == Some(conn);
                self.rt.spawn(Box::pin(async move {
                    let result = dial(rt, url, config, control).await;
                    let _ = tx.unbounded_send(Net::Dialed(conn, result.map(Box::new)));
                }));
            }
            WorkerOutput::Transmit { conn, message } => match self.control.as_mut() {
                Some(control) if control.conn == conn => control.transmit(message),
                _ => self.conns.transmit(conn, message),
            },
            WorkerOutput::Close { conn, code, reason } => {
                if let Some(control) = self.control.as_mut().filter(|c| c.conn == conn) {
                    control.close(code, reason);
                } else if self.dialing.remove(&conn) {
                    // Still dialing: dropping the dial's result closes it.
                } else if let Some(close) = self.conns.close(conn, code, reason) {
                    // The peer had already ended it; its held messages are moot now.
                    self.core.handle_closed(now, conn, close);
                }
            }
            WorkerOutput::PauseRead { conn } => self.conns.pause(conn),
            WorkerOutput::ResumeRead { conn } => self.conns.resume(conn),
            WorkerOutput::Event(event) => self.event(now, event),
        }
    }

    fn net(&mut self, now: Instant, event: Net<R>) {
        match event {
            Net::Conn(ConnEvent::Message(conn, message)) => {
                if let Some(message) = self.conns.incoming(conn, message) {
                    self.core.handle_message(now, conn, message);
                    self.conns.consumed(conn);
                }
            }
            Net::Conn(ConnEvent::Sent(conn, count)) => self.core.handle_sent(now, conn, count),
            Net::Conn(ConnEvent::Closed(conn, close)) => {
                if let Some(close) = self.conns.peer_closed(conn, close) {
                    self.core.handle_closed(now, conn, close);
                }
            }
            Net::Dialed(conn, result) => {
                if !self.dialing.remove(&conn) {
                    // Abandoned while connecting: dropping the socket closes it.
                    return;
                }
                match result {
                    Ok(ws) if self.control_dial == Some(conn) => {
                        self.control = Some(ControlSocket::new(conn, *ws));
                        self.core.handle_connected(now, conn);
                    }
                    Ok(ws) => {
                        let ends = self.conns.open(conn);
                        let pumped = pump(
                            self.rt.clone(),
                            *ws,
                            conn,
                            ends,
                            self.net_tx.clone(),
                            Net::Conn,
                        );
                        self.rt.spawn(Box::pin(pumped));
                        self.core.handle_connected(now, conn);
                    }
                    Err(failure) if self.control_dial == Some(conn) => {
                        self.control_dial_failed(now, conn, failure)
                    }
                    Err(failure) => self.core.handle_connect_failed(now, conn, failure.status),
                }
            }
            Net::Complete(id, result) => self.handler_done(now, id, result),
            Net::TriggerResult(id, result) => {
                if let Err(error) = self.core.trigger_registration_result(now, &id, result) {
                    tracing::debug!(%error, "trigger result dropped");
                }
            }
        }
    }
}
