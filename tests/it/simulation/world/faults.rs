//! The faults a seed schedules: coordinator crashes, worker crashes and restarts, silent
//! partitions that heal.

use super::*;
use crate::simulation::ms;

impl World {
    /// The coordinator stops taking workers (a crash, or its store failed).
    pub(super) fn down(&mut self) {
        if let Some(last) = self.up.last_mut() {
            last.1 = last.1.min(self.now);
        }
    }

    pub(super) fn crash_coordinator(&mut self) -> Check {
        if self.core.is_none() {
            return Ok(());
        }
        self.note(|| "coordinator crashes".into());
        self.down();
        self.core = None;
        // What was not committed is lost.
        self.store.queue.clear();
        self.store.queued_ids.clear();
        self.store.commit_scheduled = false;
        let open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.server_open)
            .map(|(&id, _)| id)
            .collect();
        for id in open {
            self.server_closes(id, true)?;
        }
        let d = self.rng.millis(500, 90_000);
        self.at(self.now + d, Ev::RestartCoordinator);
        Ok(())
    }

    pub(super) fn crash_worker(&mut self, wi: usize) -> Check {
        let w = &self.workers[wi];
        if !w.alive || matches!(w.state, WState::Finished | WState::GaveUp) {
            return Ok(());
        }
        self.note(|| format!("worker {wi} crashes"));
        let w = &mut self.workers[wi];
        w.alive = false;
        if let Some(conn) = w.conn.take() {
            self.close_client(conn);
        }
        let d = self.rng.millis(500, 60_000);
        self.at(self.now + d, Ev::RestartWorker(wi));
        Ok(())
    }

    pub(super) fn restart_worker(&mut self, wi: usize) {
        let now = self.now;
        let w = &mut self.workers[wi];
        w.life += 1;
        w.alive = true;
        w.state = WState::Idle;
        w.conn = None;
        w.run = None;
        w.unacked.clear();
        w.queue.clear();
        w.busy = 0;
        w.to_resend.clear();
        w.resending.clear();
        w.reconnect = Reconnect::new(w.spec.retry_for, now);
        w.offline_since = now;
        let life = w.life;
        self.at(now, Ev::Connect { worker: wi, life });
    }

    pub(super) fn partition(&mut self, wi: usize, length: Duration) {
        let Some(id) = self.workers[wi].conn else {
            return;
        };
        if self.conns.get(&id).is_some_and(|c| !c.partitioned) {
            self.note(|| format!("connection {id} silently partitioned for {length:?}"));
            self.conns.get_mut(&id).unwrap().partitioned = true;
            self.at(self.now + length, Ev::PartitionEnd(id));
        }
    }

    pub(super) fn heal(&mut self, id: ConnId) -> Check {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        conn.partitioned = false;
        let to_client = std::mem::take(&mut conn.held_to_client);
        let to_server = std::mem::take(&mut conn.held_to_server);
        let eof = std::mem::take(&mut conn.eof_pending);
        let (server_open, client_open) = (conn.server_open, conn.client_open);
        self.note(|| format!("connection {id} heals"));
        if client_open {
            for m in to_client {
                let d = self.delay();
                self.at(self.now + d, Ev::ToClient(id, m));
            }
        }
        if server_open {
            for m in to_server {
                let d = self.delay();
                self.at(self.now + d, Ev::ToServer(id, m));
            }
        }
        if eof {
            if !server_open {
                self.at(self.now + ms(2_000), Ev::ClientEof(id));
            }
            if !client_open {
                self.at(self.now + ms(2_000), Ev::ServerEof(id));
            }
        }
        Ok(())
    }
}
