//! The docs name only files that exist: every repository path (`src/…`, `tests/…`, `docs/…`,
//! `examples/…`, `deploy/…`, `scripts/…`, `fuzz/…`, `mutants/…`, `.ci/…`) written in a Markdown
//! file of the repository or in a `//!` comment of its Rust sources must be there.

use std::path::{Path, PathBuf};

const ROOTS: [&str; 9] = [
    "src/",
    "tests/",
    "docs/",
    "examples/",
    "deploy/",
    "scripts/",
    "fuzz/",
    "mutants/",
    ".ci/",
];

/// Folders that tools make when they run (cargo-fuzz's corpus and crashes), not in the repository.
const MADE_BY_TOOLS: [&str; 2] = ["fuzz/corpus/", "fuzz/artifacts/"];

/// The repository paths named in `text`.
fn paths_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    for root in ROOTS {
        let mut from = 0;
        while let Some(k) = text[from..].find(root) {
            let start = from + k;
            from = start + root.len();
            // A path of its own, not the tail of another (`../shared/…`, `target/…/src/`).
            if start > 0 {
                let before = bytes[start - 1];
                if before.is_ascii_alphanumeric() || b"/._-".contains(&before) {
                    continue;
                }
            }
            let len = text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
                .unwrap_or(text.len() - start);
            let path = text[start..start + len].trim_end_matches(['.', '-']);
            if path == root || MADE_BY_TOOLS.iter().any(|m| path.starts_with(m)) {
                continue;
            }
            // Only what names a file (an extension) or a folder (a trailing slash).
            let last = path.rsplit('/').next().unwrap_or("");
            if path.ends_with('/') || last.contains('.') {
                found.push(path.to_string());
            }
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !["target", ".git", "node_modules"].contains(&name.as_str())
                && !name.starts_with("target")
            {
                files(&path, out);
            }
        } else if name.ends_with(".md") || name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    files(root, &mut all);
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in &all {
        let text = std::fs::read_to_string(file).unwrap();
        let text: String = if file.extension().is_some_and(|e| e == "rs") {
            text.lines()
                .filter(|l| l.trim_start().starts_with("//!"))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        };
        for path in paths_in(&text) {
            checked += 1;
            if !root.join(&path).exists() {
                missing.push(format!(
                    "{}: {path}",
                    file.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} paths found: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "paths named in the docs that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scan_finds_paths_and_only_paths() {
    let text = "See `src/web/api.rs:12`, tests/it/, fuzz/corpus/x/ and ../shared/bench/x.c; not src/<module> nor \
                target/release/src/x.rs. Also (docs/api.md).";
    assert_eq!(
        paths_in(text),
        ["src/web/api.rs", "tests/it/", "docs/api.md"]
    );
}
