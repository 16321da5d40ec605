//! Timeouts and leases on virtual time: tokio's clock is paused, so these tests check the exact
//! moment a connection is cut off or an interval goes back, without waiting and without reading
//! the wall clock. Sessions run on in-memory streams (`tokio::io::duplex`), the same session code
//! as on TCP.

use piswarm::client::{ClientError, Connection};
use piswarm::coordinator::{self, CoreConfig, LeasePolicy};
use piswarm::job::Job;
use piswarm::net::session::run_session;
use piswarm::net::ServerConfig;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const HANDSHAKE: Duration = Duration::from_millis(2500);
const IDLE: Duration = Duration::from_millis(3500);

fn config() -> ServerConfig {
    ServerConfig {
        handshake_timeout: HANDSHAKE,
        idle_timeout: IDLE,
        ..ServerConfig::default()
    }
}

/// A session of `coordinator` on an in-memory connection; returns the client's end.
fn connect(coordinator: &coordinator::CoordinatorHandle, config: ServerConfig) -> Connection {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let coordinator = coordinator.clone();
    tokio::spawn(async move {
        let (read, write) = tokio::io::split(server);
        let peer = "127.0.0.1:9".parse().unwrap();
        run_session(
            read,
            write,
            peer,
            coordinator,
            &config,
            CancellationToken::new(),
        )
        .await;
    });
    Connection::over(client)
}

/// The next message, as the JSON line it travelled as; None at the end of the connection.
async fn line(c: &mut Connection) -> Option<Value> {
    match c.recv().await {
        Ok(_) => Some(serde_json::from_slice(c.line()).unwrap()),
        Err(ClientError::Closed | ClientError::Read(_)) => None,
        Err(e) => panic!("{e}"),
    }
}

/// Writes a line typed by hand.
async fn send(c: &mut Connection, line: &str) {
    c.send_raw(format!("{line}\n").as_bytes()).await.unwrap();
}

/// Drips `bytes` one a second, never a newline, and returns when the server answers; the
/// virtual time elapsed and the error received.
async fn drip(mut client: Connection, hello_first: bool) -> (Duration, Value) {
    if hello_first {
        send(
            &mut client,
            r#"{"type":"hello","version":1,"worker":"drip"}"#,
        )
        .await;
        assert_eq!(line(&mut client).await.unwrap()["type"], "welcome");
    }
    let start = Instant::now();
    let bytes: &'static [u8] = if hello_first {
        b"{\"type\":\"heartbeat\""
    } else {
        b"{\"type\":\"hello\",\"version\":1,\"worker\":\"drip\""
    };
    let mut bytes = bytes.iter().cycle();
    let mut pace = tokio::time::interval(Duration::from_secs(1));
    let mut dripping = true;
    // One task drips and reads: the read is cancel-safe.
    let error = loop {
        tokio::select! {
            _ = pace.tick(), if dripping => {
                dripping = client.send_raw(&[*bytes.next().unwrap()]).await.is_ok();
            }
            m = line(&mut client) => break m.expect("an error before the close"),
        }
    };
    let elapsed = start.elapsed();
    assert!(line(&mut client).await.is_none(), "closed after the error");
    (elapsed, error)
}

#[tokio::test(start_paused = true)]
async fn a_client_sending_one_byte_a_second_is_cut_at_the_timeouts() {
    let (coordinator, _task) = coordinator::spawn(CoreConfig::new(Job::new(None, None).unwrap()));
    // Before its hello: the handshake timeout, counted from the connection, whatever trickles in.
    let (elapsed, error) = drip(connect(&coordinator, config()), false).await;
    assert_eq!(error["code"], "handshake_timeout", "{error}");
    assert_eq!(elapsed, HANDSHAKE);
    // After it: bytes of an unfinished line are not activity; the idle timeout cuts it.
    let (elapsed, error) = drip(connect(&coordinator, config()), true).await;
    assert_eq!(error["code"], "idle_timeout", "{error}");
    assert_eq!(elapsed, IDLE);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_session_alive_and_silence_ends_it() {
    let (coordinator, _task) = coordinator::spawn(CoreConfig::new(Job::new(None, None).unwrap()));
    let mut client = connect(&coordinator, config());
    send(
        &mut client,
        r#"{"type":"hello","version":1,"worker":"beat"}"#,
    )
    .await;
    assert_eq!(line(&mut client).await.unwrap()["type"], "welcome");
    // Ten heartbeats, each just inside the idle timeout: still connected after 10 × 3.4 s.
    for _ in 0..10 {
        tokio::time::sleep(IDLE - Duration::from_millis(100)).await;
        send(&mut client, r#"{"type":"heartbeat"}"#).await;
    }
    let start = Instant::now();
    let error = line(&mut client).await.unwrap();
    assert_eq!(error["code"], "idle_timeout");
    assert_eq!(
        start.elapsed(),
        IDLE,
        "cut exactly one idle timeout after the last line"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_interval_goes_back_when_its_lease_ends() {
    let lease = Duration::from_secs(30);
    let mut config = CoreConfig::new(Job::new(Some(2000), Some(1000)).unwrap());
    config.lease = LeasePolicy::Fixed(lease);
    // What is tested is the lease alone: no backup copy feeds the waiter before it ends.
    config.backups = false;
    let (coordinator, _task) = coordinator::spawn(config);
    let server = ServerConfig {
        idle_timeout: Duration::from_secs(600),
        ..ServerConfig::default()
    };
    let mut holder = connect(&coordinator, server.clone());
    send(
        &mut holder,
        "{\"type\":\"hello\",\"version\":1,\"worker\":\"holder\"}\n{\"type\":\"request\",\"count\":2}",
    )
    .await;
    assert_eq!(line(&mut holder).await.unwrap()["type"], "welcome");
    let first = line(&mut holder).await.unwrap();
    assert_eq!(
        (first["type"].as_str(), first["lease_s"].as_f64()),
        (Some("assign"), Some(30.0))
    );
    let _second = line(&mut holder).await.unwrap();
    let start = Instant::now();
    // A second worker waits for work: it gets interval 0 exactly when the first one's lease ends.
    let mut waiter = connect(&coordinator, server);
    send(
        &mut waiter,
        "{\"type\":\"hello\",\"version\":1,\"worker\":\"waiter\"}\n{\"type\":\"request\",\"count\":1}",
    )
    .await;
    assert_eq!(line(&mut waiter).await.unwrap()["type"], "welcome");
    let assign = line(&mut waiter).await.unwrap();
    assert_eq!(assign["id"], first["id"]);
    assert_eq!(start.elapsed(), lease);
    drop(holder);
}
