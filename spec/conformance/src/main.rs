//! `vyx-conformance`: runs the conformance scenarios against the real `vyx` gateway and each
//! language's conformance worker, the worker probes (the runner as a scripted gateway to
//! each worker), and the protocol probes against the gateway, and prints one matrix. The
//! contract is `spec/conformance/README.md`.
//!
//! ```sh
//! cargo build --release -p vyx-gateway -p vyx-conformance -p vyx-conformance-worker-rust
//! target/release/vyx-conformance                  # every language; missing ones say so
//! target/release/vyx-conformance --lang rust --only echo
//! target/release/vyx-conformance --lang rust --only worker: --no-probes
//! ```
//!
//! It builds nothing itself. The output ends with the line `N passed, N failed`; the exit
//! status is non-zero when anything failed, or when a language asked for with `--lang` has
//! no SDK.

mod check;
mod http;
mod manifest;
mod probes;
mod procs;
mod scenarios;
mod worker_probes;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::check::Outcome;
use crate::manifest::Language;

/// Runs the vyx conformance suite: scenario × language, and the protocol probes.
#[derive(Parser, Debug)]
#[command(name = "vyx-conformance", version, about)]
struct Cli {
    /// Languages (columns) to run, comma-separated [default: rust, node, python, go and
    /// any other with a manifest; those without an SDK are reported as missing].
    #[arg(long, value_delimiter = ',')]
    lang: Option<Vec<String>>,
    /// Run only the scenarios and probes whose name contains this text (any case).
    #[arg(long)]
    only: Option<String>,
    /// Skip the protocol probes (the runner against the gateway).
    #[arg(long)]
    no_probes: bool,
    /// Skip the worker probes (the runner as a scripted gateway to each worker).
    #[arg(long)]
    no_worker_probes: bool,
    /// The `vyx` gateway binary [default: TARGET/release/vyx].
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// The repository root (where spec/conformance is).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Seconds a language's worker has to dial a scripted gateway and send HELLO before its
    /// column runs; a worker that exits first or never dials fails its whole column at once.
    #[arg(long, default_value_t = 20, value_name = "SECS")]
    worker_start_timeout: u64,
}

/// The most one scenario may take, whatever it waits for.
const SCENARIO_LIMIT: Duration = Duration::from_secs(300);

#[derive(Clone)]
enum Cell {
    Pass,
    Fail(String),
    Skip(String),
    Missing,
}

impl Cell {
    fn label(&self) -> &'static str {
        match self {
            Cell::Pass => "PASS",
            Cell::Fail(_) => "FAIL",
            Cell::Skip(_) => "SKIP",
            Cell::Missing => "missing",
        }
    }
}

/// Runs one scenario or probe in its own task, so that a panic is a failure too.
async fn run_one<F>(fut: F) -> Cell
where
    F: std::future::Future<Output = Outcome<()>> + Send + 'static,
{
    match tokio::time::timeout(SCENARIO_LIMIT, tokio::spawn(fut)).await {
        Ok(Ok(Ok(()))) => Cell::Pass,
        Ok(Ok(Err(e))) => Cell::Fail(e),
        Ok(Err(e)) => Cell::Fail(format!("panicked: {e}")),
        Err(_) => Cell::Fail(format!("did not finish within {SCENARIO_LIMIT:?}")),
    }
}

fn languages(cli: &Cli) -> (Vec<String>, bool) {
    if let Some(list) = &cli.lang {
        return (list.clone(), true);
    }
    let mut langs: Vec<String> = manifest::KNOWN.iter().map(|s| s.to_string()).collect();
    if let Ok(dir) = std::fs::read_dir(cli.repo.join("spec/conformance/langs")) {
        let mut more: Vec<String> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_owned)
            })
            .filter(|l| !langs.contains(l))
            .collect();
        more.sort();
        langs.extend(more);
    }
    (langs, false)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let repo = match cli.repo.canonicalize() {
        Ok(r) if r.join("spec/conformance").is_dir() => r,
        _ => {
            eprintln!(
                "vyx-conformance: {} is not the repository root (no spec/conformance)",
                cli.repo.display()
            );
            return ExitCode::from(2);
        }
    };
    let gateway_bin = cli
        .gateway
        .clone()
        .unwrap_or_else(|| manifest::target_dir(&repo).join("release/vyx"));
    if !gateway_bin.exists() {
        eprintln!(
            "vyx-conformance: no gateway at {}; build it with: cargo build --release -p vyx-gateway",
            gateway_bin.display()
        );
        return ExitCode::from(2);
    }
    let (langs, explicit) = languages(&cli);
    let only = cli.only.as_deref().map(str::to_lowercase);
    let selected = |name: &str| {
        only.as_deref()
            .is_none_or(|o| name.to_lowercase().contains(o))
    };

    let mut columns: Vec<(String, Language)> = langs
        .iter()
        .map(|l| (l.clone(), manifest::load(&repo, l)))
        .collect();
    let scenarios: Vec<_> = scenarios::all()
        .into_iter()
        .filter(|s| selected(s.name))
        .collect();
    let worker_probes: Vec<_> = if cli.no_worker_probes {
        Vec::new()
    } else {
        worker_probes::all(&repo)
            .into_iter()
            .filter(|p| selected(&p.name))
            .collect()
    };
    if !scenarios.is_empty() || !worker_probes.is_empty() {
        let timeout = Duration::from_secs(cli.worker_start_timeout);
        for (lang, language) in &mut columns {
            if let Language::Ready(worker, _) = language {
                let t = Instant::now();
                let id = format!("conformance:{lang}");
                let started = worker_probes::preflight(worker, &id, timeout).await;
                println!(
                    "[{lang}] the worker starts ... {} ({:.1}s)",
                    if started.is_ok() { "ok" } else { "FAIL" },
                    t.elapsed().as_secs_f64()
                );
                if let Err(why) = started {
                    *language = Language::Broken(why);
                }
            }
        }
    }

    let started = Instant::now();
    let mut rows: Vec<(String, Vec<Cell>)> = Vec::new();
    for scenario in &scenarios {
        let run = scenario.run;
        let cells = run_row(scenario.name, &columns, &gateway_bin, &|ctx| run(ctx)).await;
        rows.push((scenario.name.to_owned(), cells));
    }
    let mut worker_rows: Vec<(String, Vec<Cell>)> = Vec::new();
    for probe in worker_probes {
        let cells = run_row(&probe.name, &columns, &gateway_bin, &*probe.run).await;
        worker_rows.push((probe.name, cells));
    }

    let mut probe_rows: Vec<(&'static str, Cell)> = Vec::new();
    if !cli.no_probes {
        let probes: Vec<_> = probes::all()
            .into_iter()
            .filter(|p| selected(p.name))
            .collect();
        if !probes.is_empty() {
            probe_rows = run_probes(&gateway_bin, probes).await;
        }
    }

    // The matrix.
    let names = rows
        .iter()
        .chain(&worker_rows)
        .map(|r| r.0.as_str())
        .chain(probe_rows.iter().map(|r| r.0));
    let width = names.map(str::len).max().unwrap_or(8).max(8) + 2;
    for (title, rows) in [("scenario", &rows), ("worker probe", &worker_rows)] {
        if rows.is_empty() {
            continue;
        }
        println!();
        print!("{title:width$}");
        for (lang, _) in &columns {
            print!("{lang:9}");
        }
        println!();
        for (name, cells) in rows {
            print!("{name:width$}");
            for cell in cells {
                print!("{:9}", cell.label());
            }
            println!();
        }
    }
    if !probe_rows.is_empty() {
        println!();
        println!("{:width$}gateway", "protocol probe");
        for (name, cell) in &probe_rows {
            println!("{name:width$}{}", cell.label());
        }
    }

    // Why: failures, skips, missing columns.
    let mut passed = 0;
    let mut failed = 0;
    let mut skipped = 0;
    let mut notes = Vec::new();
    let cells = rows.iter().chain(&worker_rows).flat_map(|(name, cells)| {
        cells
            .iter()
            .zip(&columns)
            .map(move |(c, (lang, _))| (name.as_str(), lang.as_str(), c))
    });
    let probe_cells = probe_rows.iter().map(|(n, c)| (*n, "gateway", c));
    for (name, lang, cell) in cells.chain(probe_cells) {
        match cell {
            Cell::Pass => passed += 1,
            Cell::Fail(why) => {
                failed += 1;
                notes.push(format!("FAIL [{lang}] {name}: {why}"));
            }
            Cell::Skip(why) => {
                skipped += 1;
                notes.push(format!("SKIP [{lang}] {name}: {why}"));
            }
            Cell::Missing => {}
        }
    }
    let mut missing_asked = false;
    for (lang, language) in &columns {
        if let Language::Missing(why) = language {
            notes.push(format!("missing [{lang}]: {why}"));
            missing_asked |= explicit;
        }
    }
    if !notes.is_empty() {
        println!();
        for n in &notes {
            println!("{n}");
        }
    }
    println!();
    println!(
        "conformance: {:.0}s, {skipped} skipped{}",
        started.elapsed().as_secs_f64(),
        if missing_asked {
            "; a language asked for with --lang has no SDK"
        } else {
            ""
        }
    );
    println!("{passed} passed, {failed} failed");
    if failed > 0 || missing_asked {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

type RowFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Outcome<()>> + Send>>;

/// Runs one row (a scenario or a worker probe) in every column.
async fn run_row(
    name: &str,
    columns: &[(String, Language)],
    gateway_bin: &std::path::Path,
    run: &(dyn Fn(scenarios::Ctx) -> RowFuture + Send + Sync),
) -> Vec<Cell> {
    let mut cells = Vec::new();
    for (lang, language) in columns {
        let cell = match language {
            Language::Missing(_) => Cell::Missing,
            Language::Broken(why) => Cell::Fail(why.clone()),
            Language::Ready(_, skips) if skips.contains_key(name) => {
                Cell::Skip(skips[name].clone())
            }
            Language::Ready(worker, _) => {
                let ctx = scenarios::Ctx {
                    lang: lang.clone(),
                    gateway_bin: gateway_bin.to_path_buf(),
                    worker: worker.clone(),
                };
                let t = Instant::now();
                let cell = run_one(run(ctx)).await;
                println!(
                    "[{lang}] {name} ... {} ({:.1}s)",
                    cell.label(),
                    t.elapsed().as_secs_f64()
                );
                cell
            }
        };
        cells.push(cell);
    }
    cells
}

async fn run_probes(
    gateway_bin: &std::path::Path,
    probes: Vec<probes::Probe>,
) -> Vec<(&'static str, Cell)> {
    let setup = async {
        let config = probes::gateway_config();
        let gw = procs::Gateway::start(
            gateway_bin,
            scenarios::loopback(0),
            procs::GatewaySetup {
                config: Some(&config),
                ..Default::default()
            },
        )
        .await?;
        probes::Probes::start(gw).await
    };
    let shared = match setup.await {
        Ok(p) => std::sync::Arc::new(p),
        Err(e) => {
            return probes
                .iter()
                .map(|p| (p.name, Cell::Fail(format!("probe setup: {e}"))))
                .collect()
        }
    };
    let mut rows = Vec::new();
    for probe in probes {
        let t = Instant::now();
        let p = shared.clone();
        let run = probe.run;
        let cell = run_one(async move {
            run(&p).await?;
            p.others_served()
                .await
                .map_err(|e| format!("after the probe: {e}"))
        })
        .await;
        println!(
            "[gateway] {} ... {} ({:.1}s)",
            probe.name,
            cell.label(),
            t.elapsed().as_secs_f64()
        );
        rows.push((probe.name, cell));
    }
    rows
}
