//! `piswarm serve`: the coordinator, its TCP server and the dashboard, until a signal or the
//! caller says stop. The lifecycle (start, stop, new run, local clients) lives in `node`; the
//! dashboard in `web`.

use crate::logging;
pub use crate::node::ServeOptions;
use crate::node::{Node, StartError};
use crate::report::FinalReport;
use crate::store::lock::StoreLock;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How `serve` ended.
#[derive(Debug)]
pub enum Served {
    /// It served until told to stop (or the job completed, with `--exit-when-done`).
    Stopped(FinalReport),
    /// There was nothing to serve: the run to continue is complete.
    AlreadyComplete(String),
}

/// `piswarm serve` as the command line runs it: takes the store's lock before binding any port,
/// binds `listen`, and serves until `shutdown`.
pub async fn serve_command(
    listen: &str,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<Served> {
    let lock = StoreLock::acquire(&options.db)?;
    let listener = crate::net::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    if let Some(warning) = crate::net::limits::exposure_warning(
        listener.local_addr()?,
        options.server.token.is_some(),
        options.server.tls.is_some(),
    ) {
        match crate::logging::format() {
            crate::logging::LogFormat::Human => eprintln!("{warning}"),
            crate::logging::LogFormat::Json => {
                crate::logging::warn(warning.trim_start_matches("piswarm: warning: "))
            }
        }
    }
    serve_with(listener, lock, options, shutdown).await
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
    let lock = StoreLock::acquire(&options.db)?;
    match serve_with(listener, lock, options, shutdown).await? {
        Served::Stopped(report) => Ok(report),
        Served::AlreadyComplete(why) => anyhow::bail!(why),
    }
}

async fn serve_with(
    listener: TcpListener,
    lock: StoreLock,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<Served> {
    let (out, db, exit_when_done) = (
        options.out.clone(),
        options.db.clone(),
        options.exit_when_done,
    );
    let http = options.http.clone();
    let ui_token = options.ui_token.clone();
    let metrics = options.metrics.clone();
    let node = match Node::start_locked(options, lock, listener, true).await {
        Ok(node) => node,
        Err(e @ StartError::Complete { .. }) => return Ok(Served::AlreadyComplete(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let web_stop = CancellationToken::new();
    // A dashboard that cannot bind (say, another piswarm holds the port) does not stop the
    // coordinator: the workers' side is the one that must not fail.
    let web = match &http {
        Some(addr) => {
            match crate::web::bind(node.clone(), addr, ui_token, web_stop.clone()).await {
                Ok((server, url)) => {
                    logging::say(format_args!("dashboard at {url}"));
                    Some(server)
                }
                Err(e) => {
                    logging::warn(format_args!(
                        "cannot serve the dashboard on {addr}: {e}; going on without it (choose \
                         another address with --http, or --no-http)"
                    ));
                    None
                }
            }
        }
        None => None,
    };
    // Like the dashboard, a metrics listener that cannot bind does not stop the coordinator.
    let metrics = match &metrics {
        Some(addr) => {
            let scraped = node.clone();
            let render: crate::metrics::listener::Render = std::sync::Arc::new(move || {
                let node = scraped.clone();
                Box::pin(async move { crate::web::metrics::render(&node).await })
            });
            match crate::metrics::listener::bind(addr, render, web_stop.clone()).await {
                Ok((server, local)) => {
                    logging::say(format_args!("metrics at http://{local}/metrics"));
                    Some(server)
                }
                Err(e) => {
                    logging::warn(format_args!(
                        "cannot serve metrics on {addr}: {e}; going on without them (choose \
                         another address with --metrics)"
                    ));
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
    logging::say("stopping — telling workers, writing results");
    // The dashboard's event streams end now, so that its server can finish while the node stops.
    web_stop.cancel();
    let shut = node.shutdown().await;
    if let Some(web) = web {
        let _ = web.await;
    }
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    let report = match shut {
        Ok(report) => report,
        Err(e) => {
            if let Some(reason) = failure {
                anyhow::bail!("stopped because the store failed: {reason}");
            }
            anyhow::bail!("could not finish the run: {e}");
        }
    };
    match logging::format() {
        logging::LogFormat::Human => println!("{}", report.human()),
        logging::LogFormat::Json => {
            logging::say_with("final result", serde_json::json!({ "report": report }))
        }
    }
    if let Some(reason) = failure {
        anyhow::bail!("stopped because the store failed: {reason}");
    }
    if report.intervals > 0 {
        logging::say(format_args!(
            "results written to {} (store: {})",
            out.display(),
            db.display()
        ));
    } else {
        logging::say(format_args!(
            "no results yet: nothing written (store: {})",
            db.display()
        ));
    }
    Ok(Served::Stopped(report))
}
