//! `piswarm worker`: a worker connected to a coordinator until the job is done (or it is told to
//! stop), with its own `GET /metrics` if asked for one.

use crate::worker::WorkerConfig;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Runs a worker with `config`; serves its metrics on `metrics` if given. `stop` ends it (Ctrl-C,
/// SIGTERM). Exit code 1 if the metrics address cannot be bound or the worker fails.
pub async fn worker(
    config: WorkerConfig,
    metrics: Option<String>,
    stop: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let metrics_stop = CancellationToken::new();
    let _metrics_stopper = metrics_stop.clone().drop_guard();
    if let Some(addr) = &metrics {
        let (instruments, name) = (config.metrics.clone(), config.name.clone());
        let render: crate::metrics::listener::Render = std::sync::Arc::new(move || {
            let text = instruments.render(&name);
            Box::pin(async move { text })
        });
        match crate::metrics::listener::bind(addr, render, metrics_stop.clone()).await {
            Ok((_, local)) => {
                crate::logging::say(format_args!("metrics at http://{local}/metrics"))
            }
            Err(e) => {
                crate::logging::error(
                    "piswarm worker",
                    format_args!("cannot serve metrics on {addr}: {e}"),
                );
                return Ok(ExitCode::from(1));
            }
        }
    }
    match crate::worker::run_worker(config, stop).await {
        Ok(summary) => {
            tracing::info!(
                accepted = summary.accepted,
                duplicates = summary.duplicates,
                terms = summary.terms,
                "worker finished"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            crate::logging::error("piswarm worker", &e);
            Ok(ExitCode::from(1))
        }
    }
}
