//! Authentication, TLS, the file-descriptor limit and slow clients, in process and through the
//! binary. Certificates are made inside the tests with rcgen; everything stays on 127.0.0.1.

use crate::common::*;
use piswarm::coordinator::CoreConfig;
use piswarm::job::Job;
use piswarm::net::tls::{TlsClient, TlsServer};
use piswarm::net::ServerConfig;
use piswarm::wire::secret::Secret;
use piswarm::wire::ErrorCode;
use piswarm::worker::{run_worker, WorkerConfig, WorkerError, WorkerSummary};
use std::io::{BufRead, BufReader as StdBufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// PEM texts made by rcgen: a CA, a certificate it signed for `localhost` and `127.0.0.1`, the
/// certificate's key.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn make_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "piswarm test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

async fn tls_server(job: Job, pki: &Pki) -> TestServer {
    let config = ServerConfig {
        tls: Some(TlsServer::from_pem(pki.cert.as_bytes(), pki.key.as_bytes()).unwrap()),
        ..ServerConfig::default()
    };
    TestServer::start_with(CoreConfig::new(job), config).await
}

fn tls_worker(connect: String, ca_pem: &str) -> WorkerConfig {
    let mut c = WorkerConfig::new(connect);
    c.tls = Some(TlsClient::from_ca_pem(ca_pem.as_bytes()).unwrap());
    c
}

fn assert_exact(r: &piswarm::report::FinalReport, n: u64) {
    assert_eq!(r.terms, n);
    assert_eq!(r.even_sum.0, evens(0, n - 1));
    assert_eq!(r.odd_sum.0, odds(0, n - 1));
    let exact = prefix_pi(n);
    assert!((r.pi - exact).abs() <= 2e-15, "pi {} vs {exact}", r.pi);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_workers_complete_a_job_exactly() {
    let pki = make_pki();
    let n = 100_000_000;
    let server = tls_server(Job::new(Some(n), Some(1_000_000)).unwrap(), &pki).await;
    // One worker names the server by IP address, the other by DNS name.
    let by_ip = tls_worker(server.addr.to_string(), &pki.ca);
    let by_name = tls_worker(format!("localhost:{}", server.addr.port()), &pki.ca);
    let a = tokio::spawn(run_worker(by_ip, CancellationToken::new()));
    let b = tokio::spawn(run_worker(by_name, CancellationToken::new()));
    let (a, b): (WorkerSummary, WorkerSummary) =
        (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert_eq!(a.accepted + b.accepted, 100);
    assert_eq!(a.errors + b.errors, 0);
    assert_exact(&server.coordinator.report().await.unwrap(), n);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_refuses_plaintext_and_untrusted_clients_cleanly_and_goes_on() {
    let pki = make_pki();
    let n = 10_000_000;
    let server = tls_server(Job::new(Some(n), Some(1_000_000)).unwrap(), &pki).await;

    // A plaintext client is told, in plaintext, and cut off.
    let mut raw = RawClient::connect(server.addr).await;
    raw.send(r#"{"type":"hello","version":1,"worker":"plain"}"#)
        .await;
    let m = raw.recv().await.unwrap();
    assert_eq!(
        (m["type"].as_str(), m["code"].as_str()),
        (Some("error"), Some("tls_required")),
        "{m}"
    );
    assert!(raw.recv().await.is_none());

    // The reference worker without --tls-ca stops with that error.
    let plain = run_worker(
        WorkerConfig::new(server.addr.to_string()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            plain,
            WorkerError::Refused {
                code: ErrorCode::TlsRequired,
                ..
            }
        ),
        "{plain}"
    );
    assert!(plain.to_string().contains("tls_required"), "{plain}");

    // A worker that trusts another CA refuses the server's certificate, with a clear error.
    let other = make_pki();
    let err = run_worker(
        tls_worker(server.addr.to_string(), &other.ca),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, WorkerError::Tls { .. }), "{text}");
    assert!(
        text.contains("not trusted") && text.contains("--tls-ca"),
        "{text}"
    );

    // A worker expecting another name refuses it too.
    let mut wrong_name = tls_worker(server.addr.to_string(), &pki.ca);
    wrong_name.tls_server_name = Some("elsewhere.example".into());
    let err = run_worker(wrong_name, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, WorkerError::Tls { .. }), "{err}");

    // Garbage that starts like a TLS record fails the handshake; the server does not care.
    let mut junk = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // A handshake record holding a message of an unknown type (0xff), 4 bytes long.
    junk.write_all(&[
        0x16, 0x03, 0x01, 0x00, 0x08, 0xff, 0x00, 0x00, 0x04, 1, 2, 3, 4,
    ])
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), junk.read_to_end(&mut buf))
        .await
        .unwrap();

    // The server went on: a trusting worker completes the job exactly.
    let summary = run_worker(
        tls_worker(server.addr.to_string(), &pki.ca),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!((summary.accepted, summary.errors), (10, 0));
    assert_exact(&server.coordinator.report().await.unwrap(), n);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tls_server_closes_new_connections_and_workers_retry() {
    let pki = make_pki();
    let config = ServerConfig {
        max_connections: 1,
        tls: Some(TlsServer::from_pem(pki.cert.as_bytes(), pki.key.as_bytes()).unwrap()),
        ..ServerConfig::default()
    };
    let job = Job::new(Some(1_000_000), Some(100_000)).unwrap();
    let server = TestServer::start_with(CoreConfig::new(job), config).await;
    // One TLS connection that says nothing holds the only place.
    let client = TlsClient::from_ca_pem(pki.ca.as_bytes()).unwrap();
    let name = piswarm::net::tls::server_name(&server.addr.to_string(), None).unwrap();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let holder = client.connect(name, tcp).await.unwrap();
    // Without --retry-for the worker stops, with an error that says it may pass.
    let err = run_worker(
        tls_worker(server.addr.to_string(), &pki.ca),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            WorkerError::Tls {
                transient: true,
                ..
            }
        ),
        "{err}"
    );
    // With it, the worker gets in once the place is free.
    let mut patient = tls_worker(server.addr.to_string(), &pki.ca);
    patient.retry_for = Some(Duration::from_secs(20));
    let attempts = patient.metrics.connection_attempts.clone();
    let worker = tokio::spawn(run_worker(patient, CancellationToken::new()));
    // The place is freed once the worker has been turned away and has tried again.
    tokio::task::spawn_blocking(move || {
        wait_until(
            "the worker's second attempt",
            Duration::from_secs(60),
            || attempts.get() >= 2,
        )
    })
    .await
    .unwrap();
    drop(holder);
    let summary = worker.await.unwrap().unwrap();
    assert_eq!(summary.accepted, 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_worker_against_a_plaintext_server_fails_cleanly() {
    let pki = make_pki();
    let server = TestServer::start(Job::new(Some(1_000_000), Some(100_000)).unwrap()).await;
    let err = run_worker(
        tls_worker(server.addr.to_string(), &pki.ca),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, WorkerError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("does it serve TLS"), "{err}");
    // ... and the server is fine.
    let summary = run_worker(
        WorkerConfig::new(server.addr.to_string()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.accepted, 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_required_and_checked() {
    let config = ServerConfig {
        token: Some(Secret::new("correct horse")),
        ..ServerConfig::default()
    };
    assert!(
        !format!("{config:?}").contains("correct horse"),
        "{config:?}"
    );
    let n = 10_000_000;
    let server = TestServer::start_with(
        CoreConfig::new(Job::new(Some(n), Some(1_000_000)).unwrap()),
        config,
    )
    .await;
    for hello in [
        r#"{"type":"hello","version":1,"worker":"no-token"}"#,
        r#"{"type":"hello","version":1,"worker":"null-token","token":null}"#,
        r#"{"type":"hello","version":1,"worker":"empty-token","token":""}"#,
        r#"{"type":"hello","version":1,"worker":"wrong-token","token":"correct horsE"}"#,
        r#"{"type":"hello","version":1,"worker":"prefix-token","token":"correct"}"#,
    ] {
        let mut c = RawClient::connect(server.addr).await;
        c.send(hello).await;
        let m = c.recv().await.unwrap();
        assert_eq!(m["code"], "unauthorized", "{hello}: {m}");
        assert!(c.recv().await.is_none(), "closed after unauthorized");
    }
    let mut wrong = WorkerConfig::new(server.addr.to_string());
    wrong.token = Some(Secret::new("guess"));
    assert!(!format!("{wrong:?}").contains("guess"));
    let err = run_worker(wrong, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            WorkerError::Refused {
                code: ErrorCode::Unauthorized,
                ..
            }
        ),
        "{err}"
    );
    let mut right = WorkerConfig::new(server.addr.to_string());
    right.token = Some(Secret::new("correct horse"));
    let summary = run_worker(right, CancellationToken::new()).await.unwrap();
    assert_eq!((summary.accepted, summary.errors), (10, 0));
    assert_exact(&server.coordinator.report().await.unwrap(), n);
    server.stop().await;
}

#[test]
fn default_connection_limit_follows_the_file_descriptor_limit() {
    use piswarm::net::limits::default_max_connections;
    assert_eq!(default_max_connections(Some(20_000)), 19_900);
    assert_eq!(default_max_connections(Some(1024)), 924);
    assert_eq!(default_max_connections(Some(100)), 50);
    assert_eq!(default_max_connections(Some(1)), 1);
    assert_eq!(default_max_connections(None), 10_000);
    assert!(default_max_connections(Some(u64::MAX)) <= 1 << 20);
}

#[test]
fn exposed_servers_warn() {
    use piswarm::net::limits::exposure_warning;
    let public: SocketAddr = "0.0.0.0:5050".parse().unwrap();
    let loopback: SocketAddr = "127.0.0.1:5050".parse().unwrap();
    let v6: SocketAddr = "[::1]:5050".parse().unwrap();
    assert_eq!(exposure_warning(loopback, false, false), None);
    assert_eq!(exposure_warning(v6, false, false), None);
    let loud = exposure_warning(public, false, false).unwrap();
    assert!(
        loud.contains("WARNING") && loud.contains("WITHOUT A TOKEN") && loud.lines().count() >= 5,
        "{loud}"
    );
    let mild = exposure_warning(public, true, false).unwrap();
    assert!(mild.contains("in clear"), "{mild}");
    assert_eq!(exposure_warning(public, true, true), None);
}

/// Through the binary: `serve` raises its open-file limit and derives `--max-connections` from it;
/// with a token (from PISWARM_TOKEN) and TLS, a worker with a wrong or missing token, or without
/// `--tls-ca`, exits 1 with a clear line; the right one completes the job; the token appears in no
/// output and no file.
#[cfg(target_os = "linux")]
#[test]
fn serve_and_workers_with_token_and_tls_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki();
    let (cert, key, ca) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert, &pki.cert).unwrap();
    std::fs::write(&key, &pki.key).unwrap();
    std::fs::write(&ca, &pki.ca).unwrap();
    let token = "tok-7c1e-do-not-print";
    let wrong = "tok-7c1e-a-wrong-guess";
    let hard: u64 = std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(4)
                .map(|v| v.parse().unwrap_or(u64::MAX))
        })
        .unwrap();
    let soft = 256.min(hard);
    let help = Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--tls-cert") && help.contains("open-file limit"),
        "{help}"
    );

    // Start with a low soft limit: serve must raise it to the hard limit.
    let mut server = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn {soft} && exec \"$0\" serve --listen 127.0.0.1:0 --terms 2e7 --chunk 1e6 --exit-when-done --quiet --out out --tls-cert \"$1\" --tls-key \"$2\""
        ))
        .arg(bin())
        .arg(&cert)
        .arg(&key)
        .current_dir(dir.path())
        .env("PISWARM_TOKEN", token)
        .env("PISWARM_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = StdBufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.id())).unwrap();
    let raised: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        raised[3], raised[4],
        "soft limit raised to the hard limit: {limits}"
    );

    let worker = |token: Option<&str>, tls: bool| {
        let mut c = Command::new(bin());
        c.args(["worker", "--connect", &addr, "--threads", "1"]);
        if tls {
            c.arg("--tls-ca").arg(&ca);
        }
        c.env_remove("PISWARM_TOKEN");
        if let Some(t) = token {
            c.env("PISWARM_TOKEN", t);
        }
        c.env("PISWARM_LOG", "debug").output().unwrap()
    };
    let mut outputs = Vec::new();
    for (t, tls, expect) in [
        (Some(wrong), true, "unauthorized"),
        (None, true, "unauthorized"),
        (Some(token), false, "tls_required"),
    ] {
        let out = worker(t, tls);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("piswarm worker: ") && last.contains(expect),
            "{err}"
        );
        outputs.push(err);
    }
    // A bad --tls-ca is bad usage.
    let out = Command::new(bin())
        .args(["worker", "--connect", &addr, "--tls-ca"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = worker(Some(token), true);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    outputs.push(String::from_utf8_lossy(&good.stderr).into_owned());
    outputs.push(String::from_utf8_lossy(&good.stdout).into_owned());

    let status = server.wait().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut server_err = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut server_err).unwrap();
    assert!(server_err.contains("max_connections="), "{server_err}");
    assert!(server_err.contains("unauthorized"), "{server_err}");
    outputs.push(first);
    outputs.push(rest);
    outputs.push(server_err);
    let fin: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/final.json")).unwrap()).unwrap();
    assert_eq!(fin["even_sum"], evens(0, 19_999_999).to_string());
    for file in walk(dir.path()) {
        outputs.push(String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned());
    }
    for text in &outputs {
        assert!(
            !text.contains(token) && !text.contains(wrong),
            "a token leaked: {text}"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
