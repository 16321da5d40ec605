//! `piswarm check server`: scripted clients drive a server and the check judges what it hands
//! out and how it answers.
//!
//! Phases, each bounded by the options' `timeout`:
//! 1. **concurrent** — N clients connect at once; each takes one interval, reports the right
//!    result and leaves. Every one must be served; the time until the last is served is
//!    reported.
//! 2. **misbehaving**, one after the other — a wrong result (sums off by 2), a malformed line
//!    (legacy: a malformed header), an oversized line (legacy: a header announcing 1 MB), a
//!    client that disconnects holding an interval; then a client that never speaks and keeps its
//!    connection open.
//! 3. **recovery** — min(N, 10) new clients, while the silent one is still connected: all must be
//!    served, and the interval the disconnected client abandoned must be handed out again.
//!
//! Then, over everything handed out (per run): no interval handed to two clients unless the
//! first had given it up (the report names both clients and the interval), and no gap. With
//! `--results FILE`, the server's own results (results.json, final.json, `piswarm export`) are
//! checked exactly against the intervals the scripted clients saw accepted.

use super::drive::{Answer, Got, Link, Numbers};
use super::{results, CheckError, Protocol, Report, Tally};
use crate::wire::legacy::HEADER_LEN;
use crate::wire::ServerMessage;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// Clients of the recovery phase (at most).
const RECOVERY_CLIENTS: usize = 10;
/// The longest a misbehaving client waits for the server's reaction.
const REACTION_WITHIN: Duration = Duration::from_secs(10);
/// Bytes of the oversized line: more than the protocol's 65 536.
const OVERSIZED: usize = 70_000;

/// What to check.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// HOST:PORT of the server.
    pub addr: String,
    pub protocol: Protocol,
    /// Concurrent clients of the first phase.
    pub clients: usize,
    /// The server's own results or final JSON, checked against what the clients saw.
    pub results: Option<PathBuf>,
    /// The longest one phase may take (and the wait for `results`).
    pub timeout: Duration,
}

/// What a scripted client is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Concurrent,
    WrongResult,
    Malformed,
    Oversized,
    Disconnect,
    Silent,
    Recovery,
}

/// When a client let go of its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Release {
    /// Its result was accepted (or a duplicate): the interval is computed.
    Completed(Instant),
    /// It gave the interval up (left, or its result was refused): it may be handed out again.
    Abandoned(Instant),
    /// Still held at the end of the check (or its fate is unknown).
    Held,
}

/// What happened to one scripted client.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub index: usize,
    pub name: String,
    pub role: Role,
    pub run: Option<String>,
    pub got: Option<Got>,
    pub got_at: Option<Instant>,
    pub release: Release,
    pub answer: Option<(Answer, String)>,
    /// What the server did that the role looks for (an error line, a close), as evidence.
    pub reaction: Option<String>,
    pub error: Option<String>,
    pub lines: Vec<String>,
    pub connected_at: Option<Instant>,
    pub served_at: Option<Instant>,
}

impl Record {
    fn new(index: usize, role: Role) -> Record {
        Record {
            index,
            name: format!("check-{index}"),
            role,
            run: None,
            got: None,
            got_at: None,
            release: Release::Held,
            answer: None,
            reaction: None,
            error: None,
            lines: Vec::new(),
            connected_at: None,
            served_at: None,
        }
    }

    fn served(&self) -> bool {
        matches!(self.answer, Some((Answer::Accepted | Answer::Duplicate, _)))
    }

    fn evidence(&self) -> Vec<String> {
        let mut e: Vec<String> = self.lines.iter().rev().take(4).cloned().collect();
        e.reverse();
        if let Some(err) = &self.error {
            e.push(format!("{}: {err}", self.name));
        }
        e
    }
}

/// Everything the scripted clients share.
#[derive(Clone, Copy)]
struct Ctx {
    addr: SocketAddr,
    protocol: Protocol,
    started: Instant,
}

/// Awaits `f`, or says that the deadline passed.
async fn within<T>(
    deadline: Instant,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match timeout_at(deadline, f).await {
        Ok(r) => r,
        Err(_) => Err("no answer from the server before the deadline".into()),
    }
}

/// Connects (and, v1, says hello, except for the client that never speaks).
async fn connect(ctx: Ctx, rec: &mut Record, deadline: Instant) -> Result<Link, String> {
    let mut link = within(
        deadline,
        Link::open(ctx.addr, ctx.protocol, rec.index, ctx.started),
    )
    .await?;
    rec.name = link.name.clone();
    rec.connected_at = Some(Instant::now());
    if ctx.protocol == Protocol::V1 && rec.role != Role::Silent {
        let hello = within(deadline, link.hello()).await;
        rec.lines = link.lines.clone();
        hello?;
        rec.run = link.run.clone();
    }
    Ok(link)
}

/// Takes an interval, recording it.
async fn take(link: &mut Link, rec: &mut Record, deadline: Instant) -> Result<Got, String> {
    let got = within(deadline, link.interval()).await;
    rec.lines = link.lines.clone();
    let got = got?;
    rec.got = Some(got.clone());
    rec.got_at = Some(Instant::now());
    Ok(got)
}

/// A client that does everything right (or, with `wrong`, reports sums off by 2).
async fn honest(ctx: Ctx, index: usize, role: Role, deadline: Instant) -> Record {
    let mut rec = Record::new(index, role);
    let mut link = None;
    if let Err(e) = honest_steps(ctx, &mut rec, &mut link, deadline).await {
        rec.error = Some(e);
    }
    if let Some(link) = link {
        rec.lines = link.lines.clone();
        link.bye().await;
    }
    rec
}

async fn honest_steps(
    ctx: Ctx,
    rec: &mut Record,
    slot: &mut Option<Link>,
    deadline: Instant,
) -> Result<(), String> {
    let link = slot.insert(connect(ctx, rec, deadline).await?);
    if rec.role == Role::Malformed {
        misbehave_v1_malformed(link, rec, deadline).await?;
    }
    let got = take(link, rec, deadline).await?;
    let mut numbers = Numbers::honest(got.a, got.b).await;
    if rec.role == Role::WrongResult {
        numbers.even_sum += 2;
    }
    within(deadline, link.result(&got, numbers)).await?;
    let answer = within(deadline, link.answer(&got)).await;
    rec.lines = link.lines.clone();
    let answer = answer?;
    let now = Instant::now();
    rec.release = match answer.0 {
        Answer::Accepted | Answer::Duplicate => Release::Completed(now),
        Answer::Refused(_) => Release::Abandoned(now),
    };
    rec.served_at = Some(now);
    rec.answer = Some(answer);
    Ok(())
}

/// v1: a line that is not JSON, which the server must answer (`bad_json`) without closing.
async fn misbehave_v1_malformed(
    link: &mut Link,
    rec: &mut Record,
    deadline: Instant,
) -> Result<(), String> {
    within(deadline, link.send_raw(b"{not json\n", "{not json")).await?;
    loop {
        match within(deadline, link.next_message()).await? {
            Some((ServerMessage::Error { id: None, .. }, line)) => {
                rec.reaction = Some(line);
                return Ok(());
            }
            // Not the answer to the malformed line.
            Some((
                ServerMessage::Error { id: Some(_), .. }
                | ServerMessage::Welcome { .. }
                | ServerMessage::Assign { .. }
                | ServerMessage::Ack { .. }
                | ServerMessage::Done { .. },
                _,
            )) => {}
            None => {
                rec.lines = link.lines.clone();
                return Err(
                    "the server closed the connection on a malformed line (it should answer bad_json and go on)"
                        .into(),
                );
            }
        }
    }
}

/// A client that misbehaves without reporting: a malformed frame (legacy), an oversized line,
/// a disconnection, or silence. Returns the silent client's link, to keep it open.
async fn misbehave(
    ctx: Ctx,
    index: usize,
    role: Role,
    deadline: Instant,
) -> (Record, Option<Link>) {
    let mut rec = Record::new(index, role);
    let mut link = match connect(ctx, &mut rec, deadline).await {
        Ok(link) => link,
        Err(e) => {
            rec.error = Some(e);
            return (rec, None);
        }
    };
    let v1 = ctx.protocol == Protocol::V1;
    // Legacy servers hand the interval out on connect; v1 clients of these roles ask for none,
    // except the one that disconnects holding an interval.
    if !v1 || role == Role::Disconnect {
        if let Err(e) = take(&mut link, &mut rec, deadline).await {
            rec.error = Some(e);
            return (rec, None);
        }
    }
    match role {
        Role::Disconnect => {
            rec.release = Release::Abandoned(Instant::now());
            rec.lines = link.lines.clone();
            drop(link);
            (rec, None)
        }
        Role::Silent => {
            rec.lines = link.lines.clone();
            rec.lines.push(format!(
                "[+{:.3}s {}] C: (connected; says nothing from now on)",
                ctx.started.elapsed().as_secs_f64(),
                rec.name
            ));
            (rec, Some(link))
        }
        Role::Malformed | Role::Oversized => {
            let sent = match (role, v1) {
                (Role::Oversized, true) => {
                    let mut line = vec![b'x'; OVERSIZED];
                    line.insert(0, b'"');
                    link.send_raw(
                        &line,
                        &format!("(a line of {OVERSIZED} bytes without a newline)"),
                    )
                    .await
                }
                (Role::Oversized, false) => {
                    let header = format!("{:<HEADER_LEN$}", 1_000_000);
                    link.send_raw(
                        header.as_bytes(),
                        "(a header announcing a body of 1000000 bytes)",
                    )
                    .await
                }
                _ => {
                    link.send_raw(
                        format!("{:<HEADER_LEN$}", "hello server").as_bytes(),
                        "(a header that is not a length: \"hello server\" padded to 256 bytes)",
                    )
                    .await
                }
            };
            // A server may close while the bytes are still being written: that is its answer.
            let _ = sent;
            if !v1 {
                rec.release = Release::Abandoned(Instant::now());
            }
            let (closed, bytes) = timeout_at(deadline, link.read_until_close(4096, None))
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let shown = format!(
                "[+{:.3}s {}] S: {}",
                ctx.started.elapsed().as_secs_f64(),
                rec.name,
                if text.is_empty() {
                    "(closed)".to_string()
                } else {
                    format!(
                        "{} (then {})",
                        text.trim_end(),
                        if closed { "closed" } else { "nothing" }
                    )
                }
            );
            rec.lines = link.lines.clone();
            rec.lines.push(shown.clone());
            if closed {
                rec.reaction = Some(shown);
            } else {
                rec.error = Some(format!(
                    "the server did not close the connection within {:.0?}",
                    REACTION_WITHIN
                ));
            }
            (rec, None)
        }
        _ => (rec, None),
    }
}

/// Runs the check; `waiting` is called before waiting for the results file (say so to the
/// user: a server may write it only when it stops).
pub async fn check_server(
    options: &ServerOptions,
    waiting: impl FnOnce(&Path, Duration),
) -> Result<Report, CheckError> {
    let started_clock = std::time::Instant::now();
    let addr = tokio::net::lookup_host(&options.addr)
        .await
        .map_err(|e| CheckError::Address {
            addr: options.addr.clone(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| CheckError::Address {
            addr: options.addr.clone(),
            reason: "no address".into(),
        })?;
    let ctx = Ctx {
        addr,
        protocol: options.protocol,
        started: Instant::now(),
    };
    let n = options.clients.max(1);
    let mut records: Vec<Record> = Vec::new();
    let mut notes = Vec::new();

    // 1. N at once.
    let phase1 = Instant::now();
    let deadline = phase1 + options.timeout;
    let tasks: Vec<_> = (1..=n)
        .map(|i| tokio::spawn(honest(ctx, i, Role::Concurrent, deadline)))
        .collect();
    for task in tasks {
        if let Ok(rec) = task.await {
            records.push(rec);
        }
    }
    // 2. Misbehaving clients, one after the other.
    let mut index = n;
    let mut next = || {
        index += 1;
        index
    };
    let reaction = || Instant::now() + options.timeout.min(REACTION_WITHIN);
    records.push(honest(ctx, next(), Role::WrongResult, reaction()).await);
    if ctx.protocol == Protocol::V1 {
        records.push(honest(ctx, next(), Role::Malformed, reaction()).await);
    } else {
        records.push(misbehave(ctx, next(), Role::Malformed, reaction()).await.0);
    }
    records.push(misbehave(ctx, next(), Role::Oversized, reaction()).await.0);
    records.push(misbehave(ctx, next(), Role::Disconnect, reaction()).await.0);
    let (silent, silent_link) = misbehave(ctx, next(), Role::Silent, reaction()).await;
    records.push(silent);
    // 3. Recovery, while the silent client holds its connection.
    let deadline = Instant::now() + options.timeout;
    let tasks: Vec<_> = (0..n.min(RECOVERY_CLIENTS))
        .map(|_| tokio::spawn(honest(ctx, next(), Role::Recovery, deadline)))
        .collect();
    for task in tasks {
        if let Ok(rec) = task.await {
            records.push(rec);
        }
    }
    drop(silent_link);

    let mut clauses = judge(&records, n, phase1, &mut notes);
    if let Some(path) = &options.results {
        waiting(path, options.timeout);
        clauses.push(results::judge(path, &records, options.timeout, started_clock).await);
    }
    Ok(Report::new(
        "server",
        options.protocol,
        options.addr.clone(),
        clauses,
        notes,
        started_clock,
    ))
}

fn of(records: &[Record], role: Role) -> Vec<&Record> {
    records.iter().filter(|r| r.role == role).collect()
}

/// The server's clauses: id and title, in the order the report lists them (`judge` names them
/// in this order).
const CLAUSES: [(&str, &str); 10] = [
    (
        "serves_everyone",
        "every one of N concurrent clients gets an interval and an answer",
    ),
    (
        "unique_intervals",
        "no interval handed to two clients unless the first gave it up",
    ),
    ("no_gaps", "no gap in what was handed out (per run)"),
    (
        "wrong_result",
        "refuses a wrong result (v1: error with its id; legacy: closes)",
    ),
    (
        "malformed_line",
        "answers a malformed line (v1: bad_json and goes on; legacy: closes)",
    ),
    (
        "oversized_line",
        "refuses an oversized line (error line_too_long, close)",
    ),
    (
        "disconnect_mid_interval",
        "hands out again an interval whose client disconnected",
    ),
    (
        "silent_client",
        "a client that never speaks holds up no one",
    ),
    ("still_serves", "still serves new clients after all that"),
    (
        "performance",
        "time for N concurrent clients to be served (reported)",
    ),
];

fn judge(
    records: &[Record],
    n: usize,
    phase1: Instant,
    notes: &mut Vec<String>,
) -> Vec<super::Clause> {
    // The clauses, in the order the report lists them.
    let [mut everyone, mut unique, mut gaps, mut wrong, mut malformed, mut oversized, mut abandoned, mut silent, mut still, mut perf] =
        CLAUSES.map(|(id, title)| Tally::new(id, title));

    // 1. Everyone served, and how fast.
    let concurrent = of(records, Role::Concurrent);
    let unserved: Vec<&&Record> = concurrent.iter().filter(|r| !r.served()).collect();
    if unserved.is_empty() && concurrent.len() == n {
        let shown: Vec<String> = concurrent
            .first()
            .map(|r| {
                r.lines
                    .iter()
                    .filter(|l| {
                        l.contains("\"assign\"")
                            || l.contains("\"ack\"")
                            || l.contains("S: [header")
                            || l.contains("msg recebida")
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        everyone.pass(
            format!("all {n} concurrent clients got an interval and their result answered"),
            &shown,
        );
    } else {
        let names = unserved_names(&unserved);
        everyone.fail(
            format!(
                "{} of {n} concurrent clients were not served: {}",
                unserved.len(),
                names.join("; ")
            ),
            &unserved.first().map(|r| r.evidence()).unwrap_or_default(),
        );
    }
    let mut times: Vec<f64> = concurrent
        .iter()
        .filter_map(|r| Some((r.served_at? - r.connected_at?).as_secs_f64()))
        .collect();
    times.sort_by(f64::total_cmp);
    let last = concurrent.iter().filter_map(|r| r.served_at).max();
    match last {
        Some(last) if unserved.is_empty() => {
            let total = (last - phase1).as_secs_f64();
            let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
            let slowest = times.last().copied().unwrap_or(0.0);
            perf.pass(
                format!(
                    "{n} concurrent clients served in {total:.3} s (connect to answer: median {:.1} ms, slowest {:.1} ms)",
                    median * 1000.0,
                    slowest * 1000.0
                ),
                &[],
            );
            notes.push(format!("{n} concurrent clients served in {total:.3} s"));
        }
        _ => perf.fail(
            format!(
                "only {} of {n} concurrent clients were served before the deadline",
                n - unserved.len()
            ),
            &[],
        ),
    }

    // 2. Misbehaving clients.
    for r in of(records, Role::WrongResult) {
        match &r.answer {
            Some((Answer::Refused(code), line)) => wrong.pass(
                format!("refused ({code})"),
                &[
                    r.lines.iter().rev().nth(1).cloned().unwrap_or_default(),
                    line.clone(),
                ],
            ),
            Some((answer, line)) => wrong.fail(
                format!("answered a result with wrong sums as {answer:?}: it would count"),
                &[
                    r.lines.iter().rev().nth(1).cloned().unwrap_or_default(),
                    line.clone(),
                ],
            ),
            None => wrong.fail(
                format!(
                    "no answer to a wrong result: {}",
                    r.error.clone().unwrap_or_default()
                ),
                &r.evidence(),
            ),
        }
    }
    for r in of(records, Role::Malformed) {
        match (&r.reaction, &r.error) {
            (Some(line), None) => malformed.pass(
                if r.got.is_some() && r.served() {
                    "answered with an error and went on serving the same connection"
                } else {
                    "closed the connection on a malformed frame"
                },
                &[
                    r.lines
                        .iter()
                        .find(|l| l.contains("C: {not json") || l.contains("C: (a header"))
                        .cloned()
                        .unwrap_or_default(),
                    line.clone(),
                ],
            ),
            (Some(line), Some(e)) => malformed.fail(
                format!("answered the malformed line, then: {e}"),
                std::slice::from_ref(line),
            ),
            (None, e) => malformed.fail(
                e.clone().unwrap_or_else(|| "no reaction".into()),
                &r.evidence(),
            ),
        }
    }
    for r in of(records, Role::Oversized) {
        match (&r.reaction, &r.error) {
            (Some(line), _) => oversized.pass(
                "closed the connection",
                &[
                    r.lines
                        .iter()
                        .find(|l| l.contains("C: (a "))
                        .cloned()
                        .unwrap_or_default(),
                    line.clone(),
                ],
            ),
            (None, e) => oversized.fail(
                e.clone().unwrap_or_else(|| "no reaction".into()),
                &r.evidence(),
            ),
        }
    }

    // 3. Recovery.
    let recovery = of(records, Role::Recovery);
    let unserved: Vec<&&Record> = recovery.iter().filter(|r| !r.served()).collect();
    let silent_rec = of(records, Role::Silent);
    if recovery.is_empty() {
        still.skip("no recovery clients");
    } else if unserved.is_empty() {
        still.pass(
            format!(
                "all {} new clients served after the misbehaving ones",
                recovery.len()
            ),
            &[],
        );
        match silent_rec.first() {
            Some(s) if s.error.is_none() => silent.pass(
                format!(
                    "{} new clients served while {} held its connection without a word",
                    recovery.len(),
                    s.name
                ),
                &s.evidence(),
            ),
            Some(s) => silent.skip(format!(
                "the silent client could not connect: {}",
                s.error.clone().unwrap_or_default()
            )),
            None => {}
        }
    } else {
        let names = unserved_names(&unserved);
        let detail = format!(
            "{} of {} new clients were not served: {}",
            unserved.len(),
            recovery.len(),
            names.join("; ")
        );
        still.fail(detail.clone(), &unserved[0].evidence());
        silent.fail(
            format!("while a client held its connection without a word, {detail}"),
            &unserved[0].evidence(),
        );
    }

    // Over everything handed out.
    let handouts: Vec<&Record> = records
        .iter()
        .filter(|r| r.got.as_ref().is_some_and(|g| !g.backup) && r.got_at.is_some())
        .collect();
    let mut by_interval: BTreeMap<(Option<String>, u64, u64), Vec<&Record>> = BTreeMap::new();
    for r in &handouts {
        let g = r.got.as_ref().expect("filtered");
        by_interval
            .entry((r.run.clone(), g.a, g.b))
            .or_default()
            .push(r);
    }
    let mut twice = 0;
    for ((_, a, b), holders) in by_interval.iter_mut() {
        holders.sort_by_key(|r| r.got_at);
        for pair in holders.windows(2) {
            let (p, q) = (pair[0], pair[1]);
            let q_at = q.got_at.expect("filtered");
            let why = match p.release {
                Release::Abandoned(t) if t <= q_at => continue,
                Release::Completed(t) if t <= q_at => format!("{} had already computed it", p.name),
                _ => format!("{} still held it", p.name),
            };
            twice += 1;
            let id = q
                .got
                .as_ref()
                .and_then(|g| g.id)
                .map(|id| format!(" (id {id})"))
                .unwrap_or_default();
            unique.fail(
                format!(
                    "interval [{a}, {b}]{id} handed out twice: to {} and to {} ({why})",
                    p.name, q.name
                ),
                &[
                    p.got.as_ref().map(|g| g.line.clone()).unwrap_or_default(),
                    q.got.as_ref().map(|g| g.line.clone()).unwrap_or_default(),
                ],
            );
        }
    }
    if twice == 0 {
        unique.pass(
            format!(
                "{} intervals handed out, none twice while held or after being computed",
                by_interval.len()
            ),
            &[],
        );
    } else {
        notes.push(format!(
            "{twice} times an interval was handed out to a second client"
        ));
    }
    let mut runs: BTreeMap<Option<String>, Vec<(u64, u64)>> = BTreeMap::new();
    for (run, a, b) in by_interval.keys() {
        runs.entry(run.clone()).or_default().push((*a, *b));
    }
    let mut holes = Vec::new();
    for intervals in runs.values() {
        for w in intervals.windows(2) {
            let ((_, b0), (a1, b1)) = (w[0], w[1]);
            if a1 > b0 + 1 {
                holes.push(format!(
                    "[{}, {}] between [.., {b0}] and [{a1}, {b1}]",
                    b0 + 1,
                    a1 - 1
                ));
            } else if a1 <= b0 {
                holes.push(format!("[{a1}, {b1}] overlaps an interval ending at {b0}"));
            }
        }
    }
    if holes.is_empty() {
        if !by_interval.is_empty() {
            gaps.pass(
                format!(
                    "what was handed out is contiguous ({} intervals)",
                    by_interval.len()
                ),
                &[],
            );
        }
    } else {
        gaps.fail(
            format!(
                "{} gap(s) in what was handed out: {}",
                holes.len(),
                holes.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            ),
            &[],
        );
    }
    for r in of(records, Role::Disconnect) {
        let (Some(g), Release::Abandoned(t)) = (&r.got, r.release) else {
            abandoned.skip(format!(
                "the disconnecting client got no interval: {}",
                r.error.clone().unwrap_or_default()
            ));
            continue;
        };
        let again = handouts.iter().find(|q| {
            q.index != r.index
                && q.got.as_ref().is_some_and(|h| (h.a, h.b) == (g.a, g.b))
                && q.got_at.is_some_and(|at| at >= t)
        });
        match again {
            Some(q) => abandoned.pass(
                format!("[{}, {}], abandoned by {}, was handed out again to {}", g.a, g.b, r.name, q.name),
                &[g.line.clone(), q.got.as_ref().map(|h| h.line.clone()).unwrap_or_default()],
            ),
            None => abandoned.fail(
                format!("[{}, {}], abandoned by {} when it disconnected, was never handed out again: it would be missing from the total", g.a, g.b, r.name),
                std::slice::from_ref(&g.line),
            ),
        }
    }
    [
        everyone, unique, gaps, wrong, malformed, oversized, abandoned, silent, still, perf,
    ]
    .into_iter()
    .map(Tally::finish)
    .collect()
}

/// The first five clients of `unserved`, each with why it was not served.
fn unserved_names(unserved: &[&&Record]) -> Vec<String> {
    unserved
        .iter()
        .take(5)
        .map(|r| {
            format!(
                "{} ({})",
                r.name,
                r.error.clone().unwrap_or_else(|| "no answer".into())
            )
        })
        .collect()
}

/// The intervals the scripted clients saw counted (accepted, or duplicates of counted ones).
pub(crate) fn counted(records: &[Record]) -> BTreeMap<(u64, u64), String> {
    let mut out = BTreeMap::new();
    for r in records {
        if let (Some(g), true) = (&r.got, r.served()) {
            out.entry((g.a, g.b)).or_insert_with(|| r.name.clone());
        }
    }
    out
}
