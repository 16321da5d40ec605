//! The shell's side of the connections: what the core sends (checked against what it
//! promises), the server's end of a connection, what reaches it, and idle timeouts.

use super::*;
use crate::simulation::ms;
use crate::simulation::scenario::Kind;
use piswarm::coordinator::core::{Joining, SessionId, WorkerKind};
use piswarm::job::verify::check_result;
use piswarm::wire::{AckStatus, DoneReason, ErrorCode};

impl World {
    pub(super) fn delay(&mut self) -> Duration {
        self.rng.millis(self.sc.delay.0, self.sc.delay.1)
    }

    /// The core writes a message to a session: check what it promises, then send it.
    pub(super) fn server_sends(&mut self, session: SessionId, message: ServerMessage) -> Check {
        // An answer to a result ends its sender's hold of the interval.
        if let ServerMessage::Ack { id, .. } | ServerMessage::Error { id: Some(id), .. } = &message
        {
            if self.holders.get(&id.0).is_some_and(|h| h.0 == session) {
                self.holders.remove(&id.0);
            }
        }
        let Some(conn) = self.conns.get_mut(&session) else {
            return Ok(());
        };
        let worker = conn.worker;
        let honest = self.workers[worker].spec.kind.honest();
        match &message {
            ServerMessage::Ack {
                id,
                status: AckStatus::Accepted,
            } => {
                conn.replies_out += 1;
                if !self.store.durable.contains_key(&id.0) {
                    return Err(format!(
                        "ack accepted for interval {} before its result is durable",
                        id.0
                    ));
                }
            }
            ServerMessage::Ack { .. } => conn.replies_out += 1,
            ServerMessage::Error {
                code,
                id: Some(i),
                message,
                ..
            } => {
                conn.replies_out += 1;
                if honest {
                    return Err(format!(
                        "honest worker {} struck: {code:?} for interval {}: {message}",
                        self.workers[worker].spec.name, i.0
                    ));
                }
            }
            ServerMessage::Error {
                code: ErrorCode::Refused,
                ..
            } if honest => {
                return Err(format!(
                    "honest worker {} refused",
                    self.workers[worker].spec.name
                ));
            }
            ServerMessage::Done {
                reason: DoneReason::JobComplete,
            } => {
                let missing = self.sc.job.intervals().unwrap() - self.store.durable.len() as u64;
                if missing > 0 {
                    return Err(format!(
                        "done job_complete while {missing} intervals are not durable"
                    ));
                }
                if conn.replies_out < conn.results_in {
                    return Err(format!(
                        "done job_complete overtakes {} replies on session {session}",
                        conn.results_in - conn.replies_out
                    ));
                }
            }
            ServerMessage::Assign { id, lease_s, .. } => {
                let deadline = self.now + Duration::from_secs_f64(*lease_s);
                self.holders.insert(id.0, (session, deadline));
                self.workers[worker].assigned_ever.insert(id.0);
            }
            _ => {}
        }
        let Some(conn) = self.conns.get_mut(&session) else {
            return Ok(());
        };
        if !conn.server_open {
            return Ok(());
        }
        if conn.partitioned {
            conn.held_to_client.push(message);
            return Ok(());
        }
        let d = self.rng.millis(self.sc.delay.0, self.sc.delay.1);
        let conn = self.conns.get_mut(&session).unwrap();
        conn.to_client_at = conn.to_client_at.max(self.now + d);
        let t = conn.to_client_at;
        self.note(|| format!("→ {session}: {message:?}"));
        self.at(t, Ev::ToClient(session, message));
        Ok(())
    }

    /// The server side ends a connection: the client learns it after what was sent.
    pub(super) fn server_closes(&mut self, id: ConnId, reset: bool) -> Check {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        if !conn.server_open {
            return Ok(());
        }
        conn.server_open = false;
        if conn.partitioned {
            conn.eof_pending = true;
            return Ok(());
        }
        let t = if reset {
            self.now
        } else {
            conn.to_client_at.max(self.now)
        };
        self.at(t + ms(1), Ev::ClientEof(id));
        Ok(())
    }

    /// A message reaches the server.
    pub(super) fn server_receives(&mut self, id: ConnId, msg: ClientMessage) -> Check {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        if !conn.server_open || conn.process != self.process {
            return Ok(());
        }
        conn.last_line = self.now;
        let worker = conn.worker;
        self.note(|| format!("← {id}: {msg:?}"));
        match msg {
            ClientMessage::Hello { worker: name, .. } => {
                let kind = match self.workers[worker].spec.kind {
                    Kind::Naive => WorkerKind::Other,
                    _ => WorkerKind::Piswarm,
                };
                let idle = self.sc.idle;
                self.at(self.now + idle, Ev::IdleCheck(id));
                self.input(Input::Join(Joining {
                    session: id,
                    name,
                    peer: format!("sim:{worker}"),
                    kind,
                    agent: String::new(),
                }))
            }
            ClientMessage::Request { count } => self.input(Input::Request { session: id, count }),
            ClientMessage::Result(result) => {
                self.conns.get_mut(&id).unwrap().results_in += 1;
                // A result from the holder ends its hold (accepted: pending; refused: given back).
                if self.holders.get(&result.id.0).is_some_and(|h| h.0 == id) {
                    self.holders.remove(&result.id.0);
                }
                let verdict = check_result(&self.sc.job, &result);
                self.input(Input::Result {
                    session: id,
                    result,
                    verdict,
                    received_at: "sim".into(),
                })
            }
            ClientMessage::Heartbeat {} => Ok(()),
            ClientMessage::Bye {} => {
                self.server_closes(id, false)?;
                self.input(Input::Leave { session: id })
            }
        }
    }

    pub(super) fn idle_check(&mut self, id: ConnId) -> Check {
        let idle = self.sc.idle;
        let Some(conn) = self.conns.get(&id) else {
            return Ok(());
        };
        if !conn.server_open || conn.process != self.process {
            return Ok(());
        }
        if self.now >= conn.last_line + idle {
            self.note(|| format!("session {id} idle timeout"));
            self.server_sends(
                id,
                ServerMessage::error(ErrorCode::IdleTimeout, "nothing received"),
            )?;
            self.server_closes(id, false)?;
            self.input(Input::Leave { session: id })
        } else {
            let t = conn.last_line + idle;
            self.at(t, Ev::IdleCheck(id));
            Ok(())
        }
    }
}
