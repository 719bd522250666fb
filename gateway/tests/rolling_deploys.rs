//! Rolling deploys under load, in the topology of `deploy/kubernetes/` built from network
//! namespaces (issue 19, items 3 and 5). Needs root (`ip netns`) and HAProxy
//! (`scripts/setup-netns` installs it from Debian).
//!
//! ```text
//!  cl (10.213.0.30)  the test and its load ──▶ lb (10.213.0.2:80) HAProxy, TCP mode,
//!                                                checks /_vyx/health?ready on each gateway
//!                                             ├─▶ gw1 (10.213.0.11:8080) vyx, then gw3 (.13)
//!                                             └─▶ gw2 (10.213.0.12:8080) vyx, then gw4 (.14)
//!  wk (10.213.0.20)  Rust and Go workers, two replicas each, dialling
//!                    ws://vyx-gateways:8080: a session to each gateway
//! ```
//!
//! One bridge in a namespace of its own (`net`) joins them, as a cluster network does. A
//! gateway is replaced as a Deployment replaces a Pod: by a new one at a new address. The
//! balancer knows all four addresses and sends connections to those whose readiness check
//! passes, as a Service's endpoints are its ready Pods. `vyx-gateways` resolves to the
//! gateways that exist, ready or not, as a headless Service's name does with
//! `publishNotReadyAddresses`: the workers' namespace has its own `/etc/hosts`
//! (`/etc/netns/NAME/hosts`, which `ip netns exec` mounts over `/etc/hosts`), rewritten as
//! gateways come and go. The balancer is HAProxy rather than
//! iptables `statistic` DNAT as kube-proxy writes it: its health check is the balancer's own
//! reading of readiness, as a cloud load balancer's, where DNAT would need the test to play
//! kube-proxy's prober; and it needs no netfilter modules in the kernel.
//!
//! The Rust workers are this test binary run again with `VYX_ROLLING_WORKER` set (only
//! `rolling_worker_process` then does anything); the Go workers are the Go conformance
//! worker, built by the test.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use vyx_bench::mixload::{self, Config, Kind, Target};

/// The namespaces' subnet; private to them, so any value works on any host.
const NET: &str = "10.213.0";
const BALANCER: &str = "10.213.0.2:80";
/// The gateway Pods' addresses: gw1 and gw2 at first, replaced by gw3 and gw4.
const GATEWAYS: [&str; 4] = ["10.213.0.11", "10.213.0.12", "10.213.0.13", "10.213.0.14"];
const GATEWAY_PORT: u16 = 8080;
/// The name every worker dials; it resolves to every gateway there is.
const HEADLESS: &str = "vyx-gateways";
const RUST_ID: &str = "rust:mix";
const GO_ID: &str = "go:conformance";
const REPLICAS: usize = 2;

/// The gateways' `vyx.yaml`: the timeouts of a rolling deploy (see `deploy/ROLLING.md`).
const VYX_YAML: &str = "\
listen: 0.0.0.0:8080
timeouts:
  readiness_delay: 2s   # > the balancer's inter x fall (300ms x 2) and a check's time
  drain_grace: 20s
access_log: {mode: off}
workers:
  - {id: \"rust:mix\", mode: remote, token_env: VYX_TOKEN_RUST}
  - {id: \"go:conformance\", mode: remote, token_env: VYX_TOKEN_GO}
";

/// HAProxy in TCP mode in front of the four gateway addresses, checking their readiness.
fn haproxy_cfg(socket: &Path) -> String {
    let socket = socket.display();
    let servers: String = GATEWAYS
        .iter()
        .enumerate()
        .map(|(n, a)| format!("    server gw{} {a}:{GATEWAY_PORT} check\n", n + 1))
        .collect();
    format!(
        "\
global
    stats socket {socket} level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 1m
    timeout server 1m
    retries 3
    option redispatch
frontend clients
    bind {BALANCER}
    default_backend gateways
backend gateways
    balance roundrobin
    option httpchk
    http-check send meth GET uri /_vyx/health?ready ver HTTP/1.1 hdr host vyx
    http-check expect status 200
    default-server inter 300ms fall 2 rise 2
{servers}"
    )
}

/// A Rust replica: serves the mixed load's routes (`vyx_bench::mix`, under `/mix`) until
/// SIGTERM drains it; where and who it is come from `VYX_CONNECT`, `VYX_WORKER_ID`,
/// `VYX_TOKEN`.
#[test]
fn rolling_worker_process() {
    if std::env::var_os("VYX_ROLLING_WORKER").is_none() {
        return; // run as a test of its own: nothing to do
    }
    let worker = vyx_bench::mix::routes(vyx::Worker::builder())
        .build()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(worker.start()).unwrap();
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// The namespaces, the bridge, the workers' hosts file and the processes in them; all of it
/// removed when dropped, whatever the test's outcome.
struct Topology {
    prefix: String,
    dir: tempfile::TempDir,
    processes: Vec<Child>,
}

const ROLES: [(&str, &str); 7] = [
    ("lb", "2"),
    ("gw1", "11"),
    ("gw2", "12"),
    ("gw3", "13"),
    ("gw4", "14"),
    ("wk", "20"),
    ("cl", "30"),
];

impl Topology {
    fn create() -> Topology {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!(
                "rolling_deploys needs root: it makes network namespaces (ip netns). \
                 Run it as root (CI does); it is never skipped"
            );
        }
        for tool in ["ip", "haproxy", "go"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "rolling_deploys needs {tool} on PATH: scripts/setup-netns installs HAProxy \
                 and iproute2 from Debian; Go 1.23+ builds the Go worker"
            );
        }
        remove_stale_namespaces();
        let topo = Topology {
            prefix: format!("vyxroll{}", std::process::id()),
            dir: tempfile::tempdir().unwrap(),
            processes: Vec::new(),
        };
        let net = topo.ns("net");
        ip(&["netns", "add", &net]);
        for (role, _) in ROLES {
            ip(&["netns", "add", &topo.ns(role)]);
        }
        ip(&["-n", &net, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &net, "link", "set", "br0", "up"]);
        for (role, host) in ROLES {
            let ns = topo.ns(role);
            let port = format!("v-{role}");
            ip(&[
                "-n", &net, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &net, "link", "set", &port, "master", "br0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{NET}.{host}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        std::fs::create_dir_all(topo.etc_dir()).unwrap();
        topo
    }

    /// Makes the headless name resolve to the gateways `pods` (indexes into [`GATEWAYS`]),
    /// in the workers' namespace only. Written in place: `ip netns exec` bind-mounted this
    /// very file over each worker's `/etc/hosts`.
    fn set_headless<'a>(&self, pods: impl IntoIterator<Item = &'a usize>) {
        let hosts: String = pods
            .into_iter()
            .map(|&n| format!("{} {HEADLESS}\n", GATEWAYS[n]))
            .collect();
        let text = format!("127.0.0.1 localhost\n{hosts}");
        std::fs::write(self.etc_dir().join("hosts"), text).unwrap();
    }

    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    fn etc_dir(&self) -> PathBuf {
        Path::new("/etc/netns").join(self.ns("wk"))
    }

    /// `program args` inside namespace `role`, its output in a log file of its own.
    fn command(&self, role: &str, program: &Path, log: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(role)])
            .arg(program)
            .stdin(Stdio::null())
            .stdout(File::create(self.dir.path().join(log)).unwrap())
            .stderr(File::create(self.dir.path().join(format!("{log}.err"))).unwrap());
        cmd
    }

    fn spawn(&mut self, mut cmd: Command) -> u32 {
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        self.processes.push(child);
        pid
    }

    /// Sends SIGTERM to `pid`.
    fn sigterm(&self, pid: u32) {
        assert!(self.processes.iter().any(|c| c.id() == pid));
        // SAFETY: kill with a pid this test started and has not reaped.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }

    /// Waits (bounded) for `pid` to exit, successfully.
    fn wait_exit(&mut self, pid: u32, what: &str) {
        let i = self
            .processes
            .iter()
            .position(|c| c.id() == pid)
            .expect("a process of this topology");
        let mut child = self.processes.swap_remove(i);
        let deadline = std::time::Instant::now() + WAIT * 2;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{what} exited with {status}");
    }

    /// Every process's stderr, for a failure's message.
    fn logs(&self) -> String {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".err"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
                format!("--- {n}\n{text}")
            })
            .collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (role, _) in ROLES {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns("net")])
            .status();
        let _ = std::fs::remove_dir_all(self.etc_dir());
        let _ = std::fs::remove_dir("/etc/netns"); // only when no one else uses it
    }
}

/// Namespaces left by a run that was killed (its pid no longer alive).
fn remove_stale_namespaces() {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix("vyxroll") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(name));
        }
    }
}

/// Moves this thread (and the threads it starts from now on) into namespace `ns`.
fn enter_netns(ns: &str) {
    use std::os::fd::AsRawFd;
    let f = File::open(Path::new("/run/netns").join(ns)).unwrap();
    // SAFETY: setns on a namespace file this function holds open.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// The Go conformance worker, built into this test's scratch directory.
fn build_go_worker() -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rolling/vyx-conformance-worker-go");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/conformance/workers/go");
    run(Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(src));
    out
}

struct Deploy {
    topo: Topology,
    go_worker: PathBuf,
    config: PathBuf,
    /// The gateways running: index into [`GATEWAYS`] → pid.
    gateways: BTreeMap<usize, u32>,
    /// Per worker id, its replicas' pids.
    workers: BTreeMap<&'static str, Vec<u32>>,
    started: usize,
}

impl Deploy {
    /// Starts gateway Pod `n`; the headless name resolves to it at once.
    fn gateway(&mut self, n: usize) {
        let mut cmd = self.topo.command(
            &format!("gw{}", n + 1),
            Path::new(env!("CARGO_BIN_EXE_vyx")),
            &format!("gw{}-{}.log", n + 1, self.started),
        );
        cmd.arg("--config")
            .arg(&self.config)
            .env("VYX_TOKEN_RUST", "rust-token")
            .env("VYX_TOKEN_GO", "go-token");
        self.started += 1;
        let pid = self.topo.spawn(cmd);
        self.gateways.insert(n, pid);
        self.topo.set_headless(self.gateways.keys());
    }

    /// Stops gateway Pod `n` as Kubernetes does: SIGTERM; the balancer marks it down (its
    /// readiness fails); it drains and exits; its address leaves the headless name.
    async fn stop_gateway(&mut self, n: usize, socket: &Path) {
        let pid = self.gateways[&n];
        self.topo.sigterm(pid);
        let name = format!("gw{}", n + 1);
        wait_balancer(socket, &name, false).await;
        self.topo.wait_exit(pid, &name);
        self.gateways.remove(&n);
        self.topo.set_headless(self.gateways.keys());
    }

    fn worker(&mut self, id: &'static str) -> u32 {
        let log = format!("{}-{}.log", id.replace(':', "-"), self.started);
        self.started += 1;
        let connect = format!("ws://{HEADLESS}:{GATEWAY_PORT}");
        let mut cmd = match id {
            RUST_ID => {
                let mut cmd = self
                    .topo
                    .command("wk", &std::env::current_exe().unwrap(), &log);
                cmd.args(["--exact", "rolling_worker_process", "--test-threads=1"])
                    .env("VYX_ROLLING_WORKER", "1")
                    .env("VYX_TOKEN", "rust-token");
                cmd
            }
            _ => {
                let mut cmd = self.topo.command("wk", &self.go_worker.clone(), &log);
                cmd.env("VYX_TOKEN", "go-token");
                cmd
            }
        };
        cmd.env("VYX_CONNECT", connect).env("VYX_WORKER_ID", id);
        let pid = self.topo.spawn(cmd);
        self.workers.entry(id).or_default().push(pid);
        pid
    }

    fn gateway_addr(n: usize) -> SocketAddr {
        format!("{}:{GATEWAY_PORT}", GATEWAYS[n]).parse().unwrap()
    }

    /// Waits until every gateway holds `REPLICAS` connections of each worker id.
    async fn workers_everywhere(&self) {
        for &n in self.gateways.keys() {
            let deadline = tokio::time::Instant::now() + WAIT;
            while tokio::net::TcpStream::connect(Self::gateway_addr(n))
                .await
                .is_err()
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "gw{} never listened",
                    n + 1
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for id in [RUST_ID, GO_ID] {
                wait_for_workers(Self::gateway_addr(n), id, REPLICAS).await;
            }
        }
    }
}

/// Requests gateway Pod `n` answered with 200, from its `/_vyx/metrics`.
async fn answered_ok(n: usize) -> u64 {
    let url = format!("http://{}/_vyx/metrics", Deploy::gateway_addr(n));
    let (_, body) = get(&client(), &url).await;
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("vyx_requests_total{") && l.contains("status=\"200\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The balancer's view of `server`: `true` when it sends it new connections (`false` while
/// HAProxy is still starting).
fn balancer_up(socket: &Path, server: &str) -> bool {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    s.write_all(b"show servers state gateways\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    // Fields: be_id be_name srv_id srv_name srv_addr srv_op_state ... (2: running).
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(3) == Some(&server))
        .is_some_and(|f| f.get(5) == Some(&"2"))
}

async fn wait_balancer(socket: &Path, server: &str, up: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while balancer_up(socket, server) != up {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the balancer never marked {server} {}",
            if up { "up" } else { "down" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn rolling_deploys_of_workers_and_gateways_behind_a_balancer_fail_no_request() {
    if std::env::var_os("VYX_ROLLING_WORKER").is_some() {
        return; // a worker process runs only its own test
    }
    let topo = Topology::create();
    let go_worker = build_go_worker();
    let config = topo.dir.path().join("vyx.yaml");
    std::fs::write(&config, VYX_YAML).unwrap();
    let socket = topo.dir.path().join("haproxy.sock");
    std::fs::write(topo.dir.path().join("haproxy.cfg"), haproxy_cfg(&socket)).unwrap();
    let mut d = Deploy {
        topo,
        go_worker,
        config,
        gateways: BTreeMap::new(),
        workers: BTreeMap::new(),
        started: 0,
    };
    let mut lb = d.topo.command("lb", Path::new("haproxy"), "haproxy.log");
    lb.args(["-db", "-f"])
        .arg(d.topo.dir.path().join("haproxy.cfg"));
    d.topo.spawn(lb);
    d.gateway(0);
    d.gateway(1);
    for _ in 0..REPLICAS {
        d.worker(RUST_ID);
        d.worker(GO_ID);
    }

    // The test talks to everything from the client's namespace, as the load does.
    enter_netns(&d.topo.ns("cl"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let summary = rt.block_on(async {
        d.workers_everywhere().await;
        wait_balancer(&socket, "gw1", true).await;
        wait_balancer(&socket, "gw2", true).await;

        // The mixed load through the balancer: the Rust workers' routes under /mix (every
        // kind), the Go conformance worker's at the root (no SSE there).
        let mut config = Config::new(vec![format!("http://{BALANCER}")]);
        config.targets = ["/mix", "/=get,post,download,upload"]
            .iter()
            .map(|t| Target::parse(t).unwrap())
            .collect();
        config.timeout = WAIT;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let load = tokio::spawn(mixload::run(config, async {
            let _ = stopped.await;
        }));

        // (a) Worker replicas one by one: SIGTERM drains it; its replacement has a session
        // to both gateways before the next goes.
        for id in [RUST_ID, GO_ID] {
            for _ in 0..REPLICAS {
                let old = d.workers.get_mut(id).unwrap().remove(0);
                d.topo.sigterm(old);
                d.topo.wait_exit(old, id);
                d.worker(id);
                d.workers_everywhere().await;
            }
        }

        // (b) Gateways one by one, each replaced by a new one at a new address: the new one
        // starts (not ready: no worker knows it yet); the old one gets SIGTERM, its
        // readiness fails, the balancer stops sending it connections, it drains (DRAIN to
        // the workers, whose failed sessions make them resolve the name again and find the
        // new one) and exits; the balancer takes the new one once it is ready; then the
        // other.
        for (old, new) in [(0, 2), (1, 3)] {
            d.gateway(new);
            d.stop_gateway(old, &socket).await;
            wait_balancer(&socket, &format!("gw{}", new + 1), true).await;
            d.workers_everywhere().await;
        }
        // The clients of the last old gateway moved to the first new one.
        assert!(answered_ok(2).await > 0, "gw3 served nothing");

        let _ = stop.send(());
        load.await.unwrap()
    });
    let json = summary.to_json();
    eprintln!("the load during the rolling deploys: {json:#}");
    if summary.failed() > 0 {
        eprintln!("{}", d.topo.logs());
    }
    assert_eq!(summary.failed(), 0, "{json:#}");
    for kind in [
        Kind::Get,
        Kind::Post,
        Kind::Download,
        Kind::Sse,
        Kind::Upload,
    ] {
        let ok = summary.kinds.get(&kind).map_or(0, |c| c.ok);
        assert!(ok > 0, "no {} request succeeded: {json:#}", kind.name());
    }
}
