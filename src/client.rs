//! The client side of protocol v1, said once: connecting (plain TCP, or TLS as `worker --tls-ca`
//! does), the handshake (`hello` → `welcome`, the run's kernel included), sending messages,
//! receiving the server's with the frame limit ([`MAX_LINE`]) and a deadline per read, and leaving
//! (`bye`).
//!
//! The worker (`worker/session.rs`), `bench coordinator` and `bench connections`, `bench fleet`,
//! `bench crowd`'s hoarders and the integration tests' clients all speak through a
//! [`Connection`], and each `match`es every [`ServerMessage`] variant by name: a new server
//! message is a compile error wherever it must be handled.
//!
//! It decides nothing about work — what to request, when to send a heartbeat, what to do with an
//! assignment or an error are its callers' — and it never retries (the worker's `retry` policy
//! does). [`Connection::recv`] is cancel-safe (the partial line stays in the connection), so it can
//! sit in a `select!` beside timers and compute results.

use crate::maths::kernel::Kernel;
use crate::net::tls::TlsClient;
use crate::wire::line::{read_line, LineError};
use crate::wire::{
    self, ClientMessage, DecodeError, ErrorCode, Secret, ServerMessage, MAX_LINE, PROTOCOL_VERSION,
};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long connecting and the TLS handshake may each take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the welcome may take after the hello, unless a connection's read timeout says
/// otherwise.
pub const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `bye` may take to be written when leaving.
const BYE_TIMEOUT: Duration = Duration::from_secs(1);

type Read = Box<dyn AsyncRead + Unpin + Send>;
type Write = Box<dyn AsyncWrite + Unpin + Send>;

/// The TLS side of a connection: the authorities trusted (`--tls-ca`) and the name expected in the
/// coordinator's certificate (`--tls-server-name`; default: the host part of the address).
#[derive(Debug, Clone, Copy)]
pub struct Tls<'a> {
    pub config: &'a TlsClient,
    pub server_name: Option<&'a str>,
}

/// What a client says in its `hello`.
#[derive(Debug, Clone)]
pub struct Hello {
    pub worker: String,
    pub token: Option<Secret>,
    pub agent: Option<String>,
}

impl Hello {
    /// A hello without token or agent.
    pub fn new(worker: impl Into<String>) -> Hello {
        Hello {
            worker: worker.into(),
            token: None,
            agent: None,
        }
    }
}

/// The coordinator's `welcome`, with the run's kernel decided (docs/protocol.md §4.7).
#[derive(Debug, Clone, PartialEq)]
pub struct Welcome {
    pub version: u32,
    pub server: String,
    pub run: u64,
    pub run_uid: Option<String>,
    pub terms: Option<u64>,
    pub chunk: u64,
    pub max_prefetch: u32,
    pub heartbeat_s: f64,
    /// Every result of a run is computed with its kernel (bit-identity is promised per job and
    /// kernel).
    pub kernel: Kernel,
}

/// The run's kernel is not one this build has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the coordinator's run computes with the π kernel '{0}', which this worker does not have (it has {known}): use a newer piswarm", known = kernel_names())]
pub struct UnknownKernel(pub String);

fn kernel_names() -> String {
    let names: Vec<_> = Kernel::ALL.iter().map(|k| k.name()).collect();
    names.join(", ")
}

/// The run's kernel, from `welcome.kernel`: servers older than the field run the quad kernel.
pub fn run_kernel(name: Option<String>) -> Result<Kernel, UnknownKernel> {
    match name {
        None => Ok(Kernel::Quad),
        Some(name) => Kernel::from_name(&name).ok_or(UnknownKernel(name)),
    }
}

/// Why a connection failed. The sentences are the worker's (`piswarm worker` prints them).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the coordinator at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS with the coordinator at {addr} failed: {reason}")]
    Tls {
        addr: String,
        reason: String,
        /// The connection was cut or timed out during the handshake (a full or restarting
        /// server), as opposed to a certificate or protocol failure, which retrying cannot fix.
        transient: bool,
    },
    /// The coordinator closed the connection between two lines.
    #[error("the coordinator closed the connection")]
    Closed,
    /// A line too long, cut short by the end of the connection, or a failed read.
    #[error("reading from the coordinator failed: {0}")]
    Read(#[from] LineError),
    #[error("writing to the coordinator failed: {0}")]
    Write(std::io::Error),
    #[error("no message from the coordinator within {0:?}")]
    Timeout(Duration),
    /// A line that is not a protocol v1 server message.
    #[error("{}", .0.message)]
    Decode(DecodeError),
    /// The coordinator answered the hello with an `error`.
    #[error("the coordinator refused the hello ({code:?}): {message}")]
    Refused { code: ErrorCode, message: String },
    /// The coordinator answered the hello with something other than `welcome` or `error`.
    #[error("expected welcome, got {0:?}")]
    NotWelcome(Box<ServerMessage>),
    #[error(transparent)]
    UnknownKernel(#[from] UnknownKernel),
}

/// A sentence for a failed TLS handshake, with a hint at the usual cause.
fn tls_failure(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "the coordinator's certificate is not trusted ({why:?}): check that --tls-ca is the \
             certificate authority that signed it and that it names the host of --connect \
             (or --tls-server-name)"
        ),
        Some(other) => other.to_string(),
        None if matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ) =>
        {
            "the coordinator closed the connection during the TLS handshake (does it serve TLS? \
             it needs --tls-cert and --tls-key; or it is full)"
                .to_string()
        }
        None => e.to_string(),
    }
}

/// One client connection to a coordinator's protocol v1 listener.
pub struct Connection {
    reader: BufReader<Read>,
    writer: Write,
    /// The line being read (a partial one survives a cancelled [`Connection::recv`]).
    line: Vec<u8>,
    complete: bool,
    /// Messages queued and not yet written.
    out: Vec<u8>,
    read_timeout: Option<Duration>,
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`), with TLS if `tls` is given; each step within
    /// [`CONNECT_TIMEOUT`]. Reads have no deadline until [`Connection::set_read_timeout`].
    pub async fn connect(addr: &str, tls: Option<Tls<'_>>) -> Result<Connection, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(connect_err(e)),
            Err(_) => {
                return Err(connect_err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection timed out",
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(tls) = tls else {
            let (read, write) = stream.into_split();
            return Ok(Connection::new(Box::new(read), Box::new(write)));
        };
        let tls_error = |reason: String, transient: bool| ClientError::Tls {
            addr: addr.to_string(),
            reason,
            transient,
        };
        let name = crate::net::tls::server_name(addr, tls.server_name)
            .map_err(|reason| tls_error(reason, false))?;
        match timeout(CONNECT_TIMEOUT, tls.config.connect(name, stream)).await {
            Ok(Ok(stream)) => Ok(Connection::over(stream)),
            Ok(Err(e)) => {
                let cut = !matches!(e.get_ref(), Some(i) if i.is::<rustls::Error>());
                Err(tls_error(tls_failure(&e), cut))
            }
            Err(_) => Err(tls_error("the TLS handshake timed out".into(), true)),
        }
    }

    /// A connection over a byte stream already open (an in-memory pipe, in the tests that run
    /// sessions on virtual time); [`Connection::connect`] opens TCP and TLS ones.
    pub fn over<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S) -> Connection {
        let (read, write) = tokio::io::split(stream);
        Connection::new(Box::new(read), Box::new(write))
    }

    fn new(read: Read, write: Write) -> Connection {
        Connection {
            reader: BufReader::with_capacity(16 * 1024, read),
            writer: write,
            line: Vec::new(),
            complete: false,
            out: Vec::new(),
            read_timeout: None,
        }
    }

    /// Each later [`Connection::recv`] fails with [`ClientError::Timeout`] if no complete line
    /// arrives within `limit` (None: it waits as long as the connection lives).
    pub fn set_read_timeout(&mut self, limit: Option<Duration>) {
        self.read_timeout = limit;
    }

    /// Says hello and waits for the welcome (within the read timeout, or [`WELCOME_TIMEOUT`]
    /// without one). Messages queued before are sent right behind the hello, in the same write: a
    /// client that knows what it will ask for need not wait a round trip. An `error` instead of
    /// the welcome is [`ClientError::Refused`]; a run kernel this build lacks is
    /// [`ClientError::UnknownKernel`].
    pub async fn handshake(&mut self, hello: Hello) -> Result<Welcome, ClientError> {
        let queued = std::mem::take(&mut self.out);
        self.queue(&ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            worker: hello.worker,
            token: hello.token,
            agent: hello.agent,
        });
        self.out.extend_from_slice(&queued);
        self.flush().await?;
        let limit = self.read_timeout.unwrap_or(WELCOME_TIMEOUT);
        let first = match timeout(limit, self.read_message()).await {
            Ok(m) => m?,
            Err(_) => return Err(ClientError::Timeout(limit)),
        };
        match first {
            ServerMessage::Welcome {
                version,
                server,
                run,
                terms,
                chunk,
                max_prefetch,
                heartbeat_s,
                run_uid,
                kernel,
            } => Ok(Welcome {
                version,
                server,
                run,
                run_uid,
                terms: terms.map(|t| t.0),
                chunk: chunk.0,
                max_prefetch,
                heartbeat_s,
                kernel: run_kernel(kernel)?,
            }),
            ServerMessage::Error { code, message, .. } => {
                Err(ClientError::Refused { code, message })
            }
            other @ (ServerMessage::Assign { .. }
            | ServerMessage::Ack { .. }
            | ServerMessage::Done { .. }) => Err(ClientError::NotWelcome(Box::new(other))),
        }
    }

    /// Queues `message`, to be written by the next [`Connection::flush`] (or `send`).
    pub fn queue(&mut self, message: &ClientMessage) {
        wire::encode(message, &mut self.out);
    }

    /// Whether messages are queued and not yet written.
    pub fn has_queued(&self) -> bool {
        !self.out.is_empty()
    }

    /// Writes every queued message, in one write.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let written = self.writer.write_all(&self.out).await;
        self.out.clear();
        written.map_err(ClientError::Write)
    }

    /// Queues `message` and writes everything queued.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        self.queue(message);
        self.flush().await
    }

    /// Writes `bytes` as they are, after whatever is queued: lines typed by hand, as into `nc`,
    /// and the malformed, oversized or trickled bytes of clients that misbehave on purpose (the
    /// tests' hostile clients).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.out.extend_from_slice(bytes);
        self.flush().await
    }

    /// The next message from the server, within the read timeout. Lines longer than
    /// [`MAX_LINE`] are an error; the end of the connection between lines is
    /// [`ClientError::Closed`]. Cancel-safe.
    pub async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        match self.read_timeout {
            None => self.read_message().await,
            Some(limit) => match timeout(limit, self.read_message()).await {
                Ok(m) => m,
                Err(_) => Err(ClientError::Timeout(limit)),
            },
        }
    }

    /// The next message if a whole line of it has already arrived, without waiting for the
    /// network: a client answers everything that came in one read with one write.
    pub async fn recv_buffered(&mut self) -> Result<Option<ServerMessage>, ClientError> {
        if self.reader.buffer().contains(&b'\n') {
            self.read_message().await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// The last line received, as it travelled (without its newline): for transcripts, and for
    /// tests that look at the wire format itself.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    async fn read_message(&mut self) -> Result<ServerMessage, ClientError> {
        match read_line(
            &mut self.reader,
            &mut self.line,
            &mut self.complete,
            MAX_LINE,
        )
        .await?
        {
            true => wire::decode_server(&self.line).map_err(ClientError::Decode),
            false => Err(ClientError::Closed),
        }
    }

    /// Leaves politely: `bye` (written within a second), then the sending side closed. Messages
    /// queued and not flushed are dropped: a client that leaves has nothing more to say.
    pub async fn close(mut self) {
        self.out.clear();
        self.queue(&ClientMessage::Bye {});
        let _ = timeout(BYE_TIMEOUT, self.flush()).await;
        let _ = self.writer.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Dec;
    use tokio::io::AsyncBufReadExt;

    /// A server played by hand over an in-memory pipe.
    fn pair() -> (Connection, tokio::io::DuplexStream) {
        let (client, server) = tokio::io::duplex(256 * 1024);
        (Connection::over(client), server)
    }

    fn welcome(kernel: Option<&str>) -> Vec<u8> {
        let mut line = Vec::new();
        wire::encode(
            &ServerMessage::Welcome {
                version: 1,
                server: "by hand".into(),
                run: 3,
                terms: None,
                chunk: Dec(1000),
                max_prefetch: 8,
                heartbeat_s: 20.0,
                run_uid: None,
                kernel: kernel.map(str::to_string),
            },
            &mut line,
        );
        line
    }

    #[tokio::test]
    async fn the_hello_goes_first_and_the_welcome_names_the_kernel() {
        let (mut c, server) = pair();
        c.queue(&ClientMessage::Request { count: 2 });
        let (read, mut write) = tokio::io::split(server);
        write.write_all(&welcome(Some("oct"))).await.unwrap();
        let w = c.handshake(Hello::new("w")).await.unwrap();
        assert_eq!((w.run, w.chunk, w.kernel), (3, 1000, Kernel::Oct));
        let mut lines = tokio::io::BufReader::new(read).lines();
        let hello = lines.next_line().await.unwrap().unwrap();
        assert!(hello.starts_with(r#"{"type":"hello","version":1,"worker":"w""#));
        let request = lines.next_line().await.unwrap().unwrap();
        assert_eq!(request, r#"{"type":"request","count":2}"#);
    }

    #[tokio::test]
    async fn the_kernel_of_older_servers_is_quad_and_an_unknown_one_is_an_error() {
        let (mut c, mut server) = pair();
        server.write_all(&welcome(None)).await.unwrap();
        assert_eq!(
            c.handshake(Hello::new("w")).await.unwrap().kernel,
            Kernel::Quad
        );
        let (mut c, mut server) = pair();
        server.write_all(&welcome(Some("hex"))).await.unwrap();
        let err = c.handshake(Hello::new("w")).await.unwrap_err();
        assert!(err.to_string().contains("kernel 'hex'"), "{err}");
    }

    #[tokio::test]
    async fn refusals_long_lines_and_the_end_are_errors() {
        let (mut c, mut server) = pair();
        server
            .write_all(b"{\"type\":\"error\",\"code\":\"unauthorized\",\"message\":\"no\"}\n")
            .await
            .unwrap();
        assert!(matches!(
            c.handshake(Hello::new("w")).await,
            Err(ClientError::Refused {
                code: ErrorCode::Unauthorized,
                ..
            })
        ));
        let (mut c, mut server) = pair();
        server.write_all(&vec![b'x'; MAX_LINE + 1]).await.unwrap();
        assert!(matches!(c.recv().await, Err(ClientError::Read(_))));
        let (mut c, server) = pair();
        drop(server);
        assert!(matches!(c.recv().await, Err(ClientError::Closed)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_has_a_deadline() {
        let (mut c, _server) = pair();
        c.set_read_timeout(Some(Duration::from_secs(5)));
        assert!(matches!(c.recv().await, Err(ClientError::Timeout(_))));
    }
}
