//! TLS as the documentation tells a newcomer to set it up: with `piswarm cert`, and with the
//! OpenSSL recipe of docs/protocol.md §1.1 run as written by the machine's `openssl`. Each gives a
//! coordinator that workers with `--tls-ca` complete a run with, by IP address and by DNS name.

use super::*;
use std::path::Path;

/// The recipe block of docs/protocol.md: the ```sh block after the `openssl-recipe` marker.
fn openssl_recipe() -> String {
    let doc = include_str!("../../../docs/protocol.md");
    let after = doc
        .split("<!-- openssl-recipe")
        .nth(1)
        .expect("docs/protocol.md has an openssl-recipe marker");
    let block = after
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a ```sh block follows the marker");
    block.to_string()
}

/// A TLS coordinator with these files, and two workers trusting `ca`: one connects by IP
/// address, the other by DNS name. Both exit 0, and the run completes.
fn tls_run(dir: &Path, cert: &Path, key: &Path, ca: &Path) {
    let mut server = serve(
        dir,
        &[
            "--no-http",
            "--terms",
            "2e6",
            "--chunk",
            "1e5",
            "--quiet",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    let port = server.listen.rsplit(':').next().unwrap().to_string();
    for (i, host) in ["127.0.0.1", "localhost"].iter().enumerate() {
        let mut worker = Proc::start(
            dir,
            &format!("tls-worker{i}"),
            &[
                "worker",
                "--connect",
                &format!("{host}:{port}"),
                "--tls-ca",
                ca.to_str().unwrap(),
                "--threads",
                "1",
            ],
            &[],
        );
        let status = worker.wait();
        assert!(
            status.success(),
            "worker by {host}: {status}: {}",
            worker.stderr()
        );
        assert!(
            worker.stderr().contains("worker finished"),
            "{}",
            worker.stderr()
        );
    }
    // The first worker completed the job (the second was told so over TLS, and left).
    let fin: serde_json::Value = poll("final.json of the complete run", || {
        let text = std::fs::read(dir.join("final.json")).ok()?;
        serde_json::from_slice(&text).ok()
    });
    assert_eq!(fin["intervals"], 20);
    assert!(
        server.proc.terminate().success(),
        "{}",
        server.proc.stderr()
    );
}

#[test]
fn piswarm_cert_gives_a_tls_run_by_ip_and_by_name_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let out = std::process::Command::new(crate::common::bin())
        .args(["cert", "--hosts", "localhost,127.0.0.1", "--out"])
        .arg(&tls)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("DNS:localhost, IP:127.0.0.1"), "{said}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tls.join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "server.key is readable by its owner only");
    }
    // The machine's OpenSSL agrees: an end-entity certificate, signed by the CA, naming both.
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(tls.join("ca.pem"))
        .arg(tls.join("server.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(tls.join("server.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(
        text.contains("DNS:localhost, IP Address:127.0.0.1"),
        "{text}"
    );

    tls_run(
        dir.path(),
        &tls.join("server.pem"),
        &tls.join("server.key"),
        &tls.join("ca.pem"),
    );

    // A second run into the same directory refuses, exit 1, and changes nothing.
    let before = std::fs::read(tls.join("server.key")).unwrap();
    let again = std::process::Command::new(crate::common::bin())
        .args(["cert", "--hosts", "localhost", "--out"])
        .arg(&tls)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already exists") && err.contains("never overwrites"),
        "{err}"
    );
    assert_eq!(std::fs::read(tls.join("server.key")).unwrap(), before);
    // A host that is no host is bad usage.
    let bad = std::process::Command::new(crate::common::bin())
        .args(["cert", "--hosts", "not a host", "--out"])
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_documented_openssl_recipe_gives_a_tls_run_by_ip_and_by_name() {
    let recipe = openssl_recipe();
    let (first, rest) = recipe.split_once('\n').unwrap();
    assert!(
        first.starts_with("name=") && first.contains(" ip="),
        "the recipe starts by naming the host: {first}"
    );
    let dir = tempfile::tempdir().unwrap();
    let script = format!("name=localhost ip=127.0.0.1\n{rest}\n");
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .output()
        .expect("bash and openssl are installed");
    assert!(
        out.status.success(),
        "the recipe failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = dir.path();
    tls_run(
        d,
        &d.join("server.pem"),
        &d.join("server.key"),
        &d.join("ca.pem"),
    );
}
