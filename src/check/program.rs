//! The client program under test: started once per scenario with the scripted coordinator's
//! address (`{addr}` in its arguments, and `PISWARM_ADDR`), its last output lines kept, and
//! killed when the scenario ends (`kill_on_drop`, and an explicit kill and wait).

use super::CheckError;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// Output lines kept per program (the last ones).
const KEPT_LINES: usize = 8;

/// A running client program.
pub(crate) struct Program {
    child: Child,
    output: Arc<Mutex<VecDeque<String>>>,
    exited: Option<ExitStatus>,
}

impl Program {
    /// Starts `argv` with every `{addr}` replaced by `addr`.
    pub(crate) fn start(argv: &[String], addr: SocketAddr) -> Result<Program, CheckError> {
        let (first, rest) = argv.split_first().ok_or(CheckError::NoProgram)?;
        let addr_text = addr.to_string();
        let mut command = Command::new(first);
        command
            .args(rest.iter().map(|a| a.replace("{addr}", &addr_text)))
            .env("PISWARM_ADDR", &addr_text)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| CheckError::Spawn {
            program: first.clone(),
            source,
        })?;
        let output = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(out) = child.stdout.take() {
            keep_lines(out, output.clone());
        }
        if let Some(err) = child.stderr.take() {
            keep_lines(err, output.clone());
        }
        Ok(Program {
            child,
            output,
            exited: None,
        })
    }

    /// Waits for the program to exit (cancel-safe); its status once it has.
    pub(crate) async fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.wait().await.ok();
        }
        self.exited
    }

    /// Whether it has exited already (without waiting).
    pub(crate) fn has_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Kills it (if still running) and reaps it; at most a second.
    pub(crate) async fn stop(&mut self) {
        if self.has_exited().is_none() {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(1), self.exited()).await;
        }
    }

    /// The last lines it printed (standard output and error, interleaved).
    pub(crate) fn last_output(&self) -> Vec<String> {
        self.output
            .lock()
            .map(|o| o.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn keep_lines<R: AsyncRead + Unpin + Send + 'static>(
    mut stream: R,
    kept: Arc<Mutex<VecDeque<String>>>,
) {
    // Drains the pipe whatever the program writes (so that it never blocks on a full pipe),
    // keeping at most 300 bytes of each line and the last few lines.
    tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        let mut line: Vec<u8> = Vec::new();
        let push = |line: &mut Vec<u8>| {
            if let Ok(mut kept) = kept.lock() {
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(String::from_utf8_lossy(line).into_owned());
            }
            line.clear();
        };
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &byte in &chunk[..n] {
                if byte == b'\n' {
                    push(&mut line);
                } else if line.len() < 300 {
                    line.push(byte);
                }
            }
        }
        if !line.is_empty() {
            push(&mut line);
        }
    });
}
