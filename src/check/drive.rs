//! One scripted client of `piswarm check server`, in protocol v1 or the legacy protocol: connect,
//! take an interval, report a result (right or wrong), read the answer, or misbehave on purpose.
//!
//! Every method is bounded by the caller's deadline (`tokio::time::timeout_at` around it); lines
//! are read with the wire's bounded reader and frames with the legacy codec, so a server that
//! sends garbage or too much cannot make a scripted client buffer without end.

use super::Protocol;
use crate::maths::{kernel, sums};
use crate::wire::legacy::{encode_frame, read_frame, DISCONNECT, DISCONNECT_REPLY};
use crate::wire::line::read_line;
use crate::wire::{
    self, AckStatus, ClientMessage, Dec, ServerMessage, WorkResult, MAX_LINE, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Transcript lines kept per scripted client.
const KEPT: usize = 10;

/// An interval the server handed out.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    pub id: Option<u64>,
    pub a: u64,
    pub b: u64,
    /// A v1 backup copy (§6.1): another client may hold it too, legitimately.
    pub backup: bool,
    pub line: String,
}

/// What the server answered to a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Accepted,
    Duplicate,
    /// v1 `error` with the result's id (its code), or, legacy, a close without the goodbye reply.
    Refused(String),
}

/// A result to report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Numbers {
    pub even_sum: u128,
    pub odd_sum: u128,
    pub pi: f64,
}

impl Numbers {
    /// The right numbers for `[a, b]` (the kernel's π; on the blocking pool for long intervals).
    pub(crate) async fn honest(a: u64, b: u64) -> Numbers {
        let pi = tokio::task::spawn_blocking(move || kernel::pi_partial(a, b).unwrap_or(f64::NAN))
            .await
            .unwrap_or(f64::NAN);
        Numbers {
            even_sum: sums::even_sum(a, b),
            odd_sum: sums::odd_sum(a, b),
            pi,
        }
    }
}

/// One scripted client's connection.
pub(crate) struct Link {
    pub protocol: Protocol,
    pub name: String,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: Vec<u8>,
    complete: bool,
    started: Instant,
    /// The last transcript lines of this client.
    pub lines: Vec<String>,
    /// The welcome's `run_uid` (or run number): intervals are compared within a run.
    pub run: Option<String>,
}

impl Link {
    pub(crate) async fn open(
        addr: std::net::SocketAddr,
        protocol: Protocol,
        index: usize,
        started: Instant,
    ) -> Result<Link, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .map(|a| a.port().to_string())
            .unwrap_or_default();
        let (r, w) = stream.into_split();
        Ok(Link {
            protocol,
            name: match protocol {
                Protocol::V1 => format!("check-{index}"),
                Protocol::Legacy => format!("check-{index} (port {local})"),
            },
            reader: BufReader::with_capacity(8 * 1024, r),
            writer: w,
            line: Vec::new(),
            complete: false,
            started,
            lines: Vec::new(),
            run: None,
        })
    }

    fn note(&mut self, who: &str, text: &str) -> String {
        let mut text = text.trim_end().to_string();
        if text.len() > 160 {
            let mut end = 160;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text = format!("{}… ({} bytes)", &text[..end], text.len());
        }
        let line = format!(
            "[+{:.3}s {}] {who}: {text}",
            self.started.elapsed().as_secs_f64(),
            self.name
        );
        if self.lines.len() == KEPT {
            self.lines.remove(0);
        }
        self.lines.push(line.clone());
        line
    }

    async fn send_message(&mut self, message: &ClientMessage) -> Result<String, String> {
        let mut out = Vec::new();
        wire::encode(message, &mut out);
        self.writer
            .write_all(&out)
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        Ok(self.note("C", &String::from_utf8_lossy(&out)))
    }

    /// Sends raw bytes (a malformed or oversized line or frame).
    pub(crate) async fn send_raw(&mut self, bytes: &[u8], shown: &str) -> Result<String, String> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        Ok(self.note("C", shown))
    }

    /// The next v1 message; `Ok(None)` when the server closed.
    pub(crate) async fn next_message(&mut self) -> Result<Option<(ServerMessage, String)>, String> {
        match read_line(
            &mut self.reader,
            &mut self.line,
            &mut self.complete,
            MAX_LINE,
        )
        .await
        {
            Ok(true) => {
                let text = String::from_utf8_lossy(&self.line).into_owned();
                let shown = self.note("S", &text);
                wire::decode_server(&self.line)
                    .map(|m| Some((m, shown)))
                    .map_err(|e| format!("the server sent a line that is not a v1 message: {e}"))
            }
            Ok(false) => {
                self.note("-", "(the server closed the connection)");
                Ok(None)
            }
            Err(e) => {
                self.note("-", &format!("(read failed: {e})"));
                Ok(None)
            }
        }
    }

    /// v1: hello, and the welcome.
    pub(crate) async fn hello(&mut self) -> Result<String, String> {
        let hello = ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            worker: self.name.clone(),
            token: None,
            agent: Some(format!("piswarm-check/{}", env!("CARGO_PKG_VERSION"))),
        };
        self.send_message(&hello).await?;
        match self.next_message().await? {
            Some((ServerMessage::Welcome { run, run_uid, .. }, line)) => {
                self.run = Some(run_uid.unwrap_or_else(|| format!("run {run}")));
                Ok(line)
            }
            Some((other, line)) => Err(format!("expected a welcome, got {other:?} ({line})")),
            None => Err("the server closed the connection instead of a welcome".into()),
        }
    }

    /// Takes one interval: v1 `request` 1 and its `assign`; legacy, the frame sent on connect.
    pub(crate) async fn interval(&mut self) -> Result<Got, String> {
        match self.protocol {
            Protocol::V1 => {
                self.send_message(&ClientMessage::Request { count: 1 })
                    .await?;
                loop {
                    match self.next_message().await? {
                        Some((
                            ServerMessage::Assign {
                                id, a, b, backup, ..
                            },
                            line,
                        )) => {
                            return Ok(Got {
                                id: Some(id.0),
                                a: a.0,
                                b: b.0,
                                backup,
                                line,
                            })
                        }
                        Some((ServerMessage::Done { reason }, line)) => {
                            return Err(format!("no interval: done {reason:?} ({line})"))
                        }
                        Some((ServerMessage::Error { code, message, .. }, _)) => {
                            return Err(format!("no interval: error {code:?}: {message}"))
                        }
                        // Answers to earlier results, or a second welcome: not what is awaited.
                        Some((ServerMessage::Ack { .. } | ServerMessage::Welcome { .. }, _)) => {}
                        None => {
                            return Err(
                                "the server closed the connection instead of an assign".into()
                            )
                        }
                    }
                }
            }
            Protocol::Legacy => {
                let body = match read_frame(&mut self.reader).await {
                    Ok(Some(body)) => body,
                    Ok(None) => {
                        return Err("the server closed the connection without an interval".into())
                    }
                    Err(e) => return Err(format!("the server's first frame is not a frame: {e}")),
                };
                let text = String::from_utf8_lossy(&body).into_owned();
                let line = self.note("S", &format!("[header {}] {text}", body.len()));
                let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
                let mut parts = inner.split(',').map(|p| p.trim().parse::<u64>());
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(Ok(a)), Some(Ok(b)), None) if a <= b => Ok(Got {
                        id: None,
                        a,
                        b,
                        backup: false,
                        line,
                    }),
                    _ => Err(format!("the server's interval is not [a, b]: {line}")),
                }
            }
        }
    }

    /// Reports a result for `got`.
    pub(crate) async fn result(&mut self, got: &Got, n: Numbers) -> Result<String, String> {
        match self.protocol {
            Protocol::V1 => {
                let r = WorkResult {
                    id: Dec(got.id.unwrap_or_default()),
                    a: Dec(got.a),
                    b: Dec(got.b),
                    even_sum: Dec(n.even_sum),
                    odd_sum: Dec(n.odd_sum),
                    pi: n.pi,
                    duration_s: 0.0,
                    resend: false,
                };
                self.send_message(&ClientMessage::Result(r)).await
            }
            Protocol::Legacy => {
                let body = format!("[R]{},{},{:?}", n.even_sum, n.odd_sum, n.pi);
                self.send_raw(
                    &encode_frame(body.as_bytes()),
                    &format!("[header {}] {body}", body.len()),
                )
                .await
            }
        }
    }

    /// The server's answer to the result for `got` (legacy: after `!DESCONECTADO`).
    pub(crate) async fn answer(&mut self, got: &Got) -> Result<(Answer, String), String> {
        match self.protocol {
            Protocol::V1 => loop {
                match self.next_message().await? {
                    Some((ServerMessage::Ack { id, status }, line)) if Some(id.0) == got.id => {
                        let answer = match status {
                            AckStatus::Accepted => Answer::Accepted,
                            AckStatus::Duplicate => Answer::Duplicate,
                        };
                        return Ok((answer, line));
                    }
                    Some((
                        ServerMessage::Error {
                            code, id: Some(id), ..
                        },
                        line,
                    )) if Some(id.0) == got.id => {
                        return Ok((
                            Answer::Refused(
                                serde_json::to_value(code)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_string))
                                    .unwrap_or_else(|| format!("{code:?}")),
                            ),
                            line,
                        ))
                    }
                    // What answers something else (another result, a request, a line) or says
                    // nothing about this result: not what is awaited.
                    Some((
                        ServerMessage::Ack { .. }
                        | ServerMessage::Error { .. }
                        | ServerMessage::Assign { .. }
                        | ServerMessage::Welcome { .. }
                        | ServerMessage::Done { .. },
                        _,
                    )) => {}
                    None => {
                        return Err(
                            "the server closed the connection without answering the result".into(),
                        )
                    }
                }
            },
            Protocol::Legacy => {
                // The goodbye may fail if the server closed already: that is its answer.
                let _ = self
                    .send_raw(
                        &encode_frame(DISCONNECT.as_bytes()),
                        &format!("[header 13] {DISCONNECT}"),
                    )
                    .await;
                let (closed, bytes) = self.read_until_close(256, Some(DISCONNECT_REPLY)).await;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let got_reply = bytes
                    .windows(DISCONNECT_REPLY.len())
                    .any(|w| w == DISCONNECT_REPLY);
                let line = if text.is_empty() {
                    self.note("-", "(closed without the goodbye reply)")
                } else {
                    self.note("S", &text)
                };
                if got_reply {
                    Ok((Answer::Accepted, line))
                } else if closed {
                    Ok((
                        Answer::Refused("closed without msg recebida corretamente".into()),
                        line,
                    ))
                } else {
                    Err(format!(
                        "unexpected bytes instead of the goodbye reply: {line}"
                    ))
                }
            }
        }
    }

    /// Reads whatever comes until the server closes (at most `max` bytes kept), or until
    /// `stop_at` has arrived; whether it closed.
    pub(crate) async fn read_until_close(
        &mut self,
        max: usize,
        stop_at: Option<&[u8]>,
    ) -> (bool, Vec<u8>) {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match self.reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return (true, kept),
                Ok(n) => {
                    let room = max.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..n.min(room)]);
                    if let Some(stop) = stop_at {
                        if kept.windows(stop.len()).any(|w| w == stop) {
                            return (false, kept);
                        }
                    }
                    if kept.len() >= max {
                        return (false, kept);
                    }
                }
            }
        }
    }

    /// Leaves politely (v1 `bye`); the connection closes when the link is dropped.
    pub(crate) async fn bye(mut self) {
        if self.protocol == Protocol::V1 {
            let _ = self.send_message(&ClientMessage::Bye {}).await;
        }
        let _ = self.writer.shutdown().await;
    }
}
