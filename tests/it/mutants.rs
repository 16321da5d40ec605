//! The kept mutants still apply: every `mutants/*.mutant` parses, and each of its blocks' old
//! snippet occurs exactly once under its path when the blocks are applied in order — so a
//! refactor that moves or rewrites the code a mutant plants its defect in fails here, in the
//! normal suite, instead of when `scripts/mutants.sh` is next run. (Whether the simulator kills
//! each mutant needs a build per mutant: that is the script's job, docs/reliability.md.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One `@@ old PATH` … `@@ new` … `@@ end` block.
struct Block {
    path: String,
    old: String,
    new: String,
}

struct Mutant {
    name: String,
    defect: String,
    blocks: Vec<Block>,
}

fn parse(file: &Path) -> Result<Mutant, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let lines: Vec<&str> = text.split('\n').collect();
    let (mut name, mut defect, mut blocks) = (String::new(), String::new(), Vec::new());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if let Some(v) = line.strip_prefix("name:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("defect:") {
            defect.push_str(v.trim());
            defect.push(' ');
        } else if let Some(path) = line.strip_prefix("@@ old ") {
            let mut take = |end: &str| -> Result<String, String> {
                let mut s = String::new();
                while i < lines.len() && lines[i] != end {
                    s.push_str(lines[i]);
                    s.push('\n');
                    i += 1;
                }
                if i == lines.len() {
                    return Err(format!("{}: no '{end}' after '{line}'", file.display()));
                }
                i += 1;
                Ok(s)
            };
            let old = take("@@ new")?;
            let new = take("@@ end")?;
            blocks.push(Block {
                path: path.trim().to_string(),
                old,
                new,
            });
        } else if line.starts_with("@@") {
            return Err(format!("{}: unexpected '{line}'", file.display()));
        }
    }
    Ok(Mutant {
        name,
        defect,
        blocks,
    })
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .expect("readable directory")
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if path.extension().is_some_and(|x| x == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Applies the mutant's blocks in memory, as `scripts/mutants.sh` does on its copy.
fn apply(root: &Path, m: &Mutant) -> Result<(), String> {
    let mut edited: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (n, b) in m.blocks.iter().enumerate() {
        let n = n + 1;
        if b.old.trim().is_empty() {
            return Err(format!("{}: block {n} has an empty old snippet", m.name));
        }
        if b.old == b.new {
            return Err(format!("{}: block {n} changes nothing", m.name));
        }
        let base = root.join(&b.path);
        if !base.starts_with(root.join("src")) || !base.exists() {
            return Err(format!(
                "{}: block {n}: {} is not under src/",
                m.name, b.path
            ));
        }
        let mut files = Vec::new();
        rust_files(&base, &mut files);
        let mut hits = Vec::new();
        for f in files {
            let text = match edited.get(&f) {
                Some(t) => t.clone(),
                None => std::fs::read_to_string(&f).expect("readable source"),
            };
            let count = text.matches(b.old.as_str()).count();
            if count > 0 {
                hits.push((f, text, count));
            }
        }
        let total: usize = hits.iter().map(|h| h.2).sum();
        if total != 1 {
            return Err(format!(
                "{}: block {n}: the old snippet occurs {total} times under {} (it must occur exactly once): {:?}",
                m.name,
                b.path,
                hits.iter().map(|h| &h.0).collect::<Vec<_>>()
            ));
        }
        let (f, text, _) = hits.pop().expect("one hit");
        edited.insert(f, text.replacen(b.old.as_str(), &b.new, 1));
    }
    Ok(())
}

#[test]
fn every_mutant_parses_and_applies_exactly_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("mutants"))
        .expect("mutants/")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "mutant"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "at least six mutants are kept (found {})",
        files.len()
    );
    let mut problems = Vec::new();
    for file in &files {
        let m = match parse(file) {
            Ok(m) => m,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if m.name != stem {
            problems.push(format!(
                "{}: name '{}' is not the file's",
                file.display(),
                m.name
            ));
        }
        if m.defect.trim().is_empty() {
            problems.push(format!("{}: no 'defect:' line", m.name));
        }
        if m.blocks.is_empty() {
            problems.push(format!("{}: no '@@ old PATH' block", m.name));
        }
        if let Err(e) = apply(root, &m) {
            problems.push(e);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A snippet found nowhere, or twice, is an error (never a mutant that silently does nothing).
#[test]
fn a_snippet_found_nowhere_or_twice_does_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src/part");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.rs"), "let x = 1;\nlet y = 2;\n").unwrap();
    std::fs::write(src.join("b.rs"), "let y = 2;\n").unwrap();
    let mutant = |old: &str| Mutant {
        name: "m".into(),
        defect: "d".into(),
        blocks: vec![Block {
            path: "src/".into(),
            old: old.into(),
            new: "let z = 3;\n".into(),
        }],
    };
    assert!(apply(dir.path(), &mutant("let x = 1;\n")).is_ok());
    let twice = apply(dir.path(), &mutant("let y = 2;\n")).unwrap_err();
    assert!(twice.contains("occurs 2 times"), "{twice}");
    let nowhere = apply(dir.path(), &mutant("let w = 0;\n")).unwrap_err();
    assert!(nowhere.contains("occurs 0 times"), "{nowhere}");
    // Blocks apply in order: the second sees the first's result.
    let mut chained = mutant("let x = 1;\n");
    chained.blocks.push(Block {
        path: "src/part/a.rs".into(),
        old: "let z = 3;\n".into(),
        new: "let x = 1;\n".into(),
    });
    assert!(apply(dir.path(), &chained).is_ok());
}
