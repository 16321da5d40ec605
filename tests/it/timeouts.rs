//! Timeouts and leases on virtual time: tokio's clock is paused, so these tests check the exact
//! moment a connection is cut off or an interval goes back, without waiting and without reading
//! the wall clock. Sessions run on in-memory streams (`tokio::io::duplex`), the same session code
//! as on TCP.

use piswarm::coordinator::{self, CoreConfig, LeasePolicy};
use piswarm::job::Job;
use piswarm::net::session::run_session;
use piswarm::net::ServerConfig;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
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
fn connect(coordinator: &coordinator::CoordinatorHandle, config: ServerConfig) -> DuplexStream {
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
    client
}

async fn line(
    lines: &mut tokio::io::Lines<BufReader<tokio::io::ReadHalf<DuplexStream>>>,
) -> Option<Value> {
    let l = lines.next_line().await.ok().flatten()?;
    Some(serde_json::from_str(&l).unwrap())
}

/// Drips `bytes` one a second, never a newline, and returns when the server answers; the
/// virtual time elapsed and the error received.
async fn drip(client: DuplexStream, hello_first: bool) -> (Duration, Value) {
    let (read, mut write) = tokio::io::split(client);
    let mut lines = BufReader::new(read).lines();
    if hello_first {
        write
            .write_all(b"{\"type\":\"hello\",\"version\":1,\"worker\":\"drip\"}\n")
            .await
            .unwrap();
        assert_eq!(line(&mut lines).await.unwrap()["type"], "welcome");
    }
    let start = Instant::now();
    let bytes: &'static [u8] = if hello_first {
        b"{\"type\":\"heartbeat\""
    } else {
        b"{\"type\":\"hello\",\"version\":1,\"worker\":\"drip\""
    };
    let dripper = tokio::spawn(async move {
        for &b in bytes.iter().cycle() {
            if write.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let error = line(&mut lines).await.expect("an error before the close");
    let elapsed = start.elapsed();
    assert!(line(&mut lines).await.is_none(), "closed after the error");
    dripper.abort();
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
    let client = connect(&coordinator, config());
    let (read, mut write) = tokio::io::split(client);
    let mut lines = BufReader::new(read).lines();
    write
        .write_all(b"{\"type\":\"hello\",\"version\":1,\"worker\":\"beat\"}\n")
        .await
        .unwrap();
    assert_eq!(line(&mut lines).await.unwrap()["type"], "welcome");
    // Ten heartbeats, each just inside the idle timeout: still connected after 10 × 3.4 s.
    for _ in 0..10 {
        tokio::time::sleep(IDLE - Duration::from_millis(100)).await;
        write
            .write_all(b"{\"type\":\"heartbeat\"}\n")
            .await
            .unwrap();
    }
    let start = Instant::now();
    let error = line(&mut lines).await.unwrap();
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
    let hold = connect(&coordinator, server.clone());
    let (read, mut write) = tokio::io::split(hold);
    let mut holder = BufReader::new(read).lines();
    write
        .write_all(b"{\"type\":\"hello\",\"version\":1,\"worker\":\"holder\"}\n{\"type\":\"request\",\"count\":2}\n")
        .await
        .unwrap();
    assert_eq!(line(&mut holder).await.unwrap()["type"], "welcome");
    let first = line(&mut holder).await.unwrap();
    assert_eq!(
        (first["type"].as_str(), first["lease_s"].as_f64()),
        (Some("assign"), Some(30.0))
    );
    let _second = line(&mut holder).await.unwrap();
    let start = Instant::now();
    // A second worker waits for work: it gets interval 0 exactly when the first one's lease ends.
    let wait = connect(&coordinator, server);
    let (read, mut write2) = tokio::io::split(wait);
    let mut waiter = BufReader::new(read).lines();
    write2
        .write_all(b"{\"type\":\"hello\",\"version\":1,\"worker\":\"waiter\"}\n{\"type\":\"request\",\"count\":1}\n")
        .await
        .unwrap();
    assert_eq!(line(&mut waiter).await.unwrap()["type"], "welcome");
    let assign = line(&mut waiter).await.unwrap();
    assert_eq!(assign["id"], first["id"]);
    assert_eq!(start.elapsed(), lease);
    drop(write);
}
