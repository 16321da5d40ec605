//! `piswarm check client` and `piswarm check server`: run the check, print its report (for
//! people, or one JSON object with `--json`), and exit 0 only if every clause passed.

use crate::check::client::{check_client, ClientOptions};
use crate::check::server::{check_server, ServerOptions};
use crate::check::Report;
use std::process::ExitCode;

fn print(report: &Report, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `piswarm check client -- CMD [ARGS…]`.
pub async fn client(options: ClientOptions, json: bool) -> anyhow::Result<ExitCode> {
    let report = check_client(&options).await?;
    print(&report, json)
}

/// `piswarm check server HOST:PORT`.
pub async fn server(options: ServerOptions, json: bool) -> anyhow::Result<ExitCode> {
    let report = check_server(&options, |path, wait| {
        eprintln!(
            "piswarm check: the scenarios are done; waiting up to {wait:?} for {} (stop the server now if it writes its results when it stops)",
            path.display()
        );
    })
    .await?;
    print(&report, json)
}
