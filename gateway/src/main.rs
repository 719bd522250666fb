//! `vyx`: the gateway binary.

use std::net::SocketAddr;

use clap::Parser;
use tracing::{info, warn};
use vyx_gateway::{Gateway, GatewayConfig};

/// A pull-model API gateway: workers dial in over WebSocket and serve the routes they
/// register.
#[derive(Parser, Debug)]
#[command(name = "vyx", version, about)]
struct Cli {
    /// Address to listen on for HTTP and worker registrations.
    #[arg(long, value_name = "ADDR", env = "VYX_LISTEN")]
    listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut config = GatewayConfig::default();
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    let gateway = match Gateway::bind(config.clone()).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("vyx: cannot listen on {}: {e}", config.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = gateway.local_addr();
    if config.dev_mode {
        warn!(
            "no vyx.yaml: running on the embedded default (dev mode): any worker id and token is accepted"
        );
    }
    info!(%addr, register = %config.register_path, "vyx listening: HTTP on http://{addr}, workers register at ws://{addr}{}", config.register_path);
    // The one line on stdout, for scripts and test runners that start vyx on port 0.
    println!("listening http://{addr}");
    match gateway.run(shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vyx: {e}");
            std::process::ExitCode::FAILURE
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
