//! The simulator's scheduler: running until a condition or quiescence, advancing the
//! virtual clock, delivering one item per step, cutting and reaping links.

use super::*;

impl Sim {
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

    pub(super) fn tail(&self) -> String {
        self.transcript.tail().join("\n")
    }

    pub(super) fn next_event(&self) -> Option<Instant> {
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

    pub(super) fn check_buffers(&mut self) {
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
    pub(super) fn deliver_one(&mut self, now: Instant) {
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

    pub(super) fn cut_link(&mut self, id: u64) {
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

    pub(super) fn reap(&mut self, id: u64) {
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
}
