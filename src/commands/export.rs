//! `piswarm export`: a stored run as results.json, CSV, or final.json. The store is opened read
//! only: exporting never changes the file it reads (nor migrates it).

use crate::coordinator::RunId;
use crate::store::export::{self, Format};
use crate::store::Store;
use std::io::Write;
use std::path::PathBuf;

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub db: PathBuf,
    /// The run (default: the latest).
    pub run: Option<RunId>,
    pub format: Format,
    /// The run's final.json instead of its results.
    pub final_only: bool,
    /// A file instead of standard output.
    pub output: Option<PathBuf>,
}

/// Writes the export.
pub fn export(options: &ExportOptions) -> anyhow::Result<()> {
    let store = Store::open_read_only(&options.db)?;
    let run = match options.run {
        Some(id) => store.run(id)?.id,
        None => store.latest_run()?.id,
    };
    let mut out: Box<dyn Write> = match &options.output {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    if options.final_only {
        export::final_json(&store, run, &mut out)?;
    } else {
        match options.format {
            Format::Json => export::results_json(&store, run, &mut out)?,
            Format::Csv => export::results_csv(&store, run, &mut out)?,
        }
    }
    out.flush()?;
    Ok(())
}
