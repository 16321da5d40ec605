//! Exports of a stored run: results.json (an array of result objects), CSV, and final.json.
//!
//! `piswarm export` and the files `serve` writes use these, so all three always agree with the
//! store, which is the source of truth.

use crate::coordinator::RunId;
use crate::store::{result_row, Store, StoreError};
use std::io::Write;
use std::path::Path;

/// Output formats of `piswarm export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Csv,
}

/// Writes a run's results, in interval order, as a JSON array (the shape of results.json).
pub fn results_json(store: &Store, run: RunId, out: &mut dyn Write) -> Result<(), StoreError> {
    out.write_all(b"[")?;
    let mut first = true;
    store.for_each_result(run, |r| {
        out.write_all(if first { b"\n  " } else { b",\n  " })?;
        first = false;
        serde_json::to_writer(&mut *out, &r).map_err(std::io::Error::other)
    })?;
    out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
    Ok(())
}

/// Writes a run's results as CSV (RFC 4180 quoting for text fields).
pub fn results_csv(store: &Store, run: RunId, out: &mut dyn Write) -> Result<(), StoreError> {
    writeln!(out, "{}", result_row::csv_header())?;
    store.for_each_result(run, |r| result_row::csv_row(&r, out))
}

/// Writes a run's final.json.
pub fn final_json(store: &Store, run: RunId, out: &mut dyn Write) -> Result<(), StoreError> {
    let report = store.final_report(run)?;
    serde_json::to_writer_pretty(&mut *out, &report).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes results.json and final.json of a run into `dir`, each atomically: written to a
/// temporary file of a unique name in the same directory, synced, then renamed over the old one
/// (so two writers never share a temporary file, and a reader never sees half a file).
pub fn write_files(store: &Store, run: RunId, dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir)?;
    write_atomically(&dir.join("results.json"), |w| results_json(store, run, w))?;
    let report = store.final_report(run)?;
    write_atomically(&dir.join("final.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, &report).map_err(std::io::Error::other)?;
        w.write_all(b"\n")?;
        Ok(())
    })?;
    Ok(())
}

/// Writes `path` through a uniquely named temporary file and a rename.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "piswarm".into(), |n| n.to_string_lossy().into_owned());
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file());
        fill(&mut w)?;
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| StoreError::Io(e.error))?;
    Ok(())
}
