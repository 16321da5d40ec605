//! `piswarm serve`: the coordinator, its TCP server and the dashboard, until a signal or the
//! caller says stop. The lifecycle (start, stop, new run, local clients) lives in `node`; the
//! dashboard in `web`.

use crate::job::Job;
use crate::node::Node;
use crate::report::FinalReport;
use crate::wire::secret::Secret;
use crate::net::session::ServerConfig;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Options of `piswarm serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub job: Job,
    /// The SQLite store: runs and every accepted result.
    pub db: PathBuf,
    pub out: PathBuf,
    pub quiet: bool,
    pub max_prefetch: u32,
    pub lease: Option<Duration>,
    pub server: ServerConfig,
    /// Stop by itself once a bounded job is complete.
    pub exit_when_done: bool,
    /// Also serve the original's Python clients, in their own wire format, on this address.
    pub legacy_listen: Option<String>,
    /// Serve the dashboard and its JSON API on this address (`None`: no dashboard).
    pub http: Option<String>,
    /// The token the dashboard requires (one is generated when it listens beyond loopback).
    pub ui_token: Option<Secret>,
}

impl ServeOptions {
    /// Options with the defaults of the command line.
    pub fn new(job: Job, db: PathBuf, out: PathBuf) -> ServeOptions {
        ServeOptions {
            job,
            db,
            out,
            quiet: true,
            max_prefetch: 64,
            lease: None,
            server: ServerConfig::default(),
            exit_when_done: false,
            legacy_listen: None,
            http: None,
            ui_token: None,
        }
    }
}

/// Serves on `listener` until `shutdown` is cancelled (or the job completes, with
/// `exit_when_done`, or the dashboard asks the process to exit); then tells the workers, writes
/// results.json and final.json, and returns the final report of the current run.
///
/// With `options.http`, the dashboard and its API are served on that address in the same process;
/// through them the TCP server can be stopped and started again and new runs begun (see `node`).
pub async fn serve(
    listener: TcpListener,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<FinalReport> {
    let (out, db, exit_when_done) = (
        options.out.clone(),
        options.db.clone(),
        options.exit_when_done,
    );
    let http = options.http.clone();
    let ui_token = options.ui_token.clone();
    let node = Node::start(options, listener, true).await?;
    let web_stop = CancellationToken::new();
    // A dashboard that cannot bind (say, another piswarm holds the port) does not stop the
    // coordinator: the workers' side is the one that must not fail.
    let web = match &http {
        Some(addr) => {
            match crate::web::bind(node.clone(), addr, ui_token, web_stop.clone()).await {
                Ok((server, url)) => {
                    println!("piswarm: dashboard at {url}");
                    Some(server)
                }
                Err(e) => {
                    eprintln!(
                    "piswarm: warning: cannot serve the dashboard on {addr}: {e}; going on without \
                     it (choose another address with --http, or --no-http)"
                );
                    None
                }
            }
        }
        None => None,
    };
    let exit = node.exit_requested();
    let mut current = node.current();
    let failure = loop {
        let run = current.borrow_and_update().clone();
        let mut snapshots = run.snapshot.clone();
        let mut completions = run.snapshot.clone();
        let completed = async move { completions.wait_for(|s| s.complete).await.is_ok() };
        let store_failed = async move {
            snapshots
                .wait_for(|s| s.store_failed.is_some())
                .await
                .map(|s| s.store_failed.clone())
        };
        tokio::select! {
            _ = shutdown.cancelled() => break None,
            _ = exit.cancelled() => break None,
            done = completed, if exit_when_done => if done { break None },
            failed = store_failed => {
                if let Ok(Some(reason)) = failed {
                    break Some(reason);
                }
                // The coordinator ended (a new run replaced it): look at the current one.
                if current.changed().await.is_err() {
                    break None;
                }
            }
            changed = current.changed() => if changed.is_err() { break None },
        }
    };
    println!("piswarm: stopping — telling workers, writing results");
    let report = node.shutdown().await?;
    web_stop.cancel();
    if let Some(web) = web {
        let _ = web.await;
    }
    println!("{}", report.human());
    if let Some(reason) = failure {
        anyhow::bail!("stopped because the store failed: {reason}");
    }
    println!(
        "piswarm: results written to {} (store: {})",
        out.display(),
        db.display()
    );
    Ok(report)
}
