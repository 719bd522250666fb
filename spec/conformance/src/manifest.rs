//! Per-language manifests: `spec/conformance/langs/<language>.json` names the SDK's folder
//! and the command that starts the language's conformance worker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::procs::WorkerCommand;

/// The languages the project plans an SDK for: each gets a column, missing or not.
pub const KNOWN: &[&str] = &["rust", "node", "python", "go"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    language: String,
    /// The SDK's folder, relative to the repository root.
    sdk: String,
    /// The worker's program and arguments. `{repo}` is the repository root and `{target}`
    /// the cargo target directory (`CARGO_TARGET_DIR`, else `{repo}/target`).
    worker: Vec<String>,
    /// How to build the worker: shown when it is not there.
    build: String,
    /// Scenarios this language does not run yet, each with the reason: reported as SKIP,
    /// never as passing.
    #[serde(default)]
    skip: BTreeMap<String, String>,
}

/// What the runner can do with a language.
pub enum Language {
    /// The worker command, and the scenarios to skip (name → reason).
    Ready(WorkerCommand, BTreeMap<String, String>),
    /// No SDK yet: reported as missing, never as passing.
    Missing(String),
    /// The SDK is there but its worker cannot be started: every scenario fails.
    Broken(String),
}

pub fn target_dir(repo: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => repo.join(dir),
        None => repo.join("target"),
    }
}

fn expand(s: &str, repo: &Path, target: &Path) -> String {
    s.replace("{repo}", &repo.to_string_lossy())
        .replace("{target}", &target.to_string_lossy())
}

pub fn load(repo: &Path, lang: &str) -> Language {
    let path = repo
        .join("spec/conformance/langs")
        .join(format!("{lang}.json"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) => {
            return Language::Missing(format!("no manifest spec/conformance/langs/{lang}.json"))
        }
    };
    let m: Manifest = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => return Language::Broken(format!("{}: {e}", path.display())),
    };
    if m.language != lang {
        return Language::Broken(format!(
            "{} declares language {:?}",
            path.display(),
            m.language
        ));
    }
    if !repo.join(&m.sdk).is_dir() {
        return Language::Missing(format!("no SDK at {}/", m.sdk));
    }
    let target = target_dir(repo);
    let mut words = m.worker.iter().map(|w| expand(w, repo, &target));
    let Some(program) = words.next() else {
        return Language::Broken(format!("{}: empty worker command", path.display()));
    };
    let program = PathBuf::from(program);
    // A path must exist; a bare name (node, python3) is looked up on PATH when started.
    if program.components().count() > 1 && !program.exists() {
        return Language::Broken(format!(
            "worker {} not found; build it with: {}",
            program.display(),
            m.build
        ));
    }
    Language::Ready(
        WorkerCommand {
            program,
            args: words.collect(),
            cwd: repo.to_path_buf(),
            build: m.build,
        },
        m.skip,
    )
}
