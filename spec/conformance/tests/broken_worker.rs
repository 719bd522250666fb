//! The runner against workers that cannot start (issue 17 item 11: a Node column without its
//! built addon kept the runner waiting 20 minutes without a word). A worker that exits at
//! once, and one that runs but never dials, fail every row of their column with the
//! manifest's build command in the reason, and the runner ends.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A repository root holding only what the runner reads: two language manifests, their SDK
/// folders, and the vectors the worker probes are made of.
fn fake_repo(root: &Path) {
    let langs = root.join("spec/conformance/langs");
    std::fs::create_dir_all(&langs).unwrap();
    let manifest = |lang: &str, worker: &[&str], build: &str| {
        let m = serde_json::json!({
            "language": lang,
            "sdk": format!("sdk-{lang}"),
            "worker": worker,
            "build": build,
        });
        std::fs::write(langs.join(format!("{lang}.json")), m.to_string()).unwrap();
        std::fs::create_dir_all(root.join(format!("sdk-{lang}"))).unwrap();
    };
    manifest(
        "exits",
        &["sh", "-c", "echo 'cannot load the addon' >&2; exit 3"],
        "make exits-worker",
    );
    manifest("silent", &["sleep", "600"], "make silent-worker");
    let vectors = root.join("spec/vectors");
    std::fs::create_dir_all(&vectors).unwrap();
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors");
    for f in ["streams.json", "retry.json"] {
        std::fs::copy(ours.join(f), vectors.join(f)).unwrap();
    }
}

#[test]
fn workers_that_exit_or_never_dial_fail_their_column_with_the_build_hint() {
    let root = std::env::temp_dir().join(format!("vyx-conformance-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    fake_repo(&root);
    // The gateway binary only has to exist: no row of a column that cannot start runs it,
    // and the protocol probes (which do) are off.
    let gateway = std::env::current_exe().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vyx-conformance"))
        .arg("--repo")
        .arg(&root)
        .args(["--lang", "exits,silent", "--no-probes"])
        .arg("--gateway")
        .arg(&gateway)
        .args(["--worker-start-timeout", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A bound on a hang, not a speed target: on main this run takes over 20 minutes.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the runner did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&root);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");

    let fails = |lang: &str| -> Vec<&str> {
        let tag = format!("FAIL [{lang}] ");
        // A reason may span lines (stderr); each FAIL note starts one.
        stdout.split(&tag).skip(1).collect()
    };
    let exits = fails("exits");
    let silent = fails("silent");
    // Every scenario and every worker probe (over 60 rows) failed in both columns.
    assert!(exits.len() > 60, "{} rows failed:\n{stdout}", exits.len());
    assert_eq!(exits.len(), silent.len(), "{stdout}");
    for note in &exits {
        assert!(note.contains("make exits-worker"), "{note}");
        assert!(note.contains("exited (exit status: 3)"), "{note}");
        assert!(note.contains("cannot load the addon"), "{note}");
    }
    for note in &silent {
        assert!(note.contains("make silent-worker"), "{note}");
        assert!(note.contains("did not connect within 2s"), "{note}");
    }
    assert!(
        stdout.contains("[exits] the worker starts ... FAIL"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("0 passed, {} failed", exits.len() * 2)));
}
