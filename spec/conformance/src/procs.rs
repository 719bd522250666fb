//! The processes under test: the real `vyx` gateway and a language's conformance worker,
//! started with piped output, signalled, and killed when dropped (a failed scenario leaves
//! nothing running).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::check::{fail, Outcome};

/// Upper bound for any single wait: generous for a busy 2-core machine, finite so that a
/// bug fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

/// Lines a child wrote, as they come; waiters are woken on each line and at the end.
#[derive(Default)]
pub struct Lines {
    lines: Mutex<Vec<String>>,
    ended: Mutex<bool>,
    changed: Notify,
}

impl Lines {
    fn capture(out: impl AsyncRead + Unpin + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(out).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lines.lock().unwrap().push(line);
                sink.changed.notify_waiters();
            }
            *sink.ended.lock().unwrap() = true;
            sink.changed.notify_waiters();
        });
        lines
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The last `n` lines, for failure reports.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits, at most `timeout`, until the child has closed its end (after it exited, the
    /// reader may still be behind: a report read at once could miss the last lines).
    pub async fn wait_end(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.ended()).await;
    }

    /// Waits for a line at index `from` or later that `pred` accepts; returns its index and
    /// text.
    pub async fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Outcome<(usize, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let lines = self.lines.lock().unwrap();
                if let Some(i) = (from..lines.len()).find(|&i| pred(&lines[i])) {
                    return Ok((i, lines[i].clone()));
                }
            }
            if *self.ended.lock().unwrap() {
                return fail(format!("output ended without {what}"));
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return fail(format!("no {what} within {timeout:?}"));
            }
        }
    }

    /// Returns once the output has ended (for a worker: it exited, or closed its stdout).
    pub async fn ended(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if *self.ended.lock().unwrap() {
                return;
            }
            changed.await;
        }
    }
}

fn signal(child: &Child, sig: libc::c_int) -> Outcome<()> {
    let Some(pid) = child.id() else {
        return fail("process already reaped");
    };
    // SAFETY: kill(2) with a pid we spawned and still own (not reaped yet).
    if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
        return fail(format!(
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

async fn wait_exit(child: &mut Child, timeout: Duration) -> Outcome<ExitStatus> {
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => fail(format!("wait: {e}")),
        Err(_) => fail(format!("process still running after {timeout:?}")),
    }
}

/// The address in a gateway's `listening http://ADDR` (or `https://`) line.
fn listening_addr(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("listening ")?;
    rest.strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))
}

/// A `vyx` gateway process.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    /// Its `vyx.yaml`, removed with it.
    config: Option<PathBuf>,
}

/// How to start a gateway: where it listens, and its `vyx.yaml` if any.
#[derive(Default)]
pub struct GatewaySetup<'a> {
    /// The contents of a `vyx.yaml` for `--config`.
    pub config: Option<&'a str>,
    /// Extra environment (e.g. the variables the file's `token_env` names).
    pub env: &'a [(&'a str, String)],
}

impl Gateway {
    /// Starts `bin --listen ADDR` (port 0 for an ephemeral one) and reads the address from
    /// its `listening http://ADDR` line (`https://` when the file sets `tls:`).
    pub async fn start(
        bin: &Path,
        listen: SocketAddr,
        setup: GatewaySetup<'_>,
    ) -> Outcome<Gateway> {
        let mut cmd = Command::new(bin);
        cmd.arg("--listen").arg(listen.to_string());
        // One shard whatever the machine: the scenarios count a worker's connections, one
        // each. A WELCOME asking for more (§9.1) is the scripted probe "WELCOME connections 2".
        cmd.arg("--threads").arg("1");
        let config = match setup.config {
            Some(yaml) => {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let path = std::env::temp_dir().join(format!(
                    "vyx-conformance-{}-{}.yaml",
                    std::process::id(),
                    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                std::fs::write(&path, yaml)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                cmd.arg("--config").arg(&path);
                Some(path)
            }
            None => None,
        };
        for (k, v) in setup.env {
            cmd.env(k, v);
        }
        cmd.env_remove("VYX_LISTEN")
            .env_remove("VYX_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = cmd.spawn();
        let mut gateway = Gateway {
            child: spawned.map_err(|e| format!("cannot start {}: {e}", bin.display()))?,
            addr: listen,
            config,
        };
        let child = &mut gateway.child;
        let stdout = Lines::capture(child.stdout.take().expect("piped"));
        let stderr = Lines::capture(child.stderr.take().expect("piped"));
        let line = stdout
            .wait_for(0, WAIT, "'listening http://ADDR' line", |l| {
                listening_addr(l).is_some()
            })
            .await
            .map_err(|e| format!("gateway: {e}; stderr:\n{}", stderr.tail(20)))?
            .1;
        gateway.addr = listening_addr(&line)
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("gateway printed {line:?}: {e}"))?;
        Ok(gateway)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn signal(&self, sig: libc::c_int) -> Outcome<()> {
        signal(&self.child, sig)
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> Outcome<ExitStatus> {
        wait_exit(&mut self.child, timeout).await
    }

    /// SIGKILL, and waits until the process is gone (its port is free again).
    pub async fn kill(mut self) -> Outcome<()> {
        self.child
            .start_kill()
            .map_err(|e| format!("kill gateway: {e}"))?;
        self.wait_exit(WAIT).await.map(|_| ())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // A stopped process dies of SIGKILL too.
        let _ = self.child.start_kill();
        if let Some(path) = &self.config {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How to start one language's conformance worker.
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The manifest's build command, named when the worker cannot start.
    pub build: String,
}

/// A conformance worker process.
pub struct Worker {
    child: Child,
    pub stdout: Arc<Lines>,
    pub stderr: Arc<Lines>,
}

impl Worker {
    /// Starts the worker with the contract's environment; `extra` adds or overrides
    /// variables.
    pub fn spawn(
        command: &WorkerCommand,
        connect: &str,
        worker_id: &str,
        extra: &[(&str, String)],
    ) -> Outcome<Worker> {
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .current_dir(&command.cwd)
            .env("VYX_CONNECT", connect)
            .env("VYX_WORKER_ID", worker_id)
            .env("VYX_TOKEN", "conformance-dev-token")
            .env("VYX_CONFORMANCE_MAX_CONCURRENCY", "1024")
            .env_remove("VYX_CA_FILE")
            .env_remove("VYX_CONFORMANCE_REPLICA")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", command.program.display()))?;
        let stdout = Lines::capture(child.stdout.take().expect("piped"));
        let stderr = Lines::capture(child.stderr.take().expect("piped"));
        Ok(Worker {
            child,
            stdout,
            stderr,
        })
    }

    /// Waits for a `state ...` line (index `from` on) starting with `prefix`; returns its
    /// index and text.
    pub async fn wait_state(
        &self,
        from: usize,
        prefix: &str,
        timeout: Duration,
    ) -> Outcome<(usize, String)> {
        let want = format!("state {prefix}");
        self.stdout
            .wait_for(from, timeout, &format!("'{want}' line"), |l| {
                l.starts_with(&want)
            })
            .await
            .map_err(|e| format!("worker: {e}; stderr:\n{}", self.stderr.tail(20)))
    }

    /// Waits for `state connected ID`; returns the connection id.
    pub async fn connected(&self, from: usize) -> Outcome<String> {
        let (_, line) = self.wait_state(from, "connected ", WAIT).await?;
        Ok(line["state connected ".len()..].to_owned())
    }

    pub fn signal(&self, sig: libc::c_int) -> Outcome<()> {
        signal(&self.child, sig)
    }

    /// Waits for the worker to exit, then for its output to be read to the end: the readers
    /// run behind the process, and a report read at once could miss its last lines.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Outcome<ExitStatus> {
        let status = wait_exit(&mut self.child, timeout).await?;
        self.stdout.wait_end(WAIT).await;
        self.stderr.wait_end(WAIT).await;
        Ok(status)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
