//! Local mode: the gateway starts each `mode: local` worker's replicas, restarts them when
//! they exit (with the SDKs' backoff schedule, giving up after too many fast failures), and
//! stops them on shutdown: DRAIN (sent by the gateway), then SIGTERM, then SIGKILL after the
//! grace period. Each child runs in its own process group with a parent-death signal, so
//! nothing outlives the gateway, even when the gateway itself is killed.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};
use vyx_core::backoff::Backoff;

use crate::config::{LocalWorker, RestartWhen};

/// The running replicas of every local worker.
pub struct Supervisor {
    /// `Some(grace)` once the replicas must stop.
    stop: watch::Sender<Option<Duration>>,
    replicas: Vec<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts every replica of `workers`; each child gets `VYX_CONNECT=connect`,
    /// `VYX_WORKER_ID`, `VYX_TOKEN` and `VYX_REPLICA` (1-based) in its environment.
    pub fn start(workers: &[LocalWorker], connect: &str) -> Supervisor {
        let (stop, stop_rx) = watch::channel(None);
        let mut replicas = Vec::new();
        for w in workers {
            let w = Arc::new(w.clone());
            for replica in 1..=w.replicas {
                replicas.push(tokio::spawn(supervise(
                    w.clone(),
                    replica,
                    connect.to_string(),
                    stop_rx.clone(),
                )));
            }
        }
        Supervisor { stop, replicas }
    }

    /// Stops every child (SIGTERM to its process group, SIGKILL after `grace`) and waits
    /// until each is reaped.
    pub async fn stop(self, grace: Duration) {
        if self.replicas.is_empty() {
            return;
        }
        info!(
            replicas = self.replicas.len(),
            "stopping local workers: SIGTERM, then SIGKILL after {grace:?}"
        );
        let _ = self.stop.send(Some(grace));
        for r in self.replicas {
            let _ = r.await;
        }
    }
}

async fn supervise(
    w: Arc<LocalWorker>,
    replica: u32,
    connect: String,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let name = format!("{}#{replica}", w.id);
    let mut backoff = Backoff::new();
    let mut fast_failures = 0u32;
    loop {
        let started = Instant::now();
        let outcome = match spawn(&w, replica, &connect, &name) {
            Ok(mut child) => {
                let pid = child.id();
                info!(worker_id = %w.id, replica, pid, program = %w.program.display(), "local worker started");
                tokio::select! {
                    status = child.wait() => status.map_err(|e| e.to_string()),
                    grace = stopped(&mut stop) => {
                        terminate(&mut child, &name, grace).await;
                        return;
                    }
                }
            }
            Err(e) => Err(format!("cannot start {}: {e}", w.program.display())),
        };
        let uptime = started.elapsed();
        let exited_ok = matches!(&outcome, Ok(s) if s.success());
        let how = match &outcome {
            Ok(s) => describe(s),
            Err(e) => e.clone(),
        };
        match w.restart.when {
            RestartWhen::Never => {
                warn!(worker_id = %w.id, replica, "local worker {name} {how}; not restarted (restart.policy: never)");
                return;
            }
            RestartWhen::OnFailure if exited_ok => {
                info!(worker_id = %w.id, replica, "local worker {name} {how}; not restarted (restart.policy: on-failure)");
                return;
            }
            _ => {}
        }
        if uptime < w.restart.fast_failure {
            fast_failures += 1;
        } else {
            fast_failures = 0;
            backoff.reset();
        }
        if fast_failures >= w.restart.max_fast_failures {
            error!(
                worker_id = %w.id,
                replica,
                "local worker {name} failed {fast_failures} times in a row within {:?} of starting (last: {how}); giving up on it (restart.max_fast_failures: {})",
                w.restart.fast_failure,
                w.restart.max_fast_failures
            );
            return;
        }
        let delay = backoff.next_delay();
        warn!(worker_id = %w.id, replica, delay_ms = delay.as_millis() as u64, "local worker {name} {how} after {uptime:?}; restarting");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Resolves with the grace period once the replicas must stop (zero if the supervisor is
/// gone without saying).
async fn stopped(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    match stop.wait_for(Option::is_some).await {
        Ok(grace) => grace.unwrap_or_default(),
        Err(_) => Duration::ZERO,
    }
}

fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "exited".into(),
    }
}

fn spawn(w: &LocalWorker, replica: u32, connect: &str, name: &str) -> std::io::Result<Child> {
    let mut cmd = Command::new(&w.program);
    cmd.args(&w.args)
        .current_dir(&w.cwd)
        .envs(w.env.iter().map(|(k, v)| (k, v)))
        .env("VYX_CONNECT", connect)
        .env("VYX_WORKER_ID", &w.id)
        .env("VYX_TOKEN", w.token.expose())
        .env("VYX_REPLICA", replica.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a terminal's Ctrl-C reaches the gateway only, which stops the
        // children in order, and a stop signal reaches the child's own children too.
        .process_group(0)
        .kill_on_drop(true);
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // SIGKILL when the gateway dies, however it dies. The signal follows the thread
            // that forked; that is a runtime worker thread, which lives as long as the
            // gateway's runtime.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The gateway died between fork and prctl: do not start an orphan.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("the gateway exited"));
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, name.to_string(), false));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, name.to_string(), true));
    }
    Ok(child)
}

/// Copies a child's output into the gateway's log, one line at a time, prefixed with the
/// worker id and replica number. Lines longer than 16 KiB are split.
async fn forward_lines(pipe: impl AsyncRead + Unpin, name: String, stderr: bool) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(16 << 10)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                if stderr {
                    info!(target: "vyx::local", "{name} | {text}");
                } else {
                    info!(target: "vyx::local", "{name} > {text}");
                }
            }
        }
    }
}

/// SIGTERM to the child's process group, SIGKILL after `grace`; returns once reaped.
async fn terminate(child: &mut Child, name: &str, grace: Duration) {
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    signal_group(pid, libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => {
            let how = status.map_or_else(|e| e.to_string(), |s| describe(&s));
            info!("local worker {name} stopped ({how})");
        }
        Err(_) => {
            warn!("local worker {name} still running {grace:?} after SIGTERM; sending SIGKILL");
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
        }
    }
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: killpg takes plain integers; a group that is gone gives ESRCH, ignored.
    unsafe {
        libc::killpg(pgid as libc::pid_t, signal);
    }
}
