//! The coordinator and its store: the core started (or restarted from what is durable), its
//! outputs carried out, and the store's writer (group commits, slow and failing commits).

use super::*;
use piswarm::coordinator::core::{CoreConfig, Output, ResumeState};
use piswarm::store::verify_record;

impl World {
    pub(super) fn start_coordinator(&mut self) -> Check {
        self.process += 1;
        let mut config = CoreConfig::new(self.sc.job);
        config.max_prefetch = self.sc.max_prefetch;
        config.lease = self.sc.lease;
        config.heartbeat = self.sc.idle / 3;
        let resume = if self.process == 1 {
            None
        } else {
            let mut pi = ExactSum::new();
            let mut pi_bound = ExactSum::new();
            let (mut even, mut odd, mut terms) = (0u128, 0u128, 0u64);
            let mut names = BTreeSet::new();
            for r in self.store.durable.values() {
                pi.add(r.pi).unwrap();
                pi_bound
                    .add(verify_record(&self.sc.job, r).expect("stored results verify"))
                    .unwrap();
                even += r.even_sum.0;
                odd += r.odd_sum.0;
                terms += r.b.0 - r.a.0 + 1;
                names.insert(r.worker.clone());
            }
            Some(ResumeState {
                done_ids: self.store.durable.keys().copied().collect(),
                issued_upto: self.store.issued_upto,
                pi,
                even_sum: even,
                odd_sum: odd,
                terms_done: terms,
                worker_names: names.into_iter().collect(),
                elapsed_s: 0.0,
                pi_bound,
            })
        };
        self.note(|| "coordinator starts".into());
        self.core = Some(Core::new(config, resume));
        self.up.push((self.now, Duration::MAX));
        self.store.failed = false;
        self.store.queue.clear();
        self.store.queued_ids.clear();
        self.store.commit_scheduled = false;
        self.holders.clear();
        self.pump()
    }

    pub(super) fn input(&mut self, input: Input) -> Check {
        let now = self.now;
        let Some(core) = self.core.as_mut() else {
            return Ok(());
        };
        core.handle(now, input);
        self.pump()
    }

    /// Carries out the core's outputs, checking what they promise.
    pub(super) fn pump(&mut self) -> Check {
        loop {
            let Some(core) = self.core.as_mut() else {
                return Ok(());
            };
            let Some(out) = core.poll_output() else {
                break;
            };
            match out {
                Output::Send { session, message } => self.server_sends(session, message)?,
                Output::Close { session } => {
                    self.note(|| format!("core closes session {session}"));
                    self.server_closes(session, false)?;
                    if let Some(core) = self.core.as_mut() {
                        core.handle(self.now, Input::Leave { session });
                    }
                }
                Output::Write(w) => self.store_write(w)?,
                Output::Durable(_) => {}
            }
        }
        if let Some(core) = &self.core {
            if let Some(t) = core.poll_timeout() {
                let p = self.process;
                self.at(t, Ev::CoreTick(p));
            }
        }
        Ok(())
    }

    pub(super) fn store_write(&mut self, w: Write) -> Check {
        if let Write::Result { record, .. } = &w {
            let id = record.id.0;
            if self.store.durable.contains_key(&id) || self.store.queued_ids.contains(&id) {
                return Err(format!(
                    "interval {id} counted twice (a second result written)"
                ));
            }
            // Nobody may take an interval from a live holder whose lease runs, unless it held
            // the interval itself at some point.
            if let Some(&(holder, deadline)) = self.holders.get(&id) {
                let live = self.conns.get(&holder).is_some_and(|c| c.server_open);
                let writer = self
                    .workers
                    .iter()
                    .position(|w| w.spec.name == record.worker && w.assigned_ever.contains(&id));
                let by_holder = self
                    .conns
                    .get(&holder)
                    .is_some_and(|c| self.workers[c.worker].spec.name == record.worker);
                if live && self.now < deadline && writer.is_none() && !by_holder {
                    return Err(format!(
                        "interval {id} taken from its live holder (connection {holder}) by {}, which never held it",
                        record.worker
                    ));
                }
            }
            self.store.queued_ids.insert(id);
        }
        self.store.queue.push(w);
        if !self.store.commit_scheduled && !self.store.failed {
            self.store.commit_scheduled = true;
            let d = self
                .rng
                .millis(self.sc.commit_delay.0, self.sc.commit_delay.1);
            let p = self.process;
            self.at(self.now + d, Ev::Commit(p));
        }
        Ok(())
    }

    pub(super) fn commit(&mut self) -> Check {
        self.store.commit_scheduled = false;
        if self.store.failed || self.store.queue.is_empty() {
            return Ok(());
        }
        self.store.commits += 1;
        if Some(self.store.commits) == self.sc.failing_commit {
            self.note(|| "commit fails".into());
            self.down();
            self.store.failed = true;
            self.store.queue.clear();
            self.store.queued_ids.clear();
            self.input(Input::StoreFailed {
                reason: "simulated I/O error".into(),
            })?;
            // Its operator restarts it a little later.
            let d = self.rng.millis(5_000, 60_000);
            self.at(self.now + d, Ev::CrashCoordinator);
            return Ok(());
        }
        let mut through = 0;
        for w in std::mem::take(&mut self.store.queue) {
            through = through.max(w.seq());
            match w {
                Write::Result { record, .. } => {
                    self.store.queued_ids.remove(&record.id.0);
                    self.store.sums.add(&self.sc.job, &record);
                    self.store.durable.insert(record.id.0, record);
                }
                Write::Reserve { upto, .. } => {
                    self.store.issued_upto = self.store.issued_upto.max(upto)
                }
                Write::Totals { .. } => {}
            }
        }
        self.note(|| format!("commit through {through}"));
        self.input(Input::Committed { through })
    }
}
