//! Local mode through the real `vyx` binary: replicas started and serving, a killed child
//! restarted, a crash-looping child given up on, and no child left behind when the gateway
//! gets SIGTERM or SIGKILL (checked by pid, not by waiting a while).
//!
//! The local worker is this test binary itself, started by the gateway with
//! `VYX_TEST_LOCAL_WORKER=1` in its environment; hence `harness = false` and the small
//! runner in `main`.

mod common;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client, get, listening_addr, wait_for_workers, WAIT};

const VYX: &str = env!("CARGO_BIN_EXE_vyx");

fn main() -> ExitCode {
    if std::env::var_os("VYX_TEST_LOCAL_WORKER").is_some() {
        return local_worker();
    }
    type Test = fn() -> Pin<Box<dyn Future<Output = ()>>>;
    macro_rules! tests {
        ($($name:ident),* $(,)?) => {
            [$((stringify!($name), (|| Box::pin($name())) as Test)),*]
        };
    }
    let tests = tests![
        two_local_replicas_serve,
        a_killed_child_is_restarted,
        a_crash_looping_child_is_given_up_on_with_an_error,
        sigterm_drains_and_leaves_no_child,
        sigkill_leaves_no_child,
        tokens_never_reach_the_log_or_the_listing,
        local_workers_use_a_separate_registration_listener,
        local_workers_register_over_plain_loopback_beside_tls_listeners,
    ];
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<_> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, test) in selected {
        let outcome = std::panic::catch_unwind(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(test())
        });
        match outcome {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    let result = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {result}. {passed} passed; {} failed; 0 ignored; 0 measured; 0 filtered out\n",
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The worker the gateway starts: `GET /who` answers its pid after a short pause (so that
/// concurrent requests spread over replicas); with `VYX_TEST_CRASH` set it exits at once.
fn local_worker() -> ExitCode {
    if std::env::var_os("VYX_TEST_CRASH").is_some() {
        eprintln!("crashing on purpose");
        return ExitCode::from(3);
    }
    println!("test worker up, pid {}", std::process::id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let worker = vyx::Worker::builder()
            .get("/who", |_req: vyx::Request| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                vyx::Json(serde_json::json!({ "pid": std::process::id() }))
            })
            .build()
            .expect("worker settings from VYX_* variables");
        worker.start().await.expect("worker ran");
    });
    ExitCode::SUCCESS
}

/// A `vyx --config FILE --listen 127.0.0.1:0` process, its log collected; killed (with its
/// children's groups) on drop, so a failing test leaves nothing behind.
struct Gateway {
    child: Child,
    addr: std::net::SocketAddr,
    log: Arc<Mutex<String>>,
    seen_children: Vec<u32>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// A gateway whose one local worker, `test:local`, is this binary; `worker` adds keys to
    /// its entry, `env` entries to its environment.
    fn start(worker: &str, env: &str) -> Gateway {
        Gateway::start_with("", worker, env, &[])
    }

    /// [`Gateway::start`] with more top-level keys, and variables in the gateway's own
    /// environment.
    fn start_with(top: &str, worker: &str, env: &str, gateway_env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let yaml = format!(
            "{top}timeouts: {{drain_grace: 5s}}\nworkers:\n  - id: test:local\n    command: {exe}\n    env: {{VYX_TEST_LOCAL_WORKER: '1'{env}}}\n{worker}",
            exe = exe.display()
        );
        let file = dir.path().join("vyx.yaml");
        std::fs::write(&file, yaml).unwrap();
        let mut child = Command::new(VYX)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&file)
            .env("RUST_LOG", "info")
            .envs(gateway_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = listening_addr(&first).unwrap_or_else(|| {
            panic!(
                "expected the listening line, got {first:?}: {}",
                log.lock().unwrap()
            )
        });
        Gateway {
            child,
            addr,
            log,
            seen_children: Vec::new(),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `text`.
    async fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The gateway's live child processes (every thread's children, from /proc).
    fn children(&mut self) -> Vec<u32> {
        let pid = self.child.id();
        let mut out = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let text =
                    std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        out.retain(|p| alive(*p));
        out.sort();
        for p in &out {
            if !self.seen_children.contains(p) {
                self.seen_children.push(*p);
            }
        }
        out
    }

    async fn wait_children(&mut self, n: usize) -> Vec<u32> {
        let deadline = Instant::now() + WAIT;
        loop {
            let c = self.children();
            if c.len() == n {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} children, have {c:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill with plain integers.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Waits for the gateway process to exit; its exit status.
    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gateway still running:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in &self.seen_children {
            // SAFETY: killpg with plain integers; a group that is gone gives ESRCH.
            unsafe { libc::killpg(*p as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Whether any live process is in the process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            return false;
        };
        let Ok(stat) =
            std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
        else {
            return false;
        };
        // Fields after the name: state, ppid, pgrp.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .collect();
        fields.len() > 2 && fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X")
    })
}

async fn wait_gone(groups: &[u32]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left: Vec<u32> = groups.iter().copied().filter(|g| group_alive(*g)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left in groups {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pids that answer 8 concurrent `GET /who`.
async fn pids_serving(gw: &Gateway) -> Vec<u64> {
    let c = client();
    let url = gw.url("/who");
    let answers = futures_util::future::join_all((0..8).map(|_| get(&c, &url))).await;
    let mut pids: Vec<u64> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{}", String::from_utf8_lossy(body));
            serde_json::from_slice::<serde_json::Value>(body).unwrap()["pid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    pids.sort();
    pids.dedup();
    pids
}

async fn two_local_replicas_serve() {
    let mut gw = Gateway::start("    replicas: 2\n", "");
    wait_for_workers(gw.addr, "test:local", 2).await;
    let children = gw.wait_children(2).await;
    let pids = pids_serving(&gw).await;
    assert_eq!(
        pids,
        children.iter().map(|p| *p as u64).collect::<Vec<_>>(),
        "both replicas served"
    );
    // Each child's output is in the gateway's log, prefixed with its id and replica.
    gw.wait_log("test:local#1 > test worker up").await;
    gw.wait_log("test:local#2 > test worker up").await;
    // Each child leads its own process group.
    for p in children {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
        let pgrp = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_string();
        assert_eq!(pgrp, p.to_string());
    }
}

async fn a_killed_child_is_restarted() {
    let mut gw = Gateway::start("    replicas: 2\n", "");
    wait_for_workers(gw.addr, "test:local", 2).await;
    let before = gw.wait_children(2).await;
    // SAFETY: kill with plain integers.
    unsafe { libc::kill(before[0] as libc::pid_t, libc::SIGKILL) };
    gw.wait_log("was killed by signal 9").await;
    gw.wait_log("restarting").await;
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let c = gw.children();
        if c.len() == 2 && !c.contains(&before[0]) {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no replacement: {c:?}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(after.contains(&before[1]), "the other replica kept running");
    wait_for_workers(gw.addr, "test:local", 2).await;
    let pids = pids_serving(&gw).await;
    assert!(!pids.contains(&(before[0] as u64)));
    assert!(
        pids.iter().all(|p| after.contains(&(*p as u32))),
        "{pids:?} {after:?}"
    );
}

async fn a_crash_looping_child_is_given_up_on_with_an_error() {
    let mut gw = Gateway::start(
        "    restart: {max_fast_failures: 3, fast_failure: 30s}\n",
        ", VYX_TEST_CRASH: '1'",
    );
    gw.wait_log("giving up on it").await;
    let log = gw.log();
    assert!(log.contains("ERROR"), "an error, not a warning:\n{log}");
    assert!(log.contains("failed 3 times in a row"), "{log}");
    assert!(log.contains("exited with status 3"), "{log}");
    assert_eq!(log.matches("local worker started").count(), 3, "{log}");
    assert!(gw.children().is_empty());
    // The gateway itself keeps serving.
    assert_eq!(get(&client(), &gw.url("/_vyx/health")).await.0, 200);
}

async fn sigterm_drains_and_leaves_no_child() {
    let mut gw = Gateway::start("    replicas: 2\n", "");
    wait_for_workers(gw.addr, "test:local", 2).await;
    let children = gw.wait_children(2).await;
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit().await;
    assert!(status.success(), "{status:?}\n{}", gw.log());
    let log = gw.log();
    let drain = log.find("draining workers").expect("DRAIN first");
    let term = log.find("stopping local workers").expect("then SIGTERM");
    assert!(drain < term, "{log}");
    // Each replica answered the gateway's close: a complete closing handshake, no reset.
    for c in ["c1", "c2"] {
        assert!(
            log.contains(&format!(
                "connection={c} reason=drained, closed cleanly: 1000 (normal)"
            )),
            "{log}"
        );
    }
    for r in ["test:local#1", "test:local#2"] {
        assert!(
            log.contains(&format!("local worker {r} stopped (exited with status 0)")),
            "{log}"
        );
    }
    wait_gone(&children).await;
}

async fn sigkill_leaves_no_child() {
    let mut gw = Gateway::start("    replicas: 2\n", "");
    wait_for_workers(gw.addr, "test:local", 2).await;
    let children = gw.wait_children(2).await;
    gw.signal(libc::SIGKILL);
    let status = gw.wait_exit().await;
    assert!(!status.success());
    wait_gone(&children).await;
}

async fn local_workers_use_a_separate_registration_listener() {
    let mut gw = Gateway::start_with(
        "register: {path: /workers/join, listen: 127.0.0.1:0}\n",
        "",
        "",
        &[],
    );
    // The child found the registration listener from VYX_CONNECT and serves.
    wait_for_workers(gw.addr, "test:local", 1).await;
    gw.wait_children(1).await;
    assert_eq!(pids_serving(&gw).await.len(), 1);
    let log = gw.log();
    let register = log
        .split("workers register at ws://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("registration address in the log:\n{log}"));
    assert!(
        register.ends_with("/workers/join") && !register.contains(&gw.addr.to_string()),
        "{register}"
    );
    // The HTTP listener takes no registrations then: an upgrade there is not even checked
    // for credentials (that would be 401), it is no route.
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
    let mut req = format!("ws://{}/workers/join", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "vyx.1".parse().unwrap());
    req.headers_mut()
        .insert("x-vyx-worker-id", "test:local".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected 404, got {other:?}"),
    }
}

/// With `tls:`, the child (given no CA for the gateway's certificate) still registers: on the
/// plain loopback listener the gateway keeps for its local workers.
async fn local_workers_register_over_plain_loopback_beside_tls_listeners() {
    let certs = tempfile::tempdir().unwrap();
    let self_signed = rcgen::generate_simple_self_signed(vec!["gw.example".to_string()]).unwrap();
    let (cert, key) = (certs.path().join("gw.pem"), certs.path().join("gw.key"));
    std::fs::write(&cert, self_signed.cert.pem()).unwrap();
    std::fs::write(&key, self_signed.signing_key.serialize_pem()).unwrap();
    let top = format!(
        "tls: {{cert: {}, key: {}}}\n",
        cert.display(),
        key.display()
    );
    let mut gw = Gateway::start_with(&top, "", "", &[]);
    gw.wait_log("worker registered").await;
    gw.wait_children(1).await;
    let log = gw.log();
    assert!(
        log.contains(&format!("workers register at wss://{}", gw.addr)),
        "{log}"
    );
}

/// A remote entry whose token comes from the gateway's environment (as a conformance
/// runner sets it up), a local one with a per-run token: neither token is ever logged or
/// listed, whatever the workers get wrong.
async fn tokens_never_reach_the_log_or_the_listing() {
    const REMOTE: &str = "remote-token-4f9a";
    let mut gw = Gateway::start_with(
        "",
        "  - id: remote:one\n    mode: remote\n    token_env: VYX_TEST_REMOTE_TOKEN\n",
        "",
        &[("VYX_TEST_REMOTE_TOKEN", REMOTE)],
    );
    wait_for_workers(gw.addr, "test:local", 1).await;
    let [child] = gw.wait_children(1).await[..] else {
        unreachable!()
    };
    let environ = std::fs::read(format!("/proc/{child}/environ")).unwrap();
    let local_token = environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"VYX_TOKEN="))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .expect("the child got VYX_TOKEN");
    assert!(
        local_token.len() >= 32,
        "a fresh random token: {local_token}"
    );
    // The local token is bound to the local id, the remote one to the remote id.
    assert_eq!(
        common::try_upgrade(gw.addr, "remote:one", Some(&local_token))
            .await
            .unwrap_err()
            .0,
        403
    );
    assert_eq!(
        common::try_upgrade(gw.addr, "test:local", Some(REMOTE))
            .await
            .unwrap_err()
            .0,
        403
    );
    assert_eq!(
        common::try_upgrade(gw.addr, "remote:one", Some("wrong"))
            .await
            .unwrap_err()
            .0,
        403
    );
    let ok = common::try_upgrade(gw.addr, "remote:one", Some(REMOTE)).await;
    assert!(
        ok.is_ok(),
        "the right token from the environment is admitted"
    );
    gw.wait_log("token_of_another_id").await;
    let listing = get(&client(), &gw.url("/_vyx/workers")).await.1;
    let listing = String::from_utf8_lossy(&listing);
    let log = gw.log();
    for secret in [REMOTE, local_token.as_str()] {
        assert!(!log.contains(secret), "token in the log:\n{log}");
        assert!(!listing.contains(secret), "token in the listing: {listing}");
    }
}
