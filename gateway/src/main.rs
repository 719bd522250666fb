//! `vyx`: the gateway binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::{info, warn};
use vyx_gateway::auth::DevMode;
use vyx_gateway::log_format::LogFormat;
use vyx_gateway::{file_config, log_limit, raise_nofile_limit, Gateway, GatewayConfig};

// Opt-in (`--features mimalloc`): less CPU per request and freed memory given back, at a
// larger resident floor and ~7 KiB more per idle worker connection. bench/NOTES.md, "The allocator".
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A pull-model API gateway: workers dial in over WebSocket and serve the routes they
/// register.
#[derive(Parser, Debug)]
#[command(name = "vyx", version, about)]
struct Cli {
    /// Address to listen on for HTTP (and worker registrations); overrides the file's
    /// `listen`.
    #[arg(long, value_name = "ADDR", env = "VYX_LISTEN")]
    listen: Option<SocketAddr>,
    /// A vyx.yaml to run with; without one the gateway runs on its embedded default (dev
    /// mode: any worker from this host accepted).
    #[arg(long, value_name = "FILE", env = "VYX_CONFIG")]
    config: Option<PathBuf>,
    /// Dev mode only: admit workers from other hosts too, with no token. Anyone who can
    /// reach the gateway can then register any route and take every request; without this
    /// flag dev mode admits workers from this host only.
    #[arg(long)]
    insecure_dev_workers: bool,
    /// How log lines (and access log lines) are written: text, or one JSON object per line
    /// for log pipelines; overrides the file's `log.format`.
    #[arg(long, value_name = "FORMAT", env = "VYX_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// How many shards serve connections, one thread each (default: the number of cores);
    /// overrides the file's `runtime.threads`.
    #[arg(long, value_name = "N", env = "VYX_THREADS", value_parser = clap::value_parser!(u16).range(1..=file_config::MAX_THREADS as i64))]
    threads: Option<u16>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks a vyx.yaml (syntax, keys, values, tokens) without starting anything.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

/// Logs to stderr in `format`, filtered by `RUST_LOG` (default `info`).
fn start_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing::subscriber::set_global_default(log_limit::subscriber(
        std::io::stderr,
        ansi,
        filter,
        format,
    ))
    .expect("the only subscriber");
}

fn main() -> ExitCode {
    // Before any thread allocates: glibc fixes its arena limit when a second thread first does.
    vyx_gateway::memory_release::limit_arenas();
    // The control plane (accepts, the stop, supervision, telemetry): connections are
    // served on the shards (`vyx_gateway::shards`).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime")
        .block_on(serve())
}

async fn serve() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Check { file }) = &cli.command {
        start_logging(cli.log_format.unwrap_or_default());
        return match file_config::load(file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} worker(s) declared, {} local)",
                    file.display(),
                    c.declared_workers.len(),
                    c.local_workers.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vyx: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut config = match &cli.config {
        Some(file) => match file_config::load(file) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("vyx: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => GatewayConfig::default(),
    };
    // The file is read first: its `log.format` applies from the first line.
    if let Some(format) = cli.log_format {
        config.log_format = format;
    }
    if let Some(n) = cli.threads {
        config.threads = n.into();
    }
    start_logging(config.log_format);
    raise_nofile_limit();
    if let Some(listen) = cli.listen {
        config.listen = listen;
        config.extra_listen.clear();
    }
    if cli.insecure_dev_workers {
        if !config.dev_mode {
            eprintln!("vyx: --insecure-dev-workers applies to dev mode (no vyx.yaml) only; with a vyx.yaml, declare remote workers with tokens");
            return ExitCode::FAILURE;
        }
        config.auth = std::sync::Arc::new(DevMode::new(true));
    }
    let gateway = match Gateway::bind(config.clone()).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("vyx: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = gateway.local_addr();
    let exposed = config
        .listen_addrs()
        .find(|a| !vyx_gateway::auth::is_loopback_peer(a.ip()));
    match &config.config_file {
        None if cli.insecure_dev_workers => warn!(
            "no vyx.yaml, --insecure-dev-workers: dev mode admits any worker id from any host without a token; anyone who can reach {} can register any route and take every request",
            exposed.unwrap_or(addr)
        ),
        None => match exposed {
            Some(listen) => warn!(
                "no vyx.yaml: dev mode on {listen}, which is not loopback: clients from the network are served, but workers are admitted from this host only (others get 403); give remote workers tokens in a vyx.yaml (examples/README.md)"
            ),
            None => warn!(
                "no vyx.yaml: running on the embedded default (dev mode): any worker id and token is accepted from this host"
            ),
        },
        Some(file) => info!(file = %file.display(), local_workers = config.local_workers.len(), "configuration loaded"),
    }
    let register = gateway.register_addr();
    let (http, ws) = match gateway.tls() {
        Some(tls) => {
            tokio::spawn(tls.reload_on_sighup());
            ("https", "wss")
        }
        None => ("http", "ws"),
    };
    info!(%addr, register = %config.register_path, "vyx listening: HTTP on {}, workers register at {ws}://{register}{}",
        gateway.http_addrs().iter().map(|a| format!("{http}://{a}")).collect::<Vec<_>>().join(", "),
        config.register_path);
    // The one line on stdout, for scripts and test runners that start vyx on port 0.
    println!("listening {http}://{addr}");
    match gateway.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vyx: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: draining"),
        _ = int.recv() => info!("SIGINT: draining"),
    }
}
