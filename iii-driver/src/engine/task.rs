//! The engine task: it owns the core [`Engine`] and the connection table, takes
//! [`Input`]s from the connections and the handles, and executes the core's outputs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use futures_channel::mpsc::UnboundedReceiver;
use futures_channel::oneshot;
use futures_util::future::{self, Either};
use futures_util::StreamExt;
use iii_core::engine::{
    Accepted, Admission, Engine, EngineMetrics, EngineOutput, EngineStats, Ticket,
};
use iii_core::upgrade::{Rejection, UpgradeRequest};
use iii_core::PeerClose;

use super::events::EventLog;
use super::{DrainOutcome, EngineSettings};
use crate::conn::{ConnEnds, ConnEvent, Conns, Ready};
use crate::runtime::{now, BoxFuture, Runtime};
use crate::slots::SlotGuard;

pub(super) type AcceptReply = Result<(Accepted, ConnEnds), Rejection>;

/// What the engine task is asked to do.
pub(super) enum Input {
    Accept {
        target: String,
        authorization: Option<String>,
        origin: Option<String>,
        listener: usize,
        peer: IpAddr,
        headers: Vec<(String, String)>,
        /// The connection's pre-upgrade slot: given back once the engine has decided
        /// or deferred the upgrade.
        slot: Option<SlotGuard>,
        reply: oneshot::Sender<AcceptReply>,
    },
    Conn(ConnEvent),
    Stats(oneshot::Sender<EngineStats>),
    Metrics(oneshot::Sender<(EngineMetrics, EngineStats)>),
    Drain {
        until: Instant,
        done: oneshot::Sender<DrainOutcome>,
    },
    Shutdown(oneshot::Sender<()>),
    /// Fault injection for tests: make the engine task panic.
    #[cfg(feature = "fault-injection")]
    Panic,
}

/// The engine task: owns the core and the connection table.
pub(super) async fn run<R: Runtime>(
    rt: R,
    mut engine: Engine,
    mut inputs: UnboundedReceiver<Input>,
    settings: Arc<EngineSettings>,
) {
    let mut conns = Conns::default();
    // Upgrades an authentication function decides, by ticket.
    let mut deferred: Deferred = BTreeMap::new();
    let mut log = EventLog::new(&settings);
    let mut timer: Option<(Instant, BoxFuture<'static, ()>)> = None;
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    // A drain in progress: its deadline and who waits for its end.
    let mut drain: Option<(Instant, Vec<oneshot::Sender<DrainOutcome>>)> = None;
    loop {
        if let Some((until, _)) = &drain {
            let timed_out = now() >= *until;
            if timed_out || engine.is_idle() {
                let outcome = if timed_out {
                    DrainOutcome::TimedOut
                } else {
                    DrainOutcome::Idle
                };
                tracing::info!(?outcome, "drained; closing what is left");
                engine.shutdown(now());
                execute(
                    &mut engine,
                    &mut conns,
                    (&mut deferred, &mut log),
                    &settings,
                    now(),
                );
                let waiting =
                    close_connections(&rt, &settings, &engine, &mut inputs, &mut conns).await;
                for done in drain.take().map(|(_, d)| d).unwrap_or_default() {
                    let _ = done.send(outcome);
                }
                waiting.answer(outcome);
                break;
            }
        }
        // Re-arm the timer only when the deadline moved (the core's, the drain's, or the
        // log summary's).
        let wake = [
            engine.poll_timeout(),
            drain.as_ref().map(|(until, _)| *until),
            log.due(),
        ]
        .into_iter()
        .flatten()
        .min();
        match (wake, &timer) {
            (Some(at), Some((armed, _))) if *armed == at => {}
            (Some(at), _) => timer = Some((at, rt.sleep_until(at))),
            (None, _) => timer = None,
        }
        let input = match timer.as_mut() {
            Some((_, sleep)) => match future::select(inputs.next(), sleep.as_mut()).await {
                Either::Left((input, _)) => input,
                Either::Right(((), _)) => {
                    timer = None;
                    engine.handle_timeout(now());
                    execute(
                        &mut engine,
                        &mut conns,
                        (&mut deferred, &mut log),
                        &settings,
                        now(),
                    );
                    continue;
                }
            },
            None => inputs.next().await,
        };
        let Some(input) = input else { break };
        let now = now();
        // Handle this input and whatever else is already queued, then run the outputs.
        let mut next = Some(input);
        let mut budget = 64;
        while let Some(input) = next.take() {
            match input {
                Input::Accept {
                    target,
                    authorization,
                    origin,
                    listener,
                    peer,
                    headers,
                    slot,
                    reply,
                } => {
                    let request = UpgradeRequest::to(&target)
                        .with_authorization(authorization.as_deref())
                        .with_origin(origin.as_deref())
                        .on_listener(listener, Some(peer), &headers);
                    match engine.accept(now, &request) {
                        Admission::Accepted(accepted) => answer_upgrade(
                            &mut engine,
                            &mut conns,
                            &settings,
                            now,
                            reply,
                            Ok(accepted),
                        ),
                        Admission::Refused(rejection) => {
                            let _ = reply.send(Err(rejection));
                        }
                        Admission::Deferred(ticket) => {
                            deferred.insert(ticket, reply);
                        }
                    }
                    drop(slot);
                }
                Input::Conn(ConnEvent::Message(conn, message)) => {
                    if let Some(message) = conns.incoming(conn, message) {
                        engine.handle_message(now, conn, message);
                        conns.consumed(conn);
                    }
                }
                Input::Conn(ConnEvent::Sent(conn, count)) => engine.handle_sent(now, conn, count),
                Input::Conn(ConnEvent::Closed(conn, close)) => {
                    if let Some(close) = conns.peer_closed(conn, close) {
                        engine.handle_closed(now, conn, close);
                    }
                }
                Input::Stats(reply) => {
                    let _ = reply.send(engine.stats());
                }
                Input::Metrics(reply) => {
                    let _ = reply.send((engine.metrics().clone(), engine.stats()));
                }
                Input::Drain { until, done } => {
                    if drain.is_none() {
                        tracing::info!(
                            "draining: new workers are refused until in-flight work ends"
                        );
                        engine.drain(now);
                    }
                    let entry = drain.get_or_insert_with(|| (until, Vec::new()));
                    entry.0 = entry.0.min(until);
                    entry.1.push(done);
                }
                Input::Shutdown(done) => {
                    engine.shutdown(now);
                    shutdown = Some(done);
                }
                #[cfg(feature = "fault-injection")]
                Input::Panic => panic!("fault injected into the engine task"),
            }
            execute(
                &mut engine,
                &mut conns,
                (&mut deferred, &mut log),
                &settings,
                now,
            );
            budget -= 1;
            if budget > 0 {
                next = inputs.try_recv().ok();
            }
        }
        if let Some(done) = shutdown.take() {
            let waiting = close_connections(&rt, &settings, &engine, &mut inputs, &mut conns).await;
            let _ = done.send(());
            waiting.answer(DrainOutcome::Idle);
            break;
        }
    }
    tracing::debug!(connections = conns.len(), "engine task stopped");
}

/// After [`Engine::shutdown`]: lets the connections write their Close (behind what was
/// queued before it) and hear the peer's reply, until every one has ended or
/// [`EngineSettings::close_wait`] has passed, so that peers get a Close rather than a reset
/// when the process exits next. Upgrades arriving meanwhile are refused (503); drain and
/// shutdown requests are answered once this returns.
async fn close_connections<R: Runtime>(
    rt: &R,
    settings: &EngineSettings,
    engine: &Engine,
    inputs: &mut UnboundedReceiver<Input>,
    conns: &mut Conns,
) -> WaitingForStop {
    let mut waiting = WaitingForStop::default();
    let mut deadline = rt.sleep_until(now() + settings.close_wait);
    while conns.len() > 0 {
        // The deadline is polled first: peers that keep inputs coming (frames, upgrades)
        // cannot stretch the wait past `close_wait`.
        let input = match future::select(deadline.as_mut(), inputs.next()).await {
            Either::Right((Some(input), _)) => input,
            Either::Right((None, _)) => break,
            Either::Left(((), _)) => {
                tracing::debug!(
                    connections = conns.len(),
                    "connections still closing at exit"
                );
                break;
            }
        };
        match input {
            Input::Accept { reply, .. } => {
                let _ = reply.send(Err(Rejection::Unavailable));
            }
            Input::Conn(ConnEvent::Closed(conn, _)) => conns.remove(conn),
            Input::Conn(_) => {}
            Input::Stats(reply) => {
                let _ = reply.send(engine.stats());
            }
            Input::Metrics(reply) => {
                let _ = reply.send((engine.metrics().clone(), engine.stats()));
            }
            Input::Drain { done, .. } => waiting.drains.push(done),
            Input::Shutdown(done) => waiting.shutdowns.push(done),
            #[cfg(feature = "fault-injection")]
            Input::Panic => {}
        }
    }
    waiting
}

/// Drain and shutdown requests that arrived while the connections were closing.
#[derive(Default)]
struct WaitingForStop {
    drains: Vec<oneshot::Sender<DrainOutcome>>,
    shutdowns: Vec<oneshot::Sender<()>>,
}

impl WaitingForStop {
    /// The engine has stopped: answers everyone who asked meanwhile.
    fn answer(self, outcome: DrainOutcome) {
        for done in self.drains {
            let _ = done.send(outcome);
        }
        for done in self.shutdowns {
            let _ = done.send(());
        }
    }
}

/// Upgrades waiting for an authentication function's decision.
type Deferred = BTreeMap<Ticket, oneshot::Sender<AcceptReply>>;

/// Answers an upgrade the core decided: an accepted one gets its connection (and is
/// closed again if the handshake task is gone).
fn answer_upgrade(
    engine: &mut Engine,
    conns: &mut Conns,
    settings: &EngineSettings,
    now: Instant,
    reply: oneshot::Sender<AcceptReply>,
    decision: Result<Accepted, Rejection>,
) {
    match decision {
        Ok(accepted) => {
            let options = settings.conn_options(&accepted);
            let ends = conns.open_with(accepted.conn, options);
            if reply.send(Ok((accepted, ends))).is_err() {
                engine.handle_closed(now, accepted.conn, PeerClose::Lost);
                conns.remove(accepted.conn);
            }
        }
        Err(rejection) => {
            let _ = reply.send(Err(rejection));
        }
    }
}

/// Drains the core's outputs into the connections, feeding held messages (and then the
/// held end) of resumed connections as they become admissible.
fn execute(
    engine: &mut Engine,
    conns: &mut Conns,
    (deferred, log): (&mut Deferred, &mut EventLog),
    settings: &EngineSettings,
    now: Instant,
) {
    log.tick(now);
    loop {
        while let Some(output) = engine.poll_output() {
            match output {
                EngineOutput::Admitted { ticket, admission } => match deferred.remove(&ticket) {
                    Some(reply) => answer_upgrade(engine, conns, settings, now, reply, admission),
                    None => {
                        if let Ok(accepted) = admission {
                            engine.handle_closed(now, accepted.conn, PeerClose::Lost);
                        }
                    }
                },
                EngineOutput::Transmit { conn, message } => conns.transmit(conn, message),
                EngineOutput::Close { conn, code, reason } => {
                    if let Some(close) = conns.close(conn, code, reason) {
                        engine.handle_closed(now, conn, close);
                    }
                }
                EngineOutput::Abort { conn, code, reason } => {
                    if let Some(close) = conns.abort(conn, code, reason) {
                        engine.handle_closed(now, conn, close);
                    }
                }
                EngineOutput::PauseRead { conn } => conns.pause(conn),
                EngineOutput::ResumeRead { conn } => conns.resume(conn),
                EngineOutput::Event(event) => log.record(&event, now),
            }
        }
        match conns.next_ready() {
            Some(Ready::Message(conn, message)) => {
                engine.handle_message(now, conn, message);
                conns.consumed(conn);
            }
            Some(Ready::Closed(conn, close)) => engine.handle_closed(now, conn, close),
            None => return,
        }
    }
}
