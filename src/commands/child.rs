//! A `piswarm serve` child process for the benchmarks: started on free loopback ports with its
//! own store in a temporary folder, its `/metrics` scraped, killed at the end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A running `piswarm serve` child.
pub struct ServeChild {
    pub child: tokio::process::Child,
    /// Where workers connect.
    pub addr: SocketAddr,
    /// Where its `/metrics` listens.
    pub metrics: String,
    dir: PathBuf,
}

/// One scrape of `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Metrics(String);

impl Metrics {
    /// The value of a sample (its name with labels, as printed), 0 if absent.
    pub fn value(&self, sample: &str) -> f64 {
        self.0
            .lines()
            .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    }
}

impl ServeChild {
    /// Starts `piswarm serve --no-http --quiet` on free loopback ports with `args` added, and
    /// waits (at most 30 s) until it says where it listens.
    pub async fn spawn(tag: &str, args: &[String]) -> anyhow::Result<ServeChild> {
        let dir = std::env::temp_dir().join(format!("piswarm-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args([
                "serve",
                "--no-http",
                "--quiet",
                "--listen",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
            ])
            .args(args)
            .arg("--out")
            .arg(&dir)
            .arg("--db")
            .arg(dir.join("piswarm.db"))
            .env_remove("PISWARM_TOKEN")
            .env_remove("PISWARM_LOG_FORMAT")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout from the server"))?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut addr, mut metrics) = (None::<SocketAddr>, None::<String>);
        let started = tokio::time::timeout(Duration::from_secs(30), async {
            while addr.is_none() || metrics.is_none() {
                let Some(line) = lines.next_line().await? else {
                    anyhow::bail!("the server exited before listening");
                };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                }
                if let Some(rest) = line.split("metrics at http://").nth(1) {
                    metrics = rest.split('/').next().map(str::to_string);
                }
            }
            Ok(())
        })
        .await;
        match started {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => anyhow::bail!("the server did not start within 30 s"),
        }
        let (Some(addr), Some(metrics)) = (addr, metrics) else {
            anyhow::bail!("the server did not say where it listens");
        };
        // Keep reading the server's output, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServeChild {
            child,
            addr,
            metrics,
            dir,
        })
    }

    /// Reads its `/metrics`.
    pub async fn scrape(&self) -> anyhow::Result<Metrics> {
        let (status, body) = super::status::request(&self.metrics, "GET", "/metrics", None).await?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        Ok(Metrics(body))
    }

    /// Kills it and removes its folder.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
