//! Structured logs: `--log-format json` writes one JSON object per line with the documented
//! fields, and no secret ever reaches a log or an output, even at debug level.

use super::*;

const TOKEN: &str = "worker-secret-4f1d2c3b-never-logged";
const UI_TOKEN: &str = "ui-secret-9a8b7c6d-never-logged";

#[test]
fn json_logs_at_debug_level_are_json_and_carry_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let debug_json = [("PISWARM_LOG", "debug"), ("PISWARM_LOG_FORMAT", "json")];
    let mut server = serve(
        dir.path(),
        &[
            "--http",
            "127.0.0.1:0",
            "--terms",
            "4e6",
            "--chunk",
            "1e5",
            "--exit-when-done",
        ],
        &[
            ("PISWARM_TOKEN", TOKEN),
            ("PISWARM_UI_TOKEN", UI_TOKEN),
            debug_json[0],
            debug_json[1],
        ],
    );
    // The dashboard's API, with the UI token.
    let (code, _) = http(
        server.http.as_deref().unwrap(),
        "GET",
        "/api/status",
        Some(UI_TOKEN),
    );
    assert_eq!(code, 200);
    // A worker with a wrong token is refused (and that is logged, without either token).
    let mut intruder = Proc::start(
        dir.path(),
        "intruder",
        &[
            "worker",
            "--connect",
            &server.listen,
            "--log-format",
            "json",
        ],
        &[
            ("PISWARM_TOKEN", "wrong-token-also-never-logged"),
            debug_json[0],
        ],
    );
    assert_eq!(intruder.wait().code(), Some(1));
    let mut worker = Proc::start(
        dir.path(),
        "worker",
        &["worker", "--connect", &server.listen, "--threads", "1"],
        &[("PISWARM_TOKEN", TOKEN), debug_json[0], debug_json[1]],
    );
    assert!(worker.wait().success(), "{}", worker.stderr());
    assert!(server.proc.wait().success(), "{}", server.proc.stderr());

    let outputs = [
        ("serve stdout", server.proc.stdout_to_end()),
        ("serve stderr", server.proc.stderr()),
        ("worker stdout", worker.stdout_to_end()),
        ("worker stderr", worker.stderr()),
        ("intruder stderr", intruder.stderr()),
    ];
    for (what, text) in &outputs {
        for secret in [TOKEN, UI_TOKEN, "wrong-token-also-never-logged"] {
            assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
        }
    }
    // Debug level really was on, and the refusal was logged.
    let serve_log = server.proc.stderr();
    assert!(serve_log.contains("\"level\":\"DEBUG\""), "{serve_log}");
    assert!(serve_log.contains("unauthorized"), "{serve_log}");
    // In the JSON format, what serve says on standard output (addresses, a line per result, the
    // final result) is JSON too: a collector of both streams sees nothing else.
    let serve_out = server.proc.stdout_to_end();
    assert!(
        serve_out.contains("\"message\":\"final result\""),
        "{serve_out}"
    );
    assert!(serve_out.contains("\"message\":\"result\""), "{serve_out}");
    for (what, log) in [
        ("serve", &serve_log),
        ("serve stdout", &serve_out),
        ("worker", &worker.stderr()),
    ] {
        let lines: Vec<&str> = log.lines().collect();
        assert!(!lines.is_empty(), "{what}: no log at all");
        for line in lines {
            let event: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: not one JSON object per line ({e}): {line}"));
            for field in ["timestamp", "level", "target", "message"] {
                assert!(event.get(field).is_some(), "{what}: no {field} in {line}");
            }
            assert!(
                event.get("fields").is_none(),
                "fields are flattened: {line}"
            );
        }
    }
    assert!(
        worker.stderr().contains("\"message\":\"worker finished\""),
        "{}",
        worker.stderr()
    );
}
