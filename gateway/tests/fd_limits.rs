//! The `vyx` binary under a small open-files limit (issue 14, item 1): it raises the soft
//! limit to the hard one and logs both, and when accepts fail for want of descriptors it
//! backs off and logs once, with a count when it recovers, instead of 20 lines a second.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

use common::{listening_addr, WAIT};

/// Waits (bounded) until the gateway's stderr holds `needle`.
async fn wait_for_log(log: &Arc<Mutex<String>>, needle: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !log.lock().unwrap().contains(needle) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_soft_limit_is_raised_and_accept_failures_are_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vyx.yaml");
    // A cap above what the descriptors allow, so that accepts do fail.
    std::fs::write(
        &file,
        "listen: 127.0.0.1:0\ntimeouts: {header_read: 60s}\nlimits: {max_connections: 1000}\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vyx"));
    cmd.arg("--config")
        .arg(&file)
        .env("RUST_LOG", "info")
        .env_remove("VYX_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, stdout.next_line())
        .await
        .expect("the gateway started in time")
        .unwrap()
        .expect("a listening line");
    let addr = listening_addr(&line).expect("listening line");
    wait_for_log(&log, "open-files limit").await;
    {
        let text = log.lock().unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("open-files limit"))
            .unwrap();
        assert!(
            line.contains("soft_was=48") && line.contains("hard=64") && line.contains("now=64"),
            "{line}"
        );
    }

    // More idle sockets than descriptors: accepts start failing.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    wait_for_log(&log, "accept failed").await;
    // A request waiting in the backlog meanwhile ...
    let mut late = TcpStream::connect(addr).await.unwrap();
    late.write_all(b"GET /_vyx/health HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    // The descriptors stay used up for a while (the attack's length, not a wait for
    // anything): the old accept loop logged a line every 50 ms of it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // ... is served once the idle sockets go.
    drop(idle);
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, late.read_to_end(&mut answer))
        .await
        .expect("served in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    wait_for_log(&log, "accepting again after failed accepts").await;
    let text = log.lock().unwrap().clone();
    assert_eq!(
        text.lines().filter(|l| l.contains("accept failed")).count(),
        1,
        "{text}"
    );
    let recovered = text
        .lines()
        .find(|l| l.contains("accepting again"))
        .unwrap();
    let failures: u64 = recovered
        .split("failures=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {recovered}"));
    assert!(failures >= 3, "{recovered}");
    child.start_kill().unwrap();
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
}
