//! Mixed load against a gateway until a duration passes or SIGINT/SIGTERM (requests in flight
//! finish), then one JSON summary on stdout. Exit status 1 when a failure the retry rules do
//! not allow happened (`unexpected` > 0), else 0. See `vyx_bench::mixload`.
//!
//! ```sh
//! vyx-mixload --url http://127.0.0.1:9000 --clients 16 --secs 60
//! vyx-mixload --url http://127.0.0.1:9000 --url http://127.0.0.1:9001 \
//!   --target /mix --target /=get,post,download,upload --mix get=4,post=3,abort_upload=1
//! ```

use std::time::Duration;

use clap::Parser;
use vyx_bench::mixload::{self, Config, Kind, Protocol, Target};

#[derive(Parser)]
#[command(
    name = "vyx-mixload",
    about = "mixed, checked load against a vyx gateway"
)]
struct Cli {
    /// Gateway base URL (repeat for several: a refused connection moves a client to the next).
    #[arg(long, required = true)]
    url: Vec<String>,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Stop after this many seconds (default: at SIGINT/SIGTERM only).
    #[arg(long)]
    secs: Option<f64>,
    /// `http1`, `h2c` or `both` (clients alternate).
    #[arg(long, default_value = "both")]
    protocol: String,
    /// Route prefix and the kinds served there, `PREFIX[=kind,…]` (repeatable; default `/mix`).
    #[arg(long)]
    target: Vec<String>,
    /// Weights, `kind=w,…` (kinds: get, post, download, sse, upload, abort_upload,
    /// abort_download; default get=4,post=3,download=1,sse=1,upload=1).
    #[arg(long)]
    mix: Option<String>,
    /// Seconds a whole answer may take before it counts as a timeout.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_mix(spec: &str) -> Result<Vec<(Kind, u32)>, String> {
    spec.split(',')
        .map(|pair| {
            let (k, w) = pair
                .split_once('=')
                .ok_or(format!("{pair:?} is not kind=weight"))?;
            let kind = Kind::parse(k.trim()).ok_or(format!("unknown kind {k:?}"))?;
            Ok((
                kind,
                w.trim().parse().map_err(|_| format!("bad weight {w:?}"))?,
            ))
        })
        .collect()
}

fn configure(cli: Cli) -> Result<Config, String> {
    let mut config = Config::new(
        cli.url
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect(),
    );
    config.clients = cli.clients;
    config.protocols = match cli.protocol.as_str() {
        "http1" => vec![Protocol::Http1],
        "h2c" => vec![Protocol::H2c],
        "both" => vec![Protocol::Http1, Protocol::H2c],
        other => return Err(format!("unknown protocol {other:?}")),
    };
    if !cli.target.is_empty() {
        config.targets = cli
            .target
            .iter()
            .map(|t| Target::parse(t))
            .collect::<Result<_, _>>()?;
    }
    if let Some(mix) = cli.mix {
        config.mix = parse_mix(&mix)?;
    }
    config.timeout = Duration::from_secs_f64(cli.timeout);
    config.seed = cli.seed;
    Ok(config)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let secs = cli.secs;
    let config = configure(cli).unwrap_or_else(|e| {
        eprintln!("vyx-mixload: {e}");
        std::process::exit(2);
    });
    let signalled = mixload::signalled();
    let stop = async move {
        match secs {
            Some(s) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(s)) => {}
                    _ = signalled => {}
                }
            }
            None => signalled.await,
        }
    };
    let summary = mixload::run(config, stop).await;
    println!("{}", summary.to_json());
    std::process::exit(if summary.unexpected() > 0 { 1 } else { 0 });
}
