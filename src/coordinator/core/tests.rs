//! Unit tests of the core; the simulator (tests/it/simulation/) drives it through seeded fault
//! schedules and covers the rest.

use super::*;
use crate::job::verify::check_result;
use crate::job::IntervalId;
use crate::maths::sums;
use crate::wire::{AckStatus, Dec, DoneReason};

fn ms(n: u64) -> Time {
    Duration::from_millis(n)
}

/// A new core for `job`, its first writes (the run's state, the first reservation) committed.
fn started(job: Job) -> Core {
    let mut core = Core::new(CoreConfig::new(job), None);
    drain(&mut core, ms(0));
    core
}

fn join(core: &mut Core, now: Time, session: SessionId) {
    core.handle(
        now,
        Input::Join(Joining {
            session,
            name: format!("w{session}"),
            peer: "test".into(),
            kind: WorkerKind::Piswarm,
            agent: String::new(),
        }),
    );
}

/// A session joins and asks for `count` assignments; returns everything sent meanwhile.
fn join_asking(
    core: &mut Core,
    now: Time,
    session: SessionId,
    count: u32,
) -> Vec<(SessionId, ServerMessage)> {
    join(core, now, session);
    core.handle(now, Input::Request { session, count });
    drain(core, now)
}

/// Everything sent so far, by session; writes are committed at once.
fn drain(core: &mut Core, now: Time) -> Vec<(SessionId, ServerMessage)> {
    let mut sent = Vec::new();
    loop {
        let mut wrote = false;
        while let Some(out) = core.poll_output() {
            match out {
                Output::Send { session, message } => sent.push((session, message)),
                Output::Write(_) => wrote = true,
                Output::Close { .. } | Output::Durable(_) => {}
            }
        }
        if !wrote {
            return sent;
        }
        let through = core.last_write();
        core.handle(now, Input::Committed { through });
    }
}

/// The assignments sent to a session: (id, backup).
fn assigns(sent: &[(SessionId, ServerMessage)], to: SessionId) -> Vec<(u64, bool)> {
    sent.iter()
        .filter(|(s, _)| *s == to)
        .filter_map(|(_, m)| match m {
            ServerMessage::Assign { id, backup, .. } => Some((id.0, *backup)),
            _ => None,
        })
        .collect()
}

/// Whether `to` was sent an `ack` of `id` with `status`.
fn acked(sent: &[(SessionId, ServerMessage)], to: SessionId, id: u64, status: AckStatus) -> bool {
    let ack = ServerMessage::Ack {
        id: Dec(id),
        status,
    };
    sent.iter().any(|(s, m)| *s == to && *m == ack)
}

/// The session sends an honest result for interval `id`, and everything that follows is drained.
fn result(
    core: &mut Core,
    now: Time,
    session: SessionId,
    id: u64,
) -> Vec<(SessionId, ServerMessage)> {
    let job = core.config().job;
    let i = job.interval(IntervalId(id)).unwrap();
    let r = WorkResult {
        id: Dec(id),
        a: Dec(i.a),
        b: Dec(i.b),
        even_sum: Dec(sums::even_sum(i.a, i.b)),
        odd_sum: Dec(sums::odd_sum(i.a, i.b)),
        pi: core.config().kernel.pi_partial(i.a, i.b).unwrap(),
        duration_s: 0.001,
        resend: false,
    };
    let verdict = check_result(&job, &r);
    core.handle(
        now,
        Input::Result {
            session,
            result: r,
            verdict,
            received_at: "test".into(),
        },
    );
    drain(core, now)
}

/// No backup while anything fresh is left; then a newcomer gets a copy of an interval a
/// silent holder sits on, at most one per interval; its result counts, and the holder's own
/// late result is a duplicate, never an error.
#[test]
fn backups_only_at_the_tail_one_per_interval_and_the_first_result_counts() {
    let mut core = started(Job::new(Some(4000), Some(1000)).unwrap());
    let first = join_asking(&mut core, ms(0), 1, 8);
    let second = join_asking(&mut core, ms(0), 2, 8);
    // Before a first result, 2 each (4 / 256, at least 2): everything is handed out, fresh.
    assert_eq!(assigns(&first, 1), vec![(0, false), (1, false)]);
    assert_eq!(assigns(&second, 2), vec![(2, false), (3, false)]);
    core.check_invariants().unwrap();
    // Ten seconds of silence; a newcomer asks for work.
    let sent = join_asking(&mut core, ms(10_000), 3, 8);
    let copies = assigns(&sent, 3);
    assert_eq!(copies.len(), 2, "its allowance: {sent:?}");
    assert!(copies.iter().all(|&(_, backup)| backup));
    assert_ne!(copies[0].0, copies[1].0, "one backup per interval");
    core.check_invariants().unwrap();
    let snap = core.snapshot();
    assert_eq!((snap.backups_issued, snap.backup_terms), (2, 2000));
    // The newcomer answers one copy: it counts.
    let (won, _) = copies[0];
    let sent = result(&mut core, ms(10_001), 3, won);
    assert!(acked(&sent, 3, won, AckStatus::Accepted), "{sent:?}");
    // Its holder answers late: a duplicate, not a strike.
    let holder = if won < 2 { 1 } else { 2 };
    let sent = result(&mut core, ms(10_002), holder, won);
    assert!(acked(&sent, holder, won, AckStatus::Duplicate), "{sent:?}");
    assert!(!sent
        .iter()
        .any(|(_, m)| matches!(m, ServerMessage::Error { .. })));
    let snap = core.snapshot();
    assert_eq!((snap.backups_won, snap.results_rejected), (1, 0));
    core.check_invariants().unwrap();
}

/// A holder that leaves hands its interval to the session computing the backup copy: it
/// does not go back to the queue (another session can only get a backup copy of it).
#[test]
fn a_backup_becomes_the_holder_when_the_holder_leaves() {
    let mut core = started(Job::new(Some(2000), Some(1000)).unwrap());
    join_asking(&mut core, ms(0), 1, 2);
    let sent = join_asking(&mut core, ms(5_000), 2, 1);
    let (copy, backup) = assigns(&sent, 2)[0];
    assert!(backup);
    core.handle(ms(5_001), Input::Leave { session: 1 });
    let sent = join_asking(&mut core, ms(5_001), 3, 2);
    let third = assigns(&sent, 3);
    assert!(
        third.iter().all(|&(id, backup)| (id == copy) == backup),
        "the copy's session holds it now, the other one went back: {third:?}"
    );
    assert!(third.contains(&(1 - copy, false)), "{third:?}");
    assert!(core
        .held()
        .iter()
        .any(|h| h.id == copy && h.session == 2 && !h.expired));
    core.check_invariants().unwrap();
    let sent = result(&mut core, ms(5_002), 2, copy);
    assert!(acked(&sent, 2, copy, AckStatus::Accepted), "{sent:?}");
}

/// A session that completes its handshake after the run completed and the coordinator began
/// to stop is told `done job_complete` (it leaves at once), not "stopping, try again".
#[test]
fn a_late_joiner_of_a_complete_run_is_told_it_is_complete_even_while_stopping() {
    let mut core = started(Job::new(Some(1000), Some(1000)).unwrap());
    join_asking(&mut core, ms(0), 1, 1);
    result(&mut core, ms(1), 1, 0);
    assert!(core.is_complete());
    core.handle(ms(2), Input::Drain);
    drain(&mut core, ms(2));
    join(&mut core, ms(3), 2);
    let sent = drain(&mut core, ms(3));
    let to_late: Vec<&ServerMessage> = sent
        .iter()
        .filter(|(s, _)| *s == 2)
        .map(|(_, m)| m)
        .collect();
    assert!(
        matches!(to_late[0], ServerMessage::Welcome { .. }),
        "{to_late:?}"
    );
    assert_eq!(
        to_late[1],
        &ServerMessage::Done {
            reason: DoneReason::JobComplete
        }
    );
}
