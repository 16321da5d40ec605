//! `piswarm check client`: a scripted coordinator runs a client program through scenarios and
//! checks each clause of docs/protocol.md a client must honour.
//!
//! The program is started afresh for every scenario, on a free loopback port of its own (the
//! address replaces `{addr}` in its arguments and is in `PISWARM_ADDR`), and killed when the
//! scenario ends. Scenarios, in order:
//!
//! * **plain** — a job of six intervals of 10⁵ terms (long enough that a plain forward loop
//!   leaves the compensated kernel's bound); the first `assign` is held back 2.5 s so that the
//!   client must heartbeat; every result accepted; `done job_complete`.
//! * **duplicate_error** — the first result is answered `ack duplicate`, the second `error`
//!   (its interval handed out again); the client must keep going to the `done`.
//! * **restart** — the coordinator dies right after the first result (the connection closes, no
//!   answer); a client that reconnects to the same run must re-send it marked `resend` (§4.6).
//! * **done** — `done job_complete` right after the `welcome`: the client must leave.
//! * **silent** — the coordinator reads the hello and says nothing, then closes, then refuses
//!   every connection (`too_many_connections`): the client must not reconnect in a tight loop.
//!
//! A program that makes no connection in the first scenario is reported as such, and the other
//! scenarios are not run.

use super::client_clauses::{judge_heartbeat, judge_numbers, Clauses};
use super::program::Program;
use super::{CheckError, Protocol, Report, Transcript};
use crate::job::{IntervalId, Job};
use crate::maths::kernel::Kernel;
use crate::wire::line::{read_line, LineError};
use crate::wire::{
    self, AckStatus, ClientMessage, Dec, DecodeError, DoneReason, ErrorCode, ServerMessage,
    WorkResult, MAX_LINE,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tokio::time::{sleep_until, Instant};

/// Terms per interval of the scripted job: long enough that a forward `f64` loop leaves the
/// compensated kernel's bound on several intervals, short enough for a Python client.
pub const CHUNK: u64 = 100_000;
/// Intervals of the scripted job.
pub const INTERVALS: u64 = 6;
/// The `max_prefetch` the scripted coordinator announces.
pub const MAX_PREFETCH: u32 = 4;
/// The `heartbeat_s` it announces.
pub const HEARTBEAT_S: f64 = 1.0;
/// How long the first `assign` of the plain scenario is held back.
const WAIT_FOR_WORK: Duration = Duration::from_millis(2500);
/// The longest silence accepted while waiting for work: 1.5 × `heartbeat_s`.
pub(crate) const LONGEST_SILENCE: Duration = Duration::from_millis(1500);
/// The time a client has to close after `done` (the server's own grace, §4.5).
const DONE_GRACE: Duration = Duration::from_secs(5);
/// How long the check watches for a reconnection after a client left on `done job_complete`.
const AFTER_DONE: Duration = Duration::from_millis(1500);
/// The silent scenario: how long the coordinator says nothing, then how long it refuses.
const SILENT_FOR: Duration = Duration::from_secs(2);
const REFUSE_FOR: Duration = Duration::from_secs(3);
/// More connection attempts than this while refused is a tight loop.
const MAX_ATTEMPTS: usize = 10;
/// The longest the first connection and the first line may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// What to check, and how long it may take.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The program and its arguments; `{addr}` is replaced by the coordinator's address.
    pub program: Vec<String>,
    pub protocol: Protocol,
    /// The longest one scenario may take (and at most this, 10 s at most, to connect).
    pub timeout: Duration,
}

/// Runs the check.
pub async fn check_client(options: &ClientOptions) -> Result<Report, CheckError> {
    match options.protocol {
        Protocol::V1 => check_v1(options).await,
        Protocol::Legacy => super::client_legacy::check(options).await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Plain,
    DuplicateError,
    Restart,
    Done,
    Silent,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Plain => "plain",
            Scenario::DuplicateError => "duplicate_error",
            Scenario::Restart => "restart",
            Scenario::Done => "done",
            Scenario::Silent => "silent",
        }
    }
}

async fn check_v1(options: &ClientOptions) -> Result<Report, CheckError> {
    let started = std::time::Instant::now();
    let mut c = Clauses::new();
    let mut notes = Vec::new();
    for scenario in [
        Scenario::Plain,
        Scenario::DuplicateError,
        Scenario::Restart,
        Scenario::Done,
        Scenario::Silent,
    ] {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(CheckError::Listen)?;
        let addr = listener.local_addr().map_err(CheckError::Listen)?;
        let mut program = Program::start(&options.program, addr)?;
        let mut run = Run {
            t: Transcript::new(scenario.name()),
            listener,
            deadline: Instant::now() + options.timeout,
            connect_within: options.timeout.min(CONNECT_WITHIN),
            conns: 0,
        };
        let connected = run.scenario(scenario, &mut program, &mut c).await;
        program.stop().await;
        if !connected {
            let output = program.last_output();
            if !output.is_empty() {
                notes.push(format!(
                    "the program's last output ({} scenario): {}",
                    scenario.name(),
                    output.join(" ⏎ ")
                ));
            }
        }
        if !connected && scenario == Scenario::Plain {
            let status = match program.has_exited() {
                Some(s) => format!("it exited ({s})"),
                None => "it was still running".to_string(),
            };
            c.hello.fail(
                format!(
                    "the program made no connection to {addr} within {:.0?} ({status}); the other scenarios were not run",
                    run.connect_within
                ),
                &[],
            );
            break;
        }
    }
    Ok(Report::new(
        "client",
        Protocol::V1,
        options.program.join(" "),
        c.all(),
        notes,
        started,
    ))
}

/// One scenario's coordinator: its listener, transcript and deadline.
struct Run {
    t: Transcript,
    listener: TcpListener,
    deadline: Instant,
    connect_within: Duration,
    conns: usize,
}

/// What the listener gave.
enum Accepted {
    Conn(Conn),
    Exited(String),
    Timeout,
}

/// One accepted connection, read line by line with the wire's bounded reader.
struct Conn {
    n: usize,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: Vec<u8>,
    complete: bool,
}

/// What a connection said next.
enum Incoming {
    Message(ClientMessage, String),
    Bad(DecodeError, String),
    Closed,
}

impl Conn {
    async fn next(&mut self, t: &Transcript) -> Incoming {
        match read_line(
            &mut self.reader,
            &mut self.line,
            &mut self.complete,
            MAX_LINE,
        )
        .await
        {
            Ok(true) => {
                let text = t.line(self.n, "C", &String::from_utf8_lossy(&self.line));
                match wire::decode_client(&self.line) {
                    Ok(m) => Incoming::Message(m, text),
                    Err(e) => Incoming::Bad(e, text),
                }
            }
            Err(LineError::TooLong(max)) => Incoming::Bad(
                DecodeError {
                    code: ErrorCode::LineTooLong,
                    message: format!("a line longer than {max} bytes"),
                },
                t.line(
                    self.n,
                    "C",
                    &format!("(more than {max} bytes without a newline)"),
                ),
            ),
            Ok(false) | Err(_) => Incoming::Closed,
        }
    }

    async fn send(&mut self, t: &Transcript, message: &ServerMessage) -> String {
        let mut out = Vec::new();
        wire::encode(message, &mut out);
        let _ = self.writer.write_all(&out).await;
        t.line(self.n, "S", &String::from_utf8_lossy(&out))
    }
}

/// The job's state across the connections of one scenario.
struct JobState {
    job: Job,
    run_uid: String,
    done: BTreeSet<u64>,
    /// Ready to hand out.
    pool: BTreeSet<u64>,
    /// Results received on a connection that then died unanswered: to be re-sent (§4.6).
    lost: BTreeMap<u64, String>,
    /// Their intervals, handed out again only once nothing else is left.
    deferred: BTreeSet<u64>,
    handed: BTreeSet<u64>,
    /// The scripted `ack duplicate` and `error` lines sent (evidence for the answers clause).
    scripted: Vec<String>,
}

impl JobState {
    fn new(scenario: Scenario) -> JobState {
        JobState {
            job: Job::new(Some(CHUNK * INTERVALS), Some(CHUNK)).expect("a valid job"),
            run_uid: format!("{:032x}", 0xc4ec_0000_u64 + scenario as u64),
            done: BTreeSet::new(),
            pool: (0..INTERVALS).collect(),
            lost: BTreeMap::new(),
            deferred: BTreeSet::new(),
            handed: BTreeSet::new(),
            scripted: Vec::new(),
        }
    }

    fn welcome(&self) -> ServerMessage {
        ServerMessage::Welcome {
            version: 1,
            server: format!("piswarm-check {}", env!("CARGO_PKG_VERSION")),
            run: 1,
            terms: self.job.terms.map(Dec),
            chunk: Dec(self.job.chunk),
            max_prefetch: MAX_PREFETCH,
            heartbeat_s: HEARTBEAT_S,
            run_uid: Some(self.run_uid.clone()),
            kernel: Some(Kernel::CURRENT.name().to_string()),
        }
    }

    fn complete(&self) -> bool {
        self.done.len() as u64 == INTERVALS
    }
}

/// A scripted answer to a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Accept,
    Duplicate,
    Error,
}

/// How a connection is served.
#[derive(Debug, Clone, Default)]
struct Policy {
    /// Hold the first `assign` back this long (the heartbeat clause).
    hold_work: Option<Duration>,
    /// Answers to this connection's first results, in order; `Accept` after them.
    answers: Vec<Answer>,
    /// Close the connection, unanswered, on this many results (a crash).
    crash_after: Option<usize>,
}

/// How a served connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// `done job_complete` sent; the client's leaving was checked.
    Done,
    Crashed,
    /// The client closed (or broke the protocol) before the job was done.
    Left(String),
    Timeout,
}

impl Run {
    async fn accept(&mut self, program: &mut Program, within: Duration) -> Accepted {
        let until = Instant::now() + within;
        let until = until.min(self.deadline);
        tokio::select! {
            r = self.listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    self.conns += 1;
                    let (r, w) = stream.into_split();
                    Accepted::Conn(Conn {
                        n: self.conns,
                        reader: BufReader::with_capacity(16 * 1024, r),
                        writer: w,
                        line: Vec::new(),
                        complete: false,
                    })
                }
                Err(_) => Accepted::Timeout,
            },
            status = program.exited() => Accepted::Exited(
                status.map_or_else(|| "it exited".to_string(), |s| format!("it exited ({s})")),
            ),
            _ = sleep_until(until) => Accepted::Timeout,
        }
    }

    /// Reads the first line of a connection and judges the hello; true if it is one.
    async fn hello(&mut self, conn: &mut Conn, c: &mut Clauses) -> bool {
        let until = (Instant::now() + self.connect_within).min(self.deadline);
        let first = tokio::select! {
            i = conn.next(&self.t) => i,
            _ = sleep_until(until) => {
                c.hello.fail(
                    format!("connection #{} sent no line within {:.0?}", conn.n, self.connect_within),
                    &[],
                );
                return false;
            }
        };
        match first {
            Incoming::Message(ClientMessage::Hello { version: 1, .. }, line) => {
                c.hello.pass(
                    "the first line of every connection is a hello, version 1",
                    &[line],
                );
                true
            }
            Incoming::Message(ClientMessage::Hello { version, .. }, line) => {
                c.hello
                    .fail(format!("hello with version {version}, not 1"), &[line]);
                false
            }
            Incoming::Message(_, line) => {
                c.hello.fail(
                    "the first line is not a hello (the server answers out_of_order and closes)",
                    &[line],
                );
                false
            }
            Incoming::Bad(e, line) => {
                c.hello.fail(
                    format!(
                        "the first line does not decode: {} (the server closes)",
                        e.message
                    ),
                    &[line],
                );
                false
            }
            Incoming::Closed => {
                c.hello
                    .fail(format!("connection #{} closed without a line", conn.n), &[]);
                false
            }
        }
    }

    /// Runs one scenario; false if the program never connected.
    async fn scenario(&mut self, s: Scenario, program: &mut Program, c: &mut Clauses) -> bool {
        let first = match self.accept(program, self.connect_within).await {
            Accepted::Conn(conn) => conn,
            Accepted::Exited(why) => {
                self.no_connection(s, c, &why);
                return false;
            }
            Accepted::Timeout => {
                self.no_connection(s, c, "no connection");
                return false;
            }
        };
        match s {
            Scenario::Plain => {
                let policy = Policy {
                    hold_work: Some(WAIT_FOR_WORK),
                    ..Policy::default()
                };
                let mut state = JobState::new(s);
                self.job_connection(first, &mut state, &policy, program, c)
                    .await;
            }
            Scenario::DuplicateError => {
                let policy = Policy {
                    answers: vec![Answer::Duplicate, Answer::Error],
                    ..Policy::default()
                };
                let mut state = JobState::new(s);
                let end = self
                    .job_connection(first, &mut state, &policy, program, c)
                    .await;
                match end {
                    Some(End::Done) => c.answers.pass(
                        "went on to the done after an ack duplicate and an error",
                        &state.scripted,
                    ),
                    Some(End::Left(why)) => c.answers.fail(
                        format!("stopped before the job was done, after its answers: {why}"),
                        &state.scripted,
                    ),
                    Some(End::Timeout) => c.answers.fail(
                        "did not finish the job within the scenario's time after an ack duplicate and an error",
                        &state.scripted,
                    ),
                    _ => {}
                }
            }
            Scenario::Restart => self.restart(first, program, c).await,
            Scenario::Done => {
                let mut conn = first;
                if self.hello(&mut conn, c).await {
                    let state = JobState::new(s);
                    conn.send(&self.t, &state.welcome()).await;
                    let done = conn
                        .send(
                            &self.t,
                            &ServerMessage::Done {
                                reason: DoneReason::JobComplete,
                            },
                        )
                        .await;
                    self.watch_leave(conn, done, program, c).await;
                }
            }
            Scenario::Silent => self.silent(first, program, c).await,
        }
        true
    }

    fn no_connection(&self, s: Scenario, c: &mut Clauses, why: &str) {
        if s != Scenario::Plain {
            c.hello.fail(
                format!(
                    "in the {} scenario the program made no connection ({why})",
                    s.name()
                ),
                &[],
            );
        }
    }

    /// A connection that takes part in the job; `None` if its hello failed.
    async fn job_connection(
        &mut self,
        mut conn: Conn,
        state: &mut JobState,
        policy: &Policy,
        program: &mut Program,
        c: &mut Clauses,
    ) -> Option<End> {
        if !self.hello(&mut conn, c).await {
            return None;
        }
        conn.send(&self.t, &state.welcome()).await;
        Some(self.serve(conn, state, policy, program, c).await)
    }

    /// The coordinator's side of one connection.
    async fn serve(
        &mut self,
        mut conn: Conn,
        state: &mut JobState,
        policy: &Policy,
        program: &mut Program,
        c: &mut Clauses,
    ) -> End {
        let mut held: BTreeMap<u64, ()> = BTreeMap::new();
        let mut answered_here: BTreeSet<u64> = BTreeSet::new();
        let mut credit: u32 = 0;
        let mut demand: i64 = 0;
        let mut results = 0usize;
        let work_from = Instant::now() + policy.hold_work.unwrap_or_default();
        // Heartbeats while work is held back: the times of the client's lines.
        let mut waiting_since: Option<(Instant, String)> = None;
        let mut longest_silence = (Duration::ZERO, String::new());
        loop {
            if Instant::now() >= work_from {
                if let Some((since, line)) = waiting_since.take() {
                    let gap = Instant::now().saturating_duration_since(since);
                    if gap > longest_silence.0 {
                        longest_silence = (gap, line);
                    }
                    judge_heartbeat(c, &longest_silence);
                }
                while credit > 0 && held.len() < MAX_PREFETCH as usize {
                    let next = state.pool.first().copied().or_else(|| {
                        held.is_empty()
                            .then(|| state.deferred.first().copied())
                            .flatten()
                    });
                    let Some(id) = next else { break };
                    state.pool.remove(&id);
                    state.deferred.remove(&id);
                    let interval = state.job.interval(IntervalId(id)).expect("in the grid");
                    conn.send(
                        &self.t,
                        &ServerMessage::Assign {
                            id: Dec(id),
                            a: Dec(interval.a),
                            b: Dec(interval.b),
                            lease_s: 30.0,
                            backup: false,
                        },
                    )
                    .await;
                    held.insert(id, ());
                    state.handed.insert(id);
                    credit -= 1;
                }
            }
            if state.complete() && held.is_empty() {
                let done = conn
                    .send(
                        &self.t,
                        &ServerMessage::Done {
                            reason: DoneReason::JobComplete,
                        },
                    )
                    .await;
                self.watch_leave(conn, done, program, c).await;
                return End::Done;
            }
            let wake = if Instant::now() < work_from {
                work_from.min(self.deadline)
            } else {
                self.deadline
            };
            let incoming = tokio::select! {
                i = conn.next(&self.t) => i,
                _ = sleep_until(wake) => {
                    if Instant::now() >= self.deadline {
                        return End::Timeout;
                    }
                    continue;
                }
            };
            let (message, line) = match incoming {
                Incoming::Closed => return End::Left("it closed the connection".into()),
                Incoming::Bad(e, line) => {
                    c.format.fail(
                        format!("a line that does not decode ({:?}): {}", e.code, e.message),
                        &[line],
                    );
                    if e.code == ErrorCode::LineTooLong {
                        return End::Left("a line too long".into());
                    }
                    continue;
                }
                Incoming::Message(m, line) => (m, line),
            };
            if Instant::now() < work_from && credit > 0 {
                let now = Instant::now();
                if let Some((since, prev)) = waiting_since.replace((now, line.clone())) {
                    let gap = now - since;
                    if gap > longest_silence.0 {
                        longest_silence = (gap, prev);
                    }
                }
            }
            match message {
                ClientMessage::Hello { .. } => {
                    c.format.fail("a second hello (out_of_order)", &[line])
                }
                ClientMessage::Heartbeat {} => {}
                ClientMessage::Bye {} => {
                    return End::Left("it said bye before the job was done".into())
                }
                ClientMessage::Request { count } => {
                    demand += i64::from(count);
                    if demand > i64::from(MAX_PREFETCH) {
                        c.credit.fail(
                            format!(
                                "asked to hold {demand} intervals (requests not yet met plus intervals held), more than max_prefetch {MAX_PREFETCH}"
                            ),
                            std::slice::from_ref(&line),
                        );
                    } else {
                        c.credit.pass(
                            format!("its requests never exceeded max_prefetch {MAX_PREFETCH}"),
                            std::slice::from_ref(&line),
                        );
                    }
                    credit = credit.saturating_add(count).min(MAX_PREFETCH);
                    if Instant::now() < work_from && waiting_since.is_none() {
                        waiting_since = Some((Instant::now(), line));
                    }
                }
                ClientMessage::Result(r) => {
                    let id = r.id.0;
                    // A re-sent copy leaves the interval held: this connection's own result
                    // for it is still due (and will be a duplicate, §4.6).
                    let held_here = if r.resend {
                        held.contains_key(&id)
                    } else {
                        held.remove(&id).is_some()
                    };
                    if held_here && !r.resend {
                        demand -= 1;
                    }
                    if !self.result_allowed(&r, held_here, &answered_here, state, c, &line) {
                        continue;
                    }
                    judge_numbers(c, &state.job, &r, &line);
                    if r.resend {
                        state.lost.remove(&id);
                        state.deferred.remove(&id);
                        let fresh = state.done.insert(id);
                        state.pool.remove(&id);
                        let status = if fresh {
                            AckStatus::Accepted
                        } else {
                            AckStatus::Duplicate
                        };
                        conn.send(
                            &self.t,
                            &ServerMessage::Ack {
                                id: Dec(id),
                                status,
                            },
                        )
                        .await;
                        answered_here.insert(id);
                        continue;
                    }
                    results += 1;
                    if policy.crash_after == Some(results) {
                        state.lost.insert(id, line);
                        state.deferred.insert(id);
                        state.pool.extend(held.keys().copied());
                        return End::Crashed;
                    }
                    answered_here.insert(id);
                    let answer = policy
                        .answers
                        .get(results - 1)
                        .copied()
                        .unwrap_or(Answer::Accept);
                    let reply = match answer {
                        Answer::Accept | Answer::Duplicate if state.done.contains(&id) => {
                            ServerMessage::Ack {
                                id: Dec(id),
                                status: AckStatus::Duplicate,
                            }
                        }
                        Answer::Accept => {
                            state.done.insert(id);
                            ServerMessage::Ack {
                                id: Dec(id),
                                status: AckStatus::Accepted,
                            }
                        }
                        Answer::Duplicate => {
                            state.done.insert(id);
                            ServerMessage::Ack {
                                id: Dec(id),
                                status: AckStatus::Duplicate,
                            }
                        }
                        Answer::Error => {
                            state.pool.insert(id);
                            ServerMessage::Error {
                                code: ErrorCode::WrongSums,
                                message: format!(
                                    "scripted error for interval {id} (piswarm check)"
                                ),
                                id: Some(Dec(id)),
                            }
                        }
                    };
                    let sent = conn.send(&self.t, &reply).await;
                    if answer != Answer::Accept {
                        state.scripted.push(sent);
                    }
                }
            }
        }
    }

    /// Whether a result may be judged: it echoes an interval this connection holds, or is a
    /// re-sent result of an interval handed out in this run.
    fn result_allowed(
        &self,
        r: &WorkResult,
        held_here: bool,
        answered_here: &BTreeSet<u64>,
        state: &JobState,
        c: &mut Clauses,
        line: &str,
    ) -> bool {
        let id = r.id.0;
        if r.resend {
            if !state.handed.contains(&id) {
                c.resend.fail(format!("re-sent a result for interval {id}, never handed out in this run (not_assigned)"), &[line.to_string()]);
                return false;
            }
            if state.lost.contains_key(&id) {
                c.resend.pass(
                    "re-sent every unanswered result, marked resend, to the same run",
                    &[line.to_string()],
                );
            }
            return true;
        }
        if held_here {
            c.format.pass(
                "every result echoes the id, a and b of an interval it held",
                &[line.to_string()],
            );
            return true;
        }
        if answered_here.contains(&id) {
            c.answers.fail(format!("sent a result for interval {id} again after it was answered (not_assigned, a strike)"), &[line.to_string()]);
        } else if state.lost.contains_key(&id) {
            c.resend.fail(format!("sent interval {id}'s result again without \"resend\":true on a new connection (not_assigned, a strike)"), &[line.to_string()]);
        } else {
            c.format.fail(format!("a result for interval {id}, which this connection does not hold (not_assigned)"), &[line.to_string()]);
        }
        false
    }

    /// After `done`: the client must close within [`DONE_GRACE`], and not come back.
    async fn watch_leave(
        &mut self,
        mut conn: Conn,
        done: String,
        program: &mut Program,
        c: &mut Clauses,
    ) {
        let until = (Instant::now() + DONE_GRACE).min(self.deadline + DONE_GRACE);
        let mut said_bye = None;
        loop {
            tokio::select! {
                i = conn.next(&self.t) => match i {
                    Incoming::Closed => break,
                    Incoming::Message(ClientMessage::Bye {}, line) => said_bye = Some(line),
                    Incoming::Message(_, _) | Incoming::Bad(_, _) => {}
                },
                _ = sleep_until(until) => {
                    c.leaves.fail(format!("still connected {DONE_GRACE:?} after done"), &[done]);
                    return;
                }
            }
        }
        let closed = self
            .t
            .line(conn.n, "-", "(the client closed the connection)");
        tokio::select! {
            r = self.listener.accept() => {
                if r.is_ok() {
                    c.leaves.fail(
                        "connected again after done job_complete: there is no more work",
                        &[done, closed],
                    );
                    return;
                }
            }
            _ = program.exited() => {}
            _ = tokio::time::sleep(AFTER_DONE) => {}
        }
        let mut evidence = vec![done];
        evidence.extend(said_bye);
        evidence.push(closed);
        c.leaves
            .pass("left on done (and did not come back)", &evidence);
    }

    /// The coordinator dies after the first result; a client that reconnects re-sends it.
    async fn restart(&mut self, first: Conn, program: &mut Program, c: &mut Clauses) {
        let mut state = JobState::new(Scenario::Restart);
        let policy = Policy {
            crash_after: Some(1),
            ..Policy::default()
        };
        match self
            .job_connection(first, &mut state, &policy, program, c)
            .await
        {
            Some(End::Crashed) => {}
            Some(End::Left(why)) => {
                c.resend.skip(format!(
                    "the restart scenario's client left before its first result: {why}"
                ));
                return;
            }
            _ => {
                c.resend
                    .skip("the restart scenario's client sent no result");
                return;
            }
        }
        let crash = self.t.line(
            1,
            "-",
            "(the coordinator closed the connection without answering: a crash)",
        );
        let second = match self.accept(program, self.connect_within).await {
            Accepted::Conn(conn) => conn,
            Accepted::Exited(why) => {
                c.resend.skip(format!("the client did not reconnect after the coordinator restarted ({why}); a client that reconnects must re-send what was not answered"));
                return;
            }
            Accepted::Timeout => {
                c.resend.skip(format!(
                    "the client did not reconnect within {:.0?} after the coordinator restarted",
                    self.connect_within
                ));
                return;
            }
        };
        let end = self
            .job_connection(second, &mut state, &Policy::default(), program, c)
            .await;
        if !state.lost.is_empty() {
            let ids: Vec<String> = state.lost.keys().map(u64::to_string).collect();
            let mut evidence: Vec<String> = state.lost.values().cloned().collect();
            evidence.push(crash);
            c.resend.fail(
                format!(
                    "the result for interval {} was sent to the coordinator before its restart, never answered, and not re-sent (with \"resend\":true) after reconnecting to the same run",
                    ids.join(", ")
                ),
                &evidence,
            );
        } else if end.is_none() {
            c.resend.skip("the reconnection's hello failed");
        }
    }

    /// The silent coordinator: nothing after the hello, then a close, then refusals.
    async fn silent(&mut self, mut first: Conn, program: &mut Program, c: &mut Clauses) {
        let quiet_until = Instant::now() + SILENT_FOR;
        let mut extra: Vec<Conn> = Vec::new();
        let mut attempts: Vec<(Instant, String)> = Vec::new();
        loop {
            tokio::select! {
                i = first.next(&self.t) => if let Incoming::Closed = i {
                    // It gave up on the silent coordinator: wait for the refusal window.
                    sleep_until(quiet_until).await;
                    break;
                },
                r = self.listener.accept() => if let Ok((stream, _)) = r {
                    self.conns += 1;
                    attempts.push((Instant::now(), self.t.line(self.conns, "-", "(a connection while the coordinator was silent)")));
                    let (r, w) = stream.into_split();
                    extra.push(Conn { n: self.conns, reader: BufReader::new(r), writer: w, line: Vec::new(), complete: false });
                },
                _ = sleep_until(quiet_until) => break,
            }
        }
        drop(first);
        drop(extra);
        let closed_at = Instant::now();
        let refuse_until = closed_at + REFUSE_FOR;
        let refusal = ServerMessage::error(
            ErrorCode::TooManyConnections,
            "the coordinator is full (scripted): try again later",
        );
        loop {
            tokio::select! {
                r = self.listener.accept() => if let Ok((stream, _)) = r {
                    self.conns += 1;
                    let (r, w) = stream.into_split();
                    let mut conn = Conn { n: self.conns, reader: BufReader::new(r), writer: w, line: Vec::new(), complete: false };
                    let line = conn.send(&self.t, &refusal).await;
                    attempts.push((Instant::now(), line));
                },
                _ = program.exited() => break,
                _ = sleep_until(refuse_until) => break,
            }
        }
        let n = attempts.len();
        let gaps: Vec<String> = attempts
            .windows(2)
            .map(|w| format!("{:.0} ms", (w[1].0 - w[0].0).as_secs_f64() * 1000.0))
            .collect();
        let evidence: Vec<String> = attempts.iter().take(4).map(|a| a.1.clone()).collect();
        if n > MAX_ATTEMPTS {
            c.backoff.fail(
                format!("{n} connection attempts within {:.0?} of a silent, then refusing coordinator: reconnecting without backoff (gaps {})", SILENT_FOR + REFUSE_FOR, gaps.join(", ")),
                &evidence,
            );
        } else if n == 0 {
            c.backoff.pass(
                "did not reconnect to a silent coordinator within the scenario (no tight loop)",
                &evidence,
            );
        } else {
            c.backoff.pass(
                format!(
                    "{n} connection attempts in {:.0?} (at most {MAX_ATTEMPTS}), gaps {}",
                    REFUSE_FOR,
                    if gaps.is_empty() {
                        "-".to_string()
                    } else {
                        gaps.join(", ")
                    }
                ),
                &evidence,
            );
        }
    }
}
