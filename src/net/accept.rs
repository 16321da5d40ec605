//! The one accept loop: protocol v1 and, optionally, the legacy listener, with one connection
//! budget for both.
//!
//! A permit of the budget is taken before a connection gets a task and held until the task ends,
//! so connections of both kinds together never exceed `max_connections` (derived from the
//! descriptor limit). A connection beyond it gets `too_many_connections` (v1, plaintext) or is
//! closed (TLS, where a plaintext line would break the handshake; and legacy, whose format has no
//! error message).

use super::limits::ServerConfig;
use super::{legacy, session};
use crate::coordinator::CoordinatorHandle;
use crate::metrics::{ConnectionGuard, ConnectionKind};
use crate::wire::{self, ErrorCode, ServerMessage};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections the kernel may hold for the accept loop before it answers more SYNs by dropping
/// them (Linux caps it at `net.core.somaxconn`, 4096 by default). tokio's `TcpListener::bind`
/// asks for 1024, and a fleet of thousands starting at once then loses SYNs, which clients
/// resend only after a second.
pub const LISTEN_BACKLOG: u32 = 8192;

/// Binds a listener for workers on `addr` (HOST:PORT, the first address that binds) with a
/// backlog of [`LISTEN_BACKLOG`].
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut failure = None;
    for candidate in tokio::net::lookup_host(addr).await? {
        let socket = if candidate.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restarted server can bind while old connections linger.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(candidate) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => failure = Some(e),
        }
    }
    Err(failure.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr} names no address"),
        )
    }))
}

/// The listeners one server accepts on.
#[derive(Debug)]
pub struct Listeners {
    /// Protocol v1 (plaintext or TLS, as configured).
    pub v1: TcpListener,
    /// The original's wire format.
    pub legacy: Option<TcpListener>,
}

/// Which listener a connection came from.
#[derive(Clone, Copy)]
enum Kind {
    V1,
    Legacy,
}

/// What admits a worker's connection to a running server, whatever carries it (the TCP
/// listeners here, the dashboard's WebSocket): the coordinator, the limits, the one connection
/// budget, the server's stop token, and the tracker its sessions are spawned on. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    pub coordinator: CoordinatorHandle,
    pub config: Arc<ServerConfig>,
    budget: Arc<Semaphore>,
    /// Cancelled when the server stops: sessions end.
    pub shutdown: CancellationToken,
    /// Where sessions are spawned, so that stopping can wait for them.
    pub sessions: TaskTracker,
}

/// A connection's place in the budget, and its count in the metrics, until dropped.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    _open: ConnectionGuard,
}

impl Gate {
    /// A gate with a budget of `config.max_connections`.
    pub fn new(
        coordinator: CoordinatorHandle,
        config: ServerConfig,
        shutdown: CancellationToken,
        sessions: TaskTracker,
    ) -> Gate {
        Gate {
            coordinator,
            budget: Arc::new(Semaphore::new(config.max_connections)),
            config: Arc::new(config),
            shutdown,
            sessions,
        }
    }

    /// Takes a place in the budget for a connection of `kind`; `None` (counted in
    /// `connections_refused`) when the server holds its maximum.
    pub fn admit(&self, kind: ConnectionKind) -> Option<Admission> {
        match self.budget.clone().try_acquire_owned() {
            Ok(permit) => Some(Admission {
                _permit: permit,
                _open: self.config.metrics.connection(kind),
            }),
            Err(_) => {
                self.config.metrics.connections_refused.inc();
                None
            }
        }
    }
}

/// Accepts connections until `shutdown` is cancelled. Sessions are spawned on `tracker`, so the
/// caller can wait for them after draining the coordinator.
pub async fn serve(
    listeners: Listeners,
    coordinator: CoordinatorHandle,
    config: ServerConfig,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    serve_gate(listeners, Gate::new(coordinator, config, shutdown, tracker)).await
}

/// [`serve`], admitting through `gate` (whose budget other transports may share).
pub async fn serve_gate(listeners: Listeners, gate: Gate) {
    // Recomputations of the original client's π partial: at most one per core at a time, on
    // the blocking pool, never on the runtime's threads.
    let recompute = Arc::new(Semaphore::new(
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    ));
    let config = gate.config.clone();
    let shutdown = gate.shutdown.clone();
    let tracker = gate.sessions.clone();
    loop {
        let legacy_accept = async {
            match &listeners.legacy {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        let (accepted, kind) = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listeners.v1.accept() => (a, Kind::V1),
            a = legacy_accept => (a, Kind::Legacy),
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Typically EMFILE: wait a little rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let metric = match kind {
            Kind::V1 => ConnectionKind::V1,
            Kind::Legacy => ConnectionKind::Legacy,
        };
        let Some(admission) = gate.admit(metric) else {
            tracing::warn!(%peer, "refused: the server holds its maximum of {} connections", config.max_connections);
            if matches!(kind, Kind::V1) && config.tls.is_none() {
                tracker.spawn(tell_full(stream));
            }
            continue;
        };
        let coordinator = gate.coordinator.clone();
        let config = config.clone();
        let shutdown = shutdown.clone();
        match kind {
            Kind::V1 => {
                tracker.spawn(async move {
                    session::serve_connection(stream, peer, coordinator, &config, shutdown).await;
                    drop(admission);
                });
            }
            Kind::Legacy => {
                let recompute = recompute.clone();
                tracker.spawn(async move {
                    let (read, write) = stream.into_split();
                    legacy::run_legacy_session(
                        read,
                        write,
                        peer,
                        coordinator,
                        &config,
                        shutdown,
                        recompute,
                    )
                    .await;
                    drop(admission);
                });
            }
        }
    }
}

/// Tells a v1 client that the server is full, then closes.
async fn tell_full(mut stream: TcpStream) {
    let msg = ServerMessage::error(
        ErrorCode::TooManyConnections,
        "the server is full; try again later",
    );
    let mut buf = Vec::new();
    wire::encode(&msg, &mut buf);
    let _ = timeout(Duration::from_secs(1), stream.write_all(&buf)).await;
}
