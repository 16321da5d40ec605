//! `piswarm check client --protocol legacy`: a client of the original's text protocol
//! (docs/protocol.md §13) against a scripted legacy server.
//!
//! The original client computes one interval per connection and exits, so the program is run
//! twice, for the first interval of the scripted job and for one far from 0 (where a forward loop
//! leaves the compensated kernel's bound). Each run: the server sends `[a, b]` in a frame; the
//! client must answer `[R]<evens>,<odds>,<pi>` in a frame, then `!DESCONECTADO` (or close); the
//! server answers `msg recebida corretamente` and closes. The clauses of v1 that have no
//! counterpart in this protocol (credit, heartbeats, re-sending, backoff) do not apply.

use super::client::{ClientOptions, CHUNK, INTERVALS};
use super::program::Program;
use super::{CheckError, Protocol, Report, Tally, Transcript};
use crate::job::verify::{check_result_with, Tolerance};
use crate::job::{IntervalId, Job};
use crate::maths::kernel::Kernel;
use crate::maths::sums;
use crate::wire::legacy::{
    self, encode_frame, interval_body, is_original_trapezoid, parse_client_body, read_frame,
    ClientFrame, DISCONNECT_REPLY,
};
use crate::wire::{Dec, WorkResult};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout_at, Instant};

/// The intervals handed out, one per run of the program.
const RUNS: [u64; 2] = [0, INTERVALS - 1];

struct Clauses {
    frames: Tally,
    sums: Tally,
    pi_tolerance: Tally,
    pi_kernel: Tally,
    goodbye: Tally,
}

pub(crate) async fn check(options: &ClientOptions) -> Result<Report, CheckError> {
    let started = std::time::Instant::now();
    let job = Job::new(Some(CHUNK * INTERVALS), Some(CHUNK)).expect("a valid job");
    let mut c = Clauses {
        frames: Tally::new(
            "frames",
            "256-byte length headers; the result as [R]<evens>,<odds>,<pi> (§13.1, §13.2)",
        ),
        sums: Tally::new("exact_sums", "even and odd sums exact, evens first (§13.2)"),
        pi_tolerance: Tally::new(
            "pi_tolerance",
            "π partial of the interval within the verification tolerance (§5.3)",
        ),
        pi_kernel: Tally::new(
            "pi_kernel_bound",
            "π partial within the compensated kernel's bound (serve --strict)",
        ),
        goodbye: Tally::new(
            "goodbye",
            "!DESCONECTADO (or a close) after the result, then it leaves (§13.2)",
        ),
    };
    let mut notes = Vec::new();
    for (run, id) in RUNS.into_iter().enumerate() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(CheckError::Listen)?;
        let addr = listener.local_addr().map_err(CheckError::Listen)?;
        let mut program = Program::start(&options.program, addr)?;
        let t = Transcript::new(if run == 0 { "first" } else { "far" });
        let deadline = Instant::now() + options.timeout;
        let connect_by = Instant::now() + options.timeout.min(Duration::from_secs(10));
        let stream = tokio::select! {
            r = listener.accept() => r.ok().map(|(s, _)| s),
            _ = program.exited() => None,
            _ = tokio::time::sleep_until(connect_by) => None,
        };
        let connected = stream.is_some();
        if let Some(stream) = stream {
            one_interval(stream, &job, id, &t, deadline, &mut c).await;
        }
        // It computed one interval: it should leave by itself.
        let exited = timeout_at(
            Instant::now() + Duration::from_secs(5).min(options.timeout),
            program.exited(),
        )
        .await
        .is_ok();
        program.stop().await;
        if !connected {
            let output = program.last_output();
            c.frames.fail(
                format!(
                    "the program made no connection to {addr} within {:.0?}{}",
                    options.timeout.min(Duration::from_secs(10)),
                    if run == 0 {
                        "; the second run was not made"
                    } else {
                        ""
                    }
                ),
                &output,
            );
            break;
        }
        if !exited && !c.goodbye.failed() {
            c.goodbye.fail(
                "the program was still running 5 s after its interval was answered (the original client takes one interval and exits)",
                &[],
            );
        }
    }
    if c.pi_tolerance.failed() {
        notes.push(
            "piswarm serve --legacy-listen recognises the original client's trapezoid constant and recomputes the interval's π itself; a client of this assignment should send the partial sum of its interval".into(),
        );
    }
    Ok(Report::new(
        "client",
        Protocol::Legacy,
        options.program.join(" "),
        vec![
            c.frames.finish(),
            c.sums.finish(),
            c.pi_tolerance.finish(),
            c.pi_kernel.finish(),
            c.goodbye.finish(),
        ],
        notes,
        started,
    ))
}

/// One connection: hand out interval `id`, read and judge the result and the goodbye.
async fn one_interval(
    mut stream: TcpStream,
    job: &Job,
    id: u64,
    t: &Transcript,
    deadline: Instant,
    c: &mut Clauses,
) {
    let interval = job.interval(IntervalId(id)).expect("in the grid");
    let body = interval_body(interval.a, interval.b);
    let _ = stream.write_all(&encode_frame(body.as_bytes())).await;
    let sent = t.line(1, "S", &format!("[header {}] {body}", body.len()));
    let (mut reader, mut writer) = stream.into_split();
    let frame = match timeout_at(deadline, read_frame(&mut reader)).await {
        Err(_) => {
            c.frames.fail(
                "no result before the scenario's deadline (--timeout)",
                &[sent],
            );
            return;
        }
        Ok(Ok(Some(body))) => body,
        Ok(Ok(None)) => {
            c.frames
                .fail("the client closed the connection without a result", &[sent]);
            return;
        }
        Ok(Err(e)) => {
            c.frames.fail(format!("not a frame: {e}"), &[sent]);
            return;
        }
    };
    let line = t.line(
        1,
        "C",
        &format!(
            "[header {}] {}",
            frame.len(),
            String::from_utf8_lossy(&frame)
        ),
    );
    let result = match parse_client_body(&frame) {
        Ok(ClientFrame::Result(r)) => r,
        Ok(other) => {
            c.frames
                .fail(format!("expected a result, got {other:?}"), &[sent, line]);
            return;
        }
        Err(e) => {
            c.frames.fail(format!("not a result: {e}"), &[sent, line]);
            return;
        }
    };
    c.frames.pass(
        "valid headers, and the result as [R]<evens>,<odds>,<pi>",
        &[sent.clone(), line.clone()],
    );
    let evidence = [sent, line.clone()];
    let (even, odd) = (
        sums::even_sum(interval.a, interval.b),
        sums::odd_sum(interval.a, interval.b),
    );
    if (result.even_sum, result.odd_sum) == (even, odd) {
        c.sums.pass("every sum exact, evens first", &evidence);
    } else if (result.even_sum, result.odd_sum) == (odd, even) {
        c.sums.fail(
            format!(
                "evens and odds swapped for [{}, {}]: the sum of the evens ({even}) comes first",
                interval.a, interval.b
            ),
            &evidence,
        );
    } else {
        c.sums.fail(
            format!(
                "wrong sums for [{}, {}]: got {} and {}, expected {even} and {odd}",
                interval.a, interval.b, result.even_sum, result.odd_sum
            ),
            &evidence,
        );
    }
    let as_v1 = WorkResult {
        id: Dec(id),
        a: Dec(interval.a),
        b: Dec(interval.b),
        even_sum: Dec(even),
        odd_sum: Dec(odd),
        pi: result.pi,
        duration_s: 0.0,
        resend: false,
    };
    match check_result_with(job, Kernel::CURRENT, &as_v1, Tolerance::Honest) {
        Ok(_) => c
            .pi_tolerance
            .pass("every π partial within the tolerance", &evidence),
        Err(r) if is_original_trapezoid(result.pi) => c.pi_tolerance.fail(
            format!(
                "{}: this is the original client's trapezoid constant, the same for every interval",
                r.message
            ),
            &evidence,
        ),
        Err(r) => c.pi_tolerance.fail(r.message, &evidence),
    }
    match check_result_with(job, Kernel::CURRENT, &as_v1, Tolerance::Kernel) {
        Ok(_) => c.pi_kernel.pass(
            "every π partial within the compensated kernel's bound",
            &evidence,
        ),
        Err(r) => c.pi_kernel.fail(r.message, &evidence),
    }
    match timeout_at(deadline, read_frame(&mut reader)).await {
        Ok(Ok(Some(body))) => {
            let bye = t.line(1, "C", &String::from_utf8_lossy(&body));
            match parse_client_body(&body) {
                Ok(ClientFrame::Disconnect) => {
                    let _ = writer.write_all(DISCONNECT_REPLY).await;
                    let reply = t.line(1, "S", &String::from_utf8_lossy(DISCONNECT_REPLY));
                    c.goodbye.pass(
                        format!("{} after the result", legacy::DISCONNECT),
                        &[line, bye, reply],
                    );
                }
                _ => c.goodbye.fail(
                    format!(
                        "after its result the client sent something other than {}",
                        legacy::DISCONNECT
                    ),
                    &[line, bye],
                ),
            }
        }
        Ok(Ok(None)) | Ok(Err(_)) => c.goodbye.pass(
            "closed the connection after the result",
            &[line, t.line(1, "-", "(closed)")],
        ),
        Err(_) => c.goodbye.fail(
            "neither !DESCONECTADO nor a close after the result",
            &[line],
        ),
    }
}
