//! The engine's side of the simulator: its closes and outputs, and connecting a worker's
//! connection to it.

use super::*;

impl Sim {
    /// The engine closes `conn` (dropping what it had not written yet when `abort`).
    pub(super) fn engine_close(
        &mut self,
        conn: ConnId,
        code: Option<CloseCode>,
        reason: &str,
        abort: bool,
    ) {
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

    pub(super) fn drain_engine(&mut self) -> bool {
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

    pub(super) fn engine_link(&mut self, conn: ConnId) -> Option<&mut Link> {
        let id = self.by_engine.get(&conn)?;
        self.links.get_mut(id)
    }

    pub(super) fn worker_link(&mut self, w: usize, conn: ConnId) -> Option<&mut Link> {
        let id = self.by_worker.get(&(w, conn))?;
        self.links.get_mut(id)
    }

    pub(super) fn connect(&mut self, w: usize, conn: ConnId, target: ConnectTarget) {
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
}
