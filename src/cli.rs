//! The command line: flags, their validation into the commands' options, and the exit codes.
//!
//! The binary's `main` only calls [`main`]. Nothing here does the work: `commands` does. Exit
//! codes: 0 success, 1 failure at run time (e.g. the coordinator is unreachable, the store is held
//! by another `serve`), 2 bad usage (e.g. `--terms 0`, an unfinished run of another job).

use crate::commands::{self, serve::Served};
use crate::coordinator::RunId;
use crate::job::count::parse_count;
use crate::job::Job;
use crate::maths::kernel::Kernel;
use crate::net::limits::{self, ServerConfig, MAX_PREFETCH_CAP};
use crate::wire::Secret;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "piswarm",
    version,
    about = "Distributed computation of the Leibniz series for π over TCP: exact, fast, one binary."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// How log lines are written to standard error: human (lines for people) or json (one JSON
    /// object per line; fields in docs/deployment.md). Levels: PISWARM_LOG (e.g. debug).
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        default_value = "human",
        env = "PISWARM_LOG_FORMAT"
    )]
    pub log_format: crate::logging::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator: hand out intervals to workers, check and aggregate their results.
    Serve(Box<ServeArgs>),
    /// Connect to a coordinator and compute intervals until there is no more work.
    Worker(WorkerArgs),
    /// Run a whole job on this machine: a coordinator and local workers over loopback TCP.
    Run(RunArgs),
    /// Export a stored run: results as JSON (results.json) or CSV, or its final.json.
    Export(ExportArgs),
    /// Ask a running `piswarm serve` for its status (through the dashboard's API); prints JSON.
    Status(ApiArgs),
    /// Ask a running `piswarm serve` to stop its TCP coordinator (gracefully); with --exit, to
    /// stop the whole process.
    Stop(StopArgs),
    /// Measure the kernel, the coordinator, idle connections or a fleet of workers joining (see
    /// docs/performance.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Make a private certificate authority and a server certificate for `serve --tls-cert`
    /// (ca.pem, server.pem, server.key); never overwrites a file.
    Cert(CertArgs),
    /// Grade a client or a server of the assignment, in any language, against the protocol
    /// (docs/grading.md): a report with one line per clause; exit 0 only if every clause passes.
    #[command(subcommand)]
    Check(CheckCommand),
}

#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Run a client program against a scripted coordinator on a free loopback port, through
    /// scenarios (a job, a restart, duplicate and error answers, a done, a silent coordinator).
    Client(CheckClientArgs),
    /// Drive a server with N concurrent scripted clients, then misbehaving ones.
    Server(CheckServerArgs),
}

#[derive(Debug, Args)]
pub struct CheckClientArgs {
    /// The protocol the client speaks.
    #[arg(long, value_enum, default_value = "v1")]
    pub protocol: crate::check::Protocol,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The longest one scenario may take (at most 10 s of it to connect).
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub timeout: Duration,
    /// The client program and its arguments, after `--`; `{addr}` is replaced by the scripted
    /// coordinator's address (also in the environment as PISWARM_ADDR).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub program: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckServerArgs {
    /// The server's address, HOST:PORT.
    pub addr: String,
    /// The protocol the server speaks.
    #[arg(long, value_enum, default_value = "v1")]
    pub protocol: crate::check::Protocol,
    /// Clients that connect at once.
    #[arg(long, default_value = "100", value_parser = count_usize)]
    pub clients: usize,
    /// The server's own results (results.json, final.json, `piswarm export`), checked exactly
    /// against the intervals the clients saw counted; waited for after the scenarios.
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The longest one phase may take (and the wait for --results).
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CertArgs {
    /// The names and IP addresses workers use to reach the coordinator, comma-separated (e.g.
    /// pi.example,10.0.0.5,localhost): each goes into the certificate as a DNS name or an IP
    /// address.
    #[arg(long, value_name = "HOST,...", value_delimiter = ',', required = true)]
    pub hosts: Vec<String>,
    /// The directory to write ca.pem, server.pem and server.key into (created if missing). The
    /// CA's own key is never written: it signs this one certificate and is discarded.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How long the certificates are valid, in days.
    #[arg(long, default_value = "825", value_parser = count_u32)]
    pub days: u32,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// π terms per second per core of each kernel, on all cores, with the CPU, the instruction set
    /// and what bounds the kernel there (the divider, or the adds and multiplies).
    Kernel {
        #[arg(long, default_value = "3")]
        seconds: f64,
        /// Threads (default: all cores).
        #[arg(long, value_parser = count_usize)]
        threads: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Results per second through a real coordinator, from many clients over loopback.
    Coordinator {
        #[arg(long, default_value = "64", value_parser = count_usize)]
        clients: usize,
        #[arg(long, default_value = "1000", value_parser = count)]
        chunk: u64,
        #[arg(long, default_value = "5")]
        seconds: f64,
        /// Assignments each client holds.
        #[arg(long, default_value = "64", value_parser = count_u32)]
        prefetch: u32,
        #[arg(long)]
        json: bool,
    },
    /// A crowd of unequal `piswarm worker` processes (a thread per core, nice 19, paced 0.1–3 s
    /// per interval, two that go silent for good) against a `piswarm serve`: the run's time
    /// against the crowd's ideal, and what backup copies cost.
    Crowd {
        #[arg(long, default_value = "4e10", value_parser = count)]
        terms: u64,
        #[arg(long, default_value = "1e8", value_parser = count)]
        chunk: u64,
        /// Run against a coordinator that hands out no backup copies (for comparison).
        #[arg(long)]
        no_backups: bool,
        /// Give up after this long.
        #[arg(long, default_value = "5m", value_parser = duration)]
        limit: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Resident memory of a `piswarm serve` process holding N idle connections.
    Connections {
        #[arg(long, default_value = "10000", value_parser = count_usize)]
        count: usize,
        #[arg(long)]
        json: bool,
    },
    /// A fleet of worker sessions joining a `piswarm serve` child process at once (one process,
    /// many connections): how many were served, refused or failed, and how fast they joined.
    Fleet {
        /// Worker sessions to open.
        #[arg(long, default_value = "5000", value_parser = count_usize)]
        sessions: usize,
        /// The window over which the sessions start, spread evenly (e.g. 2s; 0s: all at once).
        #[arg(long, default_value = "2s", value_parser = duration)]
        within: Duration,
        /// The server's --max-connections (default: enough for the whole fleet).
        #[arg(long, value_parser = count_usize)]
        max_connections: Option<usize>,
        /// Each session takes this many intervals and reports them.
        #[arg(long, default_value = "1", value_parser = count_u32)]
        intervals: u32,
        /// A served session leaves after this long (default: when the whole fleet is served;
        /// needed when the fleet is larger than --max-connections).
        #[arg(long, value_parser = duration)]
        hold: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
}

fn count(s: &str) -> Result<u64, String> {
    parse_count(s).map_err(|e| e.to_string())
}

fn count_u32(s: &str) -> Result<u32, String> {
    let n = count(s)?;
    u32::try_from(n).map_err(|_| format!("'{s}' is too large"))
}

fn count_usize(s: &str) -> Result<usize, String> {
    let n = count(s)?;
    usize::try_from(n).map_err(|_| format!("'{s}' is too large"))
}

/// A size in bytes: `1048576`, `500MB`, `2GiB`, `64M`.
fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 500MB, 2GiB)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "'{s}': unknown unit (use B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn kernel_name(s: &str) -> Result<Kernel, String> {
    Kernel::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Kernel::ALL.iter().map(|k| k.name()).collect();
        format!("'{s}' is not a kernel (one of: {})", names.join(", "))
    })
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("'{s}' is not a duration (e.g. 30s, 2m): {e}"))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TCP address for workers.
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub listen: String,
    /// Total terms of the job (absent: open-ended, as in the original).
    #[arg(long, value_parser = count)]
    pub terms: Option<u64>,
    /// Terms per interval (default: 1000 open-ended; about N/1000, at least 10^7, for bounded jobs).
    #[arg(long, value_parser = count)]
    pub chunk: Option<u64>,
    /// Directory for results.json and final.json.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// SQLite store of runs and results; an unfinished run with the same job is resumed.
    #[arg(long, default_value = "piswarm.db")]
    pub db: PathBuf,
    /// Print only start, stop and the final result (no line per result).
    #[arg(long)]
    pub quiet: bool,
    /// Exit once a bounded job is complete.
    #[arg(long)]
    pub exit_when_done: bool,
    /// The most assignments one worker may hold at once.
    #[arg(long, default_value_t = crate::wire::DEFAULT_MAX_PREFETCH, value_parser = count_u32)]
    pub max_prefetch: u32,
    /// A fixed lease for every assignment (default: derived from the chunk and the worker's speed, at least 30s).
    #[arg(long, value_parser = duration)]
    pub lease: Option<Duration>,
    /// Maximum simultaneous connections; more are refused with an error line [default: the
    /// open-file limit, which serve raises to its hard limit at start, minus 100 kept for files
    /// and listeners]
    #[arg(long, value_parser = count_usize)]
    pub max_connections: Option<usize>,
    /// Time a new connection has to send its hello.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub handshake_timeout: Duration,
    /// A connection that sends no complete line for this long is closed.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// Shared secret workers must present (also PISWARM_TOKEN); never printed or logged.
    #[arg(long, env = "PISWARM_TOKEN", hide_env_values = true, value_parser = Secret::parse_arg)]
    pub token: Option<Secret>,
    /// Serve TLS only, with this certificate chain (PEM; needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also serve the original's unchanged Python clients, in their own wire format, on this address.
    #[arg(long, value_name = "ADDR")]
    pub legacy_listen: Option<String>,
    /// Address of the dashboard and its JSON API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub http: String,
    /// Also serve GET /metrics (Prometheus text format) on this address, without a token
    /// (restrict it by network); the dashboard serves it too, behind its token.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Do not serve the dashboard.
    #[arg(long)]
    pub no_http: bool,
    /// The dashboard's address as other machines reach it, for the join link and its QR code
    /// (e.g. https://piswarm.example.org behind a proxy, or http://203.0.113.7:8080 behind NAT);
    /// by default the --http address, or this machine's first network address when --http
    /// listens on all of them.
    #[arg(long, value_name = "URL", value_parser = crate::web::join::parse_public_url)]
    pub public_url: Option<String>,
    /// Token the dashboard requires (also PISWARM_UI_TOKEN); when the dashboard listens beyond
    /// loopback without one, one is generated and printed in its URL.
    #[arg(long, env = "PISWARM_UI_TOKEN", hide_env_values = true, value_parser = Secret::parse_arg)]
    pub ui_token: Option<Secret>,
    /// Start a new run even if the latest run in --db is unfinished or complete.
    #[arg(long, conflicts_with = "resume")]
    pub new_run: bool,
    /// Continue this run of --db (its own terms and chunk; see `piswarm export` for run numbers).
    #[arg(long, value_name = "RUN")]
    pub resume: Option<u64>,
    /// Stop accepting results when the store's disk has less free space than this (e.g. 500MB,
    /// 2GiB) [default: 64 MiB, or a quarter of the store's size if larger]
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub min_free_disk: Option<u64>,
    /// The most local clients (the dashboard's Create) running at once; they share one compute
    /// thread per core [default: 1000, or half the connection budget if less]
    #[arg(long, value_parser = count_usize)]
    pub max_local_clients: Option<usize>,
    /// Accept only π partials within the compensated kernel's error bound (piswarm workers pass;
    /// plain-loop clients of long intervals do not), so that no client can move the result.
    #[arg(long)]
    pub strict: bool,
    /// Never hand out backup copies of intervals in flight at the tail of a job (they are on by
    /// default: a faster worker gets a copy of what a straggler holds, docs/protocol.md §6.1).
    #[arg(long)]
    pub no_backups: bool,
    /// The π kernel of a new run: oct (one division per 8 terms) or quad (per 4, the kernel of
    /// runs made before oct). A resumed run keeps its own, whatever this says.
    #[arg(long, value_name = "KERNEL", value_parser = kernel_name, default_value = "oct")]
    pub kernel: Kernel,
}

/// How to reach a running server's dashboard API.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Address of the dashboard (`piswarm serve --http`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub http: String,
    /// The dashboard's token, if it requires one (also PISWARM_UI_TOKEN).
    #[arg(long, env = "PISWARM_UI_TOKEN", hide_env_values = true, value_parser = Secret::parse_arg)]
    pub ui_token: Option<Secret>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Stop the whole process (coordinator and dashboard), not only the TCP coordinator.
    #[arg(long)]
    pub exit: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The coordinator's address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub connect: String,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = count_usize)]
    pub threads: Option<usize>,
    /// Name shown in results (default: host name and pid).
    #[arg(long)]
    pub name: Option<String>,
    /// Take one interval, report it and leave (the original's client).
    #[arg(long)]
    pub once: bool,
    /// Keep retrying to reach the coordinator for this long (e.g. 60s), with backoff.
    #[arg(long, value_parser = duration)]
    pub retry_for: Option<Duration>,
    /// Assignments to hold at once (default: two per thread; capped by the server).
    #[arg(long, value_parser = count_u32)]
    pub prefetch: Option<u32>,
    /// Wait this long after computing each interval before reporting it (e.g. 3s): makes this
    /// worker a slow machine, for demonstrations and the crowd benchmark.
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub pace: Option<Duration>,
    /// Shared secret of the coordinator (also PISWARM_TOKEN); never printed or logged.
    #[arg(long, env = "PISWARM_TOKEN", hide_env_values = true, value_parser = Secret::parse_arg)]
    pub token: Option<Secret>,
    /// Connect with TLS, trusting the certificate authority (or self-signed certificate) in this
    /// PEM file.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// The name the coordinator's certificate must carry (default: the host part of --connect).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    /// Serve this worker's own GET /metrics (Prometheus text format) on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Total terms, e.g. 1e9, 10^9, 1_000_000_000.
    #[arg(long, value_parser = count)]
    pub terms: u64,
    /// Local workers (default: number of cores), one compute thread each.
    #[arg(long, value_parser = count_usize)]
    pub workers: Option<usize>,
    /// Terms per interval (default: about N/1000, at least 10^7).
    #[arg(long, value_parser = count)]
    pub chunk: Option<u64>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Keep the run in this SQLite store (default: an in-memory store).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The π kernel: oct (one division per 8 terms) or quad (per 4).
    #[arg(long, value_name = "KERNEL", value_parser = kernel_name, default_value = "oct")]
    pub kernel: Kernel,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The SQLite store.
    #[arg(long, default_value = "piswarm.db")]
    pub db: PathBuf,
    /// The run (default: the latest).
    #[arg(long)]
    pub run: Option<u64>,
    #[arg(long, value_enum, default_value = "json")]
    pub format: crate::store::export::Format,
    /// Write the run's final.json instead of its results.
    #[arg(long)]
    pub r#final: bool,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match &cli.command {
        Some(Command::Run(_)) => "warn",
        Some(Command::Bench(_)) => "error",
        Some(Command::Check(_)) => "warn",
        _ => "info",
    };
    crate::logging::init(cli.log_format, level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("piswarm: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            crate::logging::error("piswarm", format_args!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("piswarm: {message}");
    ExitCode::from(2)
}

/// Cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        t.cancel();
    });
    token
}

async fn dispatch(command: Option<Command>) -> anyhow::Result<ExitCode> {
    let command = command.unwrap_or_else(|| Command::Serve(Box::new(ServeArgs::parse_defaults())));
    match command {
        Command::Bench(what) => bench(what).await,
        Command::Check(CheckCommand::Client(args)) => {
            let options = crate::check::client::ClientOptions {
                program: args.program,
                protocol: args.protocol,
                timeout: args.timeout,
            };
            commands::check::client(options, args.json).await
        }
        Command::Check(CheckCommand::Server(args)) => {
            if args.clients == 0 {
                return Ok(usage_error("--clients must be at least 1"));
            }
            let options = crate::check::server::ServerOptions {
                addr: args.addr,
                protocol: args.protocol,
                clients: args.clients,
                results: args.results,
                timeout: args.timeout,
            };
            commands::check::server(options, args.json).await
        }
        Command::Cert(args) => {
            let options = commands::cert::CertOptions {
                hosts: args.hosts,
                out: args.out,
                days: args.days,
            };
            match commands::cert::write_certificates(&options) {
                Ok(written) => {
                    for line in written.describe() {
                        println!("{line}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ commands::cert::CertError::BadHost(_)) => Ok(usage_error(e)),
                Err(e) => {
                    eprintln!("piswarm cert: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Export(args) => {
            if !args.db.exists() {
                return Ok(usage_error(format!("no database at {}", args.db.display())));
            }
            let options = commands::export::ExportOptions {
                db: args.db,
                run: args.run.map(RunId),
                format: args.format,
                final_only: args.r#final,
                output: args.output,
            };
            commands::export::export(&options)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => api_call(&args, "GET", "/api/status").await,
        Command::Stop(args) => {
            let path = if args.exit {
                "/api/shutdown"
            } else {
                "/api/server/stop"
            };
            api_call(&args.api, "POST", path).await
        }
        Command::Serve(args) => serve(*args).await,
        Command::Worker(args) => {
            let mut config = crate::worker::WorkerConfig::new(args.connect);
            config.threads = args.threads.unwrap_or_else(cores).max(1);
            if let Some(name) = args.name {
                config.name = name;
            }
            config.once = args.once;
            config.retry_for = args.retry_for;
            config.token = args.token;
            config.prefetch = args.prefetch;
            config.pace = args.pace;
            if let Some(ca) = &args.tls_ca {
                match crate::net::tls::TlsClient::from_ca_file(ca) {
                    Ok(tls) => config.tls = Some(tls),
                    Err(e) => return Ok(usage_error(e)),
                }
            }
            config.tls_server_name = args.tls_server_name;
            commands::worker::worker(config, args.metrics, shutdown_on_signals()).await
        }
        Command::Run(args) => {
            let job = match Job::new(Some(args.terms), args.chunk) {
                Ok(job) => job,
                Err(e) => return Ok(usage_error(e)),
            };
            let workers = args.workers.unwrap_or_else(cores);
            if workers == 0 {
                return Ok(usage_error("--workers must be at least 1"));
            }
            let options = commands::run::RunOptions {
                job,
                workers,
                threads_per_worker: 1,
                progress: !args.json,
                db: args.db,
                kernel: args.kernel,
            };
            let report = commands::run::run_local(options).await?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.human());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Validates `serve`'s flags into its options, then serves.
async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let job = match Job::new(args.terms, args.chunk) {
        Ok(job) => job,
        Err(e) => return Ok(usage_error(e)),
    };
    if args.max_prefetch == 0 || args.max_prefetch > MAX_PREFETCH_CAP {
        return Ok(usage_error(format!(
            "--max-prefetch must be between 1 and {MAX_PREFETCH_CAP}"
        )));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match crate::net::tls::TlsServer::from_pem_files(cert, key) {
            Ok(tls) => Some(tls),
            Err(e) => return Ok(usage_error(e)),
        },
        _ => None,
    };
    let fd_limit = limits::raise_fd_limit();
    let max_connections = args
        .max_connections
        .unwrap_or_else(|| limits::default_max_connections(fd_limit));
    tracing::info!(
        open_file_limit = fd_limit,
        max_connections,
        tls = tls.is_some(),
        "limits"
    );
    if let Some(legacy) = args
        .legacy_listen
        .as_deref()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .filter(|a| !a.ip().is_loopback())
    {
        crate::logging::warn(format_args!(
            "the legacy listener on {legacy} has no authentication (the original's wire format \
             has no token): anyone who can reach it can take part"
        ));
    }
    let mut options = commands::serve::ServeOptions::new(job, args.db, args.out);
    options.quiet = args.quiet;
    options.max_prefetch = args.max_prefetch;
    options.lease = args.lease;
    options.server = ServerConfig {
        max_connections,
        handshake_timeout: args.handshake_timeout,
        idle_timeout: args.idle_timeout,
        token: args.token,
        tls,
        tolerance: if args.strict {
            crate::job::verify::Tolerance::Kernel
        } else {
            crate::job::verify::Tolerance::Honest
        },
        ..ServerConfig::default()
    };
    options.exit_when_done = args.exit_when_done;
    options.legacy_listen = args.legacy_listen;
    options.http = (!args.no_http).then_some(args.http);
    options.metrics = args.metrics;
    options.ui_token = args.ui_token;
    options.public_url = args.public_url;
    options.new_run = args.new_run;
    options.resume = args.resume.map(RunId);
    options.min_free_disk = args.min_free_disk;
    options.backups = !args.no_backups;
    options.kernel = args.kernel;
    if let Some(max) = args.max_local_clients {
        options.max_local_clients = max;
    }
    let served = commands::serve::serve_command(&args.listen, options, shutdown_on_signals()).await;
    match served {
        Ok(Served::Stopped(_)) => Ok(ExitCode::SUCCESS),
        Ok(Served::AlreadyComplete(why)) => {
            crate::logging::say(&why);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => match e.downcast_ref::<crate::node::StartError>() {
            Some(crate::node::StartError::Unfinished { .. })
            | Some(crate::node::StartError::CannotResume { .. }) => Ok(usage_error(e)),
            _ => Err(e),
        },
    }
}

impl ServeArgs {
    fn parse_defaults() -> ServeArgs {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Defaults::parse_from(["piswarm"]).serve
    }
}

async fn bench(what: BenchCommand) -> anyhow::Result<ExitCode> {
    fn show<T: serde::Serialize + std::fmt::Debug>(
        json: bool,
        report: &T,
    ) -> anyhow::Result<ExitCode> {
        if json {
            println!("{}", serde_json::to_string(report)?);
        } else {
            println!("{}", serde_json::to_string_pretty(report)?);
        }
        Ok(ExitCode::SUCCESS)
    }
    match what {
        BenchCommand::Kernel {
            seconds,
            threads,
            json,
        } => {
            let threads = threads.unwrap_or_else(cores);
            let report =
                tokio::task::spawn_blocking(move || commands::bench::kernel(seconds, threads))
                    .await?;
            show(json, &report)
        }
        BenchCommand::Coordinator {
            clients,
            chunk,
            seconds,
            prefetch,
            json,
        } => show(
            json,
            &crate::commands::bench::coordinator(clients, chunk, seconds, prefetch).await?,
        ),
        BenchCommand::Crowd {
            terms,
            chunk,
            no_backups,
            limit,
            json,
        } => {
            let options = commands::crowd::CrowdOptions {
                terms,
                chunk,
                backups: !no_backups,
                limit,
            };
            show(json, &commands::crowd::crowd(&options).await?)
        }
        BenchCommand::Connections { count, json } => {
            show(json, &crate::commands::bench::connections(count).await?)
        }
        BenchCommand::Fleet {
            sessions,
            within,
            max_connections,
            intervals,
            hold,
            json,
        } => {
            let options = commands::fleet::FleetOptions {
                sessions,
                within,
                max_connections,
                intervals,
                hold,
            };
            show(json, &commands::fleet::fleet(&options).await?)
        }
    }
}

/// Sends one request to a running dashboard's API and prints the JSON answer. Exit code 1 if it
/// cannot be reached or answers with an error.
async fn api_call(args: &ApiArgs, method: &str, path: &str) -> anyhow::Result<ExitCode> {
    let token = args.ui_token.as_ref().map(|t| t.expose());
    match commands::status::request(&args.http, method, path, token).await {
        Ok((status, body)) => {
            println!("{}", body.trim_end());
            if (200..300).contains(&status) {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("piswarm: the dashboard at {} answered {status}", args.http);
                Ok(ExitCode::from(1))
            }
        }
        Err(e) => {
            eprintln!("piswarm: cannot reach the dashboard at {}: {e}", args.http);
            Ok(ExitCode::from(1))
        }
    }
}
