//! `piswarm check`: grading any client or server of the assignment, in any language, against the
//! protocol (docs/protocol.md) — and docs/grading.md says how a teacher and a student use it.
//!
//! * [`client`]: a scripted coordinator on a free loopback port runs a client program through
//!   scenarios (a plain job, a restart, `duplicate` and `error` answers, a `done`, a silent
//!   coordinator) and checks each clause a client must honour (`client_legacy` does the same
//!   for a client of the original's text protocol, §13).
//! * [`server`]: scripted clients (up to N at once, then misbehaving ones) drive a server and
//!   check what it hands out and how it answers (`drive` speaks to it in v1 or legacy;
//!   `results` checks the server's own results file against what the clients saw).
//! * This module: the report both produce, one line per clause — pass, fail or not exercised,
//!   with the transcript lines that show it — and its JSON form.
//!
//! Every wait has a deadline (the options' `timeout`), every program the check starts is killed
//! when its scenario ends, and nothing here is trusted from the program under test: its lines are
//! decoded with the wire codec and its numbers checked with `job::verify`.

pub mod client;
mod client_clauses;
mod client_legacy;
mod drive;
mod program;
mod results;
pub mod server;

use serde::Serialize;
use std::fmt::Write as _;
use std::time::Instant;

/// Which protocol the program under test speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Protocol v1: newline-delimited JSON (docs/protocol.md §1–§12).
    #[default]
    V1,
    /// The original's text protocol: 256-byte headers, `[a, b]` / `[R]evens,odds,pi` (§13).
    Legacy,
}

/// What became of one clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// No scenario reached the point where the clause could be seen kept or broken.
    NotExercised,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::NotExercised => "not exercised",
        }
    }
}

/// Longest transcript line kept as evidence (longer ones are cut, with their length).
const EVIDENCE_LINE: usize = 200;
/// Evidence lines kept per clause.
const EVIDENCE_LINES: usize = 6;

/// One clause of the protocol and what the check saw of it.
#[derive(Debug, Clone, Serialize)]
pub struct Clause {
    /// A stable identifier (`exact_sums`, `unique_intervals`, …).
    pub id: &'static str,
    /// What the clause asks, in a few words.
    pub title: &'static str,
    pub verdict: Verdict,
    /// One sentence: why it passed or failed, or why it was not exercised.
    pub detail: String,
    /// The transcript lines that show it.
    pub evidence: Vec<String>,
}

/// Collects what a scenario saw of one clause: the first failure decides; passes are kept as
/// evidence until then.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    id: &'static str,
    title: &'static str,
    failure: Option<String>,
    pass: Option<String>,
    not_exercised: Option<String>,
    evidence: Vec<String>,
}

impl Tally {
    pub(crate) fn new(id: &'static str, title: &'static str) -> Tally {
        Tally {
            id,
            title,
            failure: None,
            pass: None,
            not_exercised: None,
            evidence: Vec::new(),
        }
    }

    fn keep(&mut self, evidence: &[String], front: bool) {
        let lines: Vec<String> = evidence.iter().map(|l| cut(l)).collect();
        if front {
            // A failure's lines come first: they are what the reader needs.
            let mut merged = lines;
            merged.append(&mut self.evidence);
            self.evidence = merged;
        } else {
            self.evidence.extend(lines);
        }
        self.evidence.truncate(EVIDENCE_LINES);
    }

    /// The clause was kept (the last pass's detail is reported, unless something fails).
    pub(crate) fn pass(&mut self, detail: impl Into<String>, evidence: &[String]) {
        if self.failure.is_none() {
            self.pass = Some(detail.into());
            if self.evidence.len() < 2 {
                self.keep(evidence, false);
            }
        }
    }

    /// The clause was broken (the first failure is reported).
    pub(crate) fn fail(&mut self, detail: impl Into<String>, evidence: &[String]) {
        if self.failure.is_none() {
            self.failure = Some(detail.into());
            self.evidence.clear();
            self.keep(evidence, true);
        }
    }

    /// Why the clause may not have been exercised (reported only if nothing else was seen).
    pub(crate) fn skip(&mut self, why: impl Into<String>) {
        if self.not_exercised.is_none() {
            self.not_exercised = Some(why.into());
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.failure.is_some()
    }

    pub(crate) fn finish(self) -> Clause {
        let (verdict, detail) = match (self.failure, self.pass, self.not_exercised) {
            (Some(f), _, _) => (Verdict::Fail, f),
            (None, Some(p), _) => (Verdict::Pass, p),
            (None, None, why) => (
                Verdict::NotExercised,
                why.unwrap_or_else(|| "no scenario reached it".into()),
            ),
        };
        Clause {
            id: self.id,
            title: self.title,
            verdict,
            detail,
            evidence: self.evidence,
        }
    }
}

fn cut(line: &str) -> String {
    if line.len() <= EVIDENCE_LINE {
        return line.to_string();
    }
    let mut end = EVIDENCE_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &line[..end], line.len())
}

/// What `piswarm check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `client` or `server`.
    pub kind: &'static str,
    pub protocol: Protocol,
    /// The program (client) or the address (server) under test.
    pub target: String,
    pub clauses: Vec<Clause>,
    /// Figures and remarks that are not verdicts (timings, what the program printed).
    pub notes: Vec<String>,
    pub elapsed_s: f64,
    /// Every clause passed.
    pub passed: bool,
}

impl Report {
    pub(crate) fn new(
        kind: &'static str,
        protocol: Protocol,
        target: String,
        clauses: Vec<Clause>,
        notes: Vec<String>,
        started: Instant,
    ) -> Report {
        let passed = clauses.iter().all(|c| c.verdict == Verdict::Pass);
        Report {
            kind,
            protocol,
            target,
            clauses,
            notes,
            elapsed_s: started.elapsed().as_secs_f64(),
            passed,
        }
    }

    /// The clause `id`, if the report has it.
    pub fn clause(&self, id: &str) -> Option<&Clause> {
        self.clauses.iter().find(|c| c.id == id)
    }

    /// The report for people: a line per clause, its evidence indented below it.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let protocol = match self.protocol {
            Protocol::V1 => "protocol v1",
            Protocol::Legacy => "legacy protocol",
        };
        let _ = writeln!(
            out,
            "piswarm check {} ({protocol}): {}",
            self.kind, self.target
        );
        let width = self.clauses.iter().map(|c| c.id.len()).max().unwrap_or(0);
        for c in &self.clauses {
            let _ = writeln!(
                out,
                "{:<13} {:<width$}  {}: {}",
                c.verdict.word(),
                c.id,
                c.title,
                c.detail
            );
            for line in &c.evidence {
                let _ = writeln!(out, "{:13}   | {line}", "");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let failed = self
            .clauses
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .count();
        let skipped = self
            .clauses
            .iter()
            .filter(|c| c.verdict == Verdict::NotExercised)
            .count();
        let _ = writeln!(
            out,
            "{}: {} clauses, {} passed, {failed} failed, {skipped} not exercised ({:.1} s)",
            if self.passed { "PASS" } else { "FAIL" },
            self.clauses.len(),
            self.clauses.len() - failed - skipped,
            self.elapsed_s
        );
        out
    }
}

/// A check could not run at all (as opposed to a program that fails it).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot listen on loopback for the scripted coordinator: {0}")]
    Listen(std::io::Error),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("no program to check: give it after --, e.g. piswarm check client -- python3 client.py {{addr}}")]
    NoProgram,
    #[error("cannot resolve {addr}: {reason}")]
    Address { addr: String, reason: String },
}

/// A transcript of one scenario: lines with their time since the scenario started, bounded.
#[derive(Debug)]
pub(crate) struct Transcript {
    started: Instant,
    scenario: &'static str,
}

impl Transcript {
    pub(crate) fn new(scenario: &'static str) -> Transcript {
        Transcript {
            started: Instant::now(),
            scenario,
        }
    }

    /// A transcript line: `[scenario +1.234s #conn] C: {...}`.
    pub(crate) fn line(&self, conn: usize, who: &str, text: &str) -> String {
        format!(
            "[{} +{:.3}s #{conn}] {who}: {}",
            self.scenario,
            self.started.elapsed().as_secs_f64(),
            text.trim_end_matches(['\r', '\n'])
        )
    }
}
