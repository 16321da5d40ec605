//! The workers: honest `piswarm worker`s (with the real reconnection policy), naive clients,
//! slow ones, and the hostile kinds, each following docs/protocol.md from the client's side.

use super::*;
use crate::simulation::scenario::Kind;
use crate::simulation::{ms, secs};
use piswarm::job::Job;
use piswarm::maths::{series, sums};
use piswarm::wire::{Dec, DoneReason, ErrorCode, PROTOCOL_VERSION};

impl World {
    pub(super) fn send(&mut self, id: ConnId, msg: ClientMessage) {
        let d = self.delay();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if !conn.client_open {
            return;
        }
        if conn.partitioned {
            conn.held_to_server.push(msg);
            return;
        }
        conn.to_server_at = conn.to_server_at.max(self.now + d);
        let t = conn.to_server_at;
        self.at(t, Ev::ToServer(id, msg));
    }

    pub(super) fn connect(&mut self, wi: usize, life: u32) -> Check {
        let w = &self.workers[wi];
        if !w.alive
            || w.life != life
            || w.conn.is_some()
            || matches!(w.state, WState::Finished | WState::GaveUp)
        {
            return Ok(());
        }
        if self.core.is_none() {
            // Connection refused: the coordinator is down.
            return self.connection_failed(wi);
        }
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                worker: wi,
                life,
                process: self.process,
                server_open: true,
                client_open: true,
                last_line: self.now,
                to_client_at: self.now,
                to_server_at: self.now,
                partitioned: false,
                held_to_client: Vec::new(),
                held_to_server: Vec::new(),
                results_in: 0,
                replies_out: 0,
                eof_pending: false,
            },
        );
        let w = &mut self.workers[wi];
        w.conn = Some(id);
        w.epoch += 1;
        w.state = WState::Welcoming;
        let name = w.spec.name.clone();
        self.note(|| format!("worker {name} connects as {id}"));
        self.send(
            id,
            ClientMessage::Hello {
                version: PROTOCOL_VERSION,
                worker: name,
                token: None,
                agent: Some("piswarm/sim".into()),
            },
        );
        Ok(())
    }

    /// The connection could not be made or was lost: retry by the worker's policy, or give up.
    pub(super) fn connection_failed(&mut self, wi: usize) -> Check {
        let jitter = self.rng.unit();
        let now = self.now;
        let w = &mut self.workers[wi];
        if w.state == WState::Active {
            w.offline_since = now;
        }
        w.conn = None;
        w.state = WState::Idle;
        match w.reconnect.next_wait(now, jitter) {
            Some(wait) => {
                let life = w.life;
                self.at(now + wait, Ev::Connect { worker: wi, life });
                Ok(())
            }
            None => {
                w.state = WState::GaveUp;
                if !w.spec.kind.honest() {
                    return Ok(());
                }
                let (since, retry_for) = (w.offline_since, w.spec.retry_for.unwrap_or_default());
                // It may give up once it has been without a coordinator for --retry-for (less
                // its last backoff), and only if the coordinator was not there to take it.
                if now + secs(8) < since + retry_for {
                    return Err(format!(
                        "honest worker {} gave up after {:?} without a coordinator, before its --retry-for {retry_for:?}",
                        w.spec.name,
                        now - since
                    ));
                }
                let reachable = self
                    .up
                    .iter()
                    .map(|&(a, b)| (a.max(since), b.min(now)))
                    .any(|(a, b)| b > a && b - a >= secs(15));
                if reachable {
                    return Err(format!(
                        "honest worker {} gave up although the coordinator could be reached for 15 s in its last {:?}",
                        w.spec.name,
                        now - since
                    ));
                }
                Ok(())
            }
        }
    }

    pub(super) fn client_eof(&mut self, id: ConnId) -> Check {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        if !conn.client_open {
            return Ok(());
        }
        conn.client_open = false;
        let (wi, life) = (conn.worker, conn.life);
        let w = &self.workers[wi];
        if !w.alive || w.life != life || w.conn != Some(id) {
            return Ok(());
        }
        if matches!(w.state, WState::Finished) {
            return Ok(());
        }
        self.note(|| format!("worker {wi} lost connection {id}"));
        self.connection_failed(wi)
    }

    pub(super) fn client_receives(&mut self, id: ConnId, msg: ServerMessage) -> Check {
        let Some(conn) = self.conns.get(&id) else {
            return Ok(());
        };
        if !conn.client_open {
            return Ok(());
        }
        let wi = conn.worker;
        if self.workers[wi].conn != Some(id) || !self.workers[wi].alive {
            return Ok(());
        }
        let kind = self.workers[wi].spec.kind;
        match msg {
            ServerMessage::Welcome {
                run, max_prefetch, ..
            } => {
                let now = self.now;
                let w = &mut self.workers[wi];
                // (Hostile clients keep backing off: a liar refused again and again comes back
                // every few seconds rather than at once, which only keeps the seed short.)
                if kind.honest() {
                    w.reconnect.connected(now);
                }
                w.state = WState::Active;
                if w.run != Some(run) || kind == Kind::Naive {
                    w.unacked.clear();
                    w.run = Some(run);
                }
                w.window = max_prefetch.max(1) as usize;
                w.resending.clear();
                w.to_resend = w.unacked.keys().copied().collect();
                let prefetch = match kind {
                    Kind::Hoarder => max_prefetch,
                    Kind::Resender => 0,
                    _ => w.spec.prefetch.clamp(1, max_prefetch.max(1)),
                };
                let life = w.life;
                if prefetch > 0 {
                    self.send(id, ClientMessage::Request { count: prefetch });
                }
                self.send_resends(wi, id);
                let beat = self.sc.idle / 6;
                self.at(
                    self.now + beat,
                    Ev::Heartbeat {
                        worker: wi,
                        life,
                        conn: id,
                    },
                );
                if kind == Kind::Resender {
                    let t = self.rng.millis(100, 5_000);
                    self.at(
                        self.now + t,
                        Ev::Resend {
                            worker: wi,
                            life,
                            conn: id,
                        },
                    );
                }
            }
            ServerMessage::Assign { id: i, a, b, .. } => {
                if kind == Kind::Hoarder {
                    return Ok(());
                }
                let w = &mut self.workers[wi];
                w.queue.push_back((w.epoch, i.0, a.0, b.0));
                self.start_computing(wi);
            }
            ServerMessage::Ack { id: i, .. } => self.answered(wi, id, i.0),
            ServerMessage::Error {
                id: Some(i), code, ..
            } => {
                self.answered(wi, id, i.0);
                if code == ErrorCode::Refused {
                    return self.drop_connection(wi, id);
                }
            }
            ServerMessage::Error { .. } => return self.drop_connection(wi, id),
            ServerMessage::Done { reason } => {
                self.send(id, ClientMessage::Bye {});
                self.close_client(id);
                let retry = self.workers[wi].spec.retry_for.is_some();
                match reason {
                    DoneReason::JobComplete => {
                        self.workers[wi].state = WState::Finished;
                        self.workers[wi].conn = None;
                    }
                    DoneReason::ServerStopping if retry => return self.connection_failed(wi),
                    DoneReason::ServerStopping => {
                        self.workers[wi].state = WState::Finished;
                        self.workers[wi].conn = None;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn drop_connection(&mut self, wi: usize, id: ConnId) -> Check {
        self.close_client(id);
        self.connection_failed(wi)
    }

    /// The client closes its side: the server sees it after what the client sent.
    pub(super) fn close_client(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            if conn.client_open {
                conn.client_open = false;
                let t = conn.to_server_at.max(self.now) + ms(1);
                if conn.partitioned {
                    conn.eof_pending = true;
                } else {
                    self.at(t, Ev::ServerEof(id));
                }
            }
        }
    }

    pub(super) fn answered(&mut self, wi: usize, conn: ConnId, id: u64) {
        let w = &mut self.workers[wi];
        w.unacked.remove(&id);
        if w.resending.remove(&id) {
            self.send_resends(wi, conn);
        }
    }

    pub(super) fn send_resends(&mut self, wi: usize, conn: ConnId) {
        let mut out = Vec::new();
        let w = &mut self.workers[wi];
        while w.resending.len() < w.window {
            let Some(id) = w.to_resend.pop_front() else {
                break;
            };
            let Some(r) = w.unacked.get(&id) else {
                continue;
            };
            out.push(WorkResult {
                resend: true,
                ..r.clone()
            });
            w.resending.insert(id);
        }
        for r in out {
            self.send(conn, ClientMessage::Result(r));
        }
    }

    pub(super) fn start_computing(&mut self, wi: usize) {
        loop {
            let w = &mut self.workers[wi];
            if w.busy >= w.spec.threads {
                return;
            }
            let Some((epoch, id, _, _)) = w.queue.pop_front() else {
                return;
            };
            // Tasks of an earlier connection that have not started are skipped (the pool does).
            if epoch != w.epoch {
                continue;
            }
            w.busy += 1;
            let (life, (lo, hi)) = (w.life, w.spec.compute);
            let d = self.rng.millis(lo, hi);
            self.at(
                self.now + d,
                Ev::Computed {
                    worker: wi,
                    life,
                    epoch,
                    id,
                },
            );
        }
    }

    pub(super) fn computed(&mut self, wi: usize, life: u32, epoch: u64, id: u64) -> Check {
        let kind = self.workers[wi].spec.kind;
        {
            let w = &mut self.workers[wi];
            if !w.alive || w.life != life {
                return Ok(());
            }
            w.busy -= 1;
        }
        let lie = match kind {
            Kind::Squatter => true,
            Kind::Liar => self.rng.chance(0.5),
            _ => false,
        };
        let mut result = honest_result(&self.sc.job, id, kind == Kind::Naive, lie);
        if kind == Kind::Shifter {
            let (a, b) = (result.a.0, result.b.0);
            let reference = series::pi_partial_reference(a, b);
            let shift = 0.9 * series::pi_partial_tolerance(a, b, reference);
            result.pi = reference + if id % 2 == 0 { shift } else { -shift };
        }
        let w = &mut self.workers[wi];
        w.unacked.insert(id, result.clone());
        if let (Some(conn), WState::Active) = (w.conn, w.state) {
            if epoch == w.epoch {
                self.send(conn, ClientMessage::Result(result));
                self.send(conn, ClientMessage::Request { count: 1 });
            } else if kind != Kind::Naive {
                if !w.resending.contains(&id) && !w.to_resend.contains(&id) {
                    w.to_resend.push_back(id);
                }
                self.send_resends(wi, conn);
            }
        }
        self.start_computing(wi);
        Ok(())
    }

    pub(super) fn hostile_resend(&mut self, wi: usize, life: u32, conn: ConnId) {
        let w = &self.workers[wi];
        if !w.alive || w.life != life || w.conn != Some(conn) || w.state != WState::Active {
            return;
        }
        // Any interval of the grid: held by someone, given back, done, or not handed out yet.
        let id = self.rng.below(self.intervals());
        let r = WorkResult {
            resend: true,
            ..honest_result(&self.sc.job, id, false, false)
        };
        self.send(conn, ClientMessage::Result(r));
        let t = self.rng.millis(100, 5_000);
        self.at(
            self.now + t,
            Ev::Resend {
                worker: wi,
                life,
                conn,
            },
        );
    }
}

/// The result an honest worker computes (exact kernel, or the plain loop of a naive client); a
/// liar's wrong sums.
fn honest_result(job: &Job, id: u64, naive: bool, lie: bool) -> WorkResult {
    let i = job.interval(IntervalId(id)).expect("in the grid");
    let pi = if naive {
        kernel::pi_partial_naive(i.a, i.b)
    } else {
        kernel::pi_partial(i.a, i.b).unwrap()
    };
    WorkResult {
        id: Dec(id),
        a: Dec(i.a),
        b: Dec(i.b),
        even_sum: Dec(sums::even_sum(i.a, i.b) + u128::from(lie) * 2),
        odd_sum: Dec(sums::odd_sum(i.a, i.b)),
        pi,
        duration_s: 0.01,
        resend: false,
    }
}
