//! The workers' side of the simulator: their outputs and events, and the channel ends
//! (sources and sinks) they drive.

use super::*;

impl Sim {
    pub(super) fn drain_worker(&mut self, w: usize) -> bool {
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

    pub(super) fn worker_event(&mut self, w: usize, event: WorkerEvent) {
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

    pub(super) fn sink_received(
        &mut self,
        w: usize,
        end: EndId,
        len: u64,
        record: impl FnOnce(&mut Sink),
    ) {
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
    pub(super) fn pump_source(&mut self, w: usize, end: EndId) {
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
