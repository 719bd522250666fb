//! TLS on the gateway's own listener (`tls:` in vyx.yaml): HTTP/2 and HTTP/1.1 by ALPN,
//! workers over `wss://` on the same listener (a private CA trusted, a wrong certificate
//! refused), the handshake under the head deadline and the connection limit, and the
//! certificate reloaded on SIGHUP without dropping connections.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use vyx::{ConnectionState, Request};
use vyx_gateway::tls::TlsFiles;

/// A private CA; [`Ca::leaf`] issues server certificates from it.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Each CA its own name: a certificate is matched to its issuer by name first.
        let name = format!("vyx test CA {}", SERIAL.fetch_add(1, Ordering::Relaxed));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf for `names` written as `<stem>.pem` and `<stem>.key` in `dir`.
    fn leaf(&self, dir: &Path, stem: &str, names: &[&str]) -> TlsFiles {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const LOOPBACK: &[&str] = &["127.0.0.1", "localhost"];

/// A TLS connection to `addr` that trusts `ca` only, offering `alpn`.
async fn tls_connect(
    addr: std::net::SocketAddr,
    ca: CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// An HTTP/1.1 connection over TLS, kept open for several requests.
async fn h1_over_tls(addr: std::net::SocketAddr, ca: CertificateDer<'static>) -> Sender {
    let tls = tls_connect(addr, ca, &[b"http/1.1"]).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// GET `path` on an open HTTP/1.1 connection: the status and body.
async fn h1_get(send: &mut Sender, path: &str) -> (u16, Bytes) {
    let req = http::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Empty::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

fn worker(url: String, ca_file: Option<PathBuf>) -> vyx::Worker {
    let mut b = vyx::Worker::builder()
        .connect(url)
        .id("rust:tls")
        .handle_signals(false)
        .get("/tls", |req: Request| async move {
            // The scheme the gateway forwards, as a worker behind it sees it.
            let h = |n| req.header(n).and_then(|v| v.to_str().ok()).unwrap_or("-");
            format!("over wss; {}; {}", h("x-forwarded-proto"), h("forwarded"))
        });
    if let Some(f) = ca_file {
        b = b.ca_file(f);
    }
    b.build().unwrap()
}

/// Starts `w` and returns the cause of its first failed connection.
async fn first_failure(w: vyx::Worker) -> String {
    let runner = w.clone();
    let task = tokio::spawn(async move { runner.start().await });
    let mut state = w.state();
    let s = tokio::time::timeout(
        WAIT,
        state.wait_for(|s| matches!(s, ConnectionState::Reconnecting { .. })),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    w.stop();
    task.await.unwrap().unwrap();
    match s {
        ConnectionState::Reconnecting { cause, .. } => cause,
        _ => unreachable!(),
    }
}

async fn tls_gateway(files: TlsFiles) -> TestGateway {
    TestGateway::start_with(|c| c.tls = Some(files)).await
}

#[tokio::test]
async fn a_worker_over_wss_serves_http2_and_http1_clients_on_one_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let gw = tls_gateway(ca.leaf(dir.path(), "gw", LOOPBACK)).await;
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());

    let w = worker(format!("wss://{}", gw.addr), Some(ca_file));
    let runner = w.clone();
    let task = tokio::spawn(async move { runner.start().await });
    let mut state = w.state();
    tokio::time::timeout(
        WAIT,
        state.wait_for(|s| matches!(s, ConnectionState::Connected { .. })),
    )
    .await
    .unwrap()
    .unwrap();

    // ALPN h2: HTTP/2, end to end.
    let tls = tls_connect(gw.addr, ca.der(), &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("https://{}/tls", gw.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        format!(
            "over wss; https; for=127.0.0.1;proto=https;host=\"{}\"",
            gw.addr
        )
    );

    // ALPN http/1.1: HTTP/1.1.
    let tls = tls_connect(gw.addr, ca.der(), &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    drop(tls);
    let mut h1 = h1_over_tls(gw.addr, ca.der()).await;
    assert_eq!(
        h1_get(&mut h1, "/tls").await,
        (
            200,
            Bytes::from("over wss; https; for=127.0.0.1;proto=https;host=127.0.0.1")
        )
    );

    // Plain HTTP on a TLS listener is not served.
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET /tls HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");

    w.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_worker_refuses_a_gateway_certificate_from_another_ca_or_for_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let gw = tls_gateway(ca.leaf(dir.path(), "gw", LOOPBACK)).await;
    let url = format!("wss://{}", gw.addr);

    // Another CA's file: the certificate is not trusted, and the worker says so.
    let other = write(dir.path(), "other-ca.pem", &Ca::new().pem());
    let cause = first_failure(worker(url.clone(), Some(other))).await;
    assert!(cause.contains("certificate"), "{cause}");
    assert!(cause.contains("UnknownIssuer"), "{cause}");

    // The right CA, but the gateway's certificate names another host.
    let wrong_name = tls_gateway(ca.leaf(dir.path(), "wrong", &["gw.example"])).await;
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let cause = first_failure(worker(
        format!("wss://{}", wrong_name.addr),
        Some(ca_file.clone()),
    ))
    .await;
    assert!(cause.contains("certificate"), "{cause}");
    assert!(cause.contains("not valid for name"), "{cause}");

    // A CA file that is not PEM is a configuration error naming the file.
    let junk = write(dir.path(), "junk.pem", "not a certificate");
    let err = worker(url, Some(junk.clone())).start().await.unwrap_err();
    assert!(
        err.to_string().contains(&junk.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn a_peer_that_never_sends_its_client_hello_holds_a_slot_until_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let files = ca.leaf(dir.path(), "gw", LOOPBACK);
    let gw = TestGateway::start_with(|c| {
        c.tls = Some(files);
        c.header_read_timeout = Some(Duration::from_millis(500));
    })
    .await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    // Counted among the open connections while it waits (with the one asking).
    let mut h1 = h1_over_tls(gw.addr, ca.der()).await;
    let (_, metrics) = h1_get(&mut h1, "/_vyx/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    assert!(
        metrics.lines().any(|l| l == "vyx_open_connections 2"),
        "{metrics}"
    );
    drop(h1);
    // Closed by the gateway, and counted as a header timeout.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let mut h1 = h1_over_tls(gw.addr, ca.der()).await;
    let (_, metrics) = h1_get(&mut h1, "/_vyx/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l == "vyx_client_errors_total{reason=\"header_timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn local_workers_register_on_a_plain_loopback_listener_beside_a_tls_one() {
    let dir = tempfile::tempdir().unwrap();
    let files = Ca::new().leaf(dir.path(), "gw", LOOPBACK);
    let config = |local: bool| {
        let mut c = vyx_gateway::GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some(files.clone()),
            ..Default::default()
        };
        if local {
            c.local_workers.push(vyx_gateway::config::LocalWorker {
                id: "local".into(),
                program: "/bin/true".into(),
                args: Vec::new(),
                env: Vec::new(),
                cwd: dir.path().into(),
                replicas: 1,
                restart: Default::default(),
                token: vyx_gateway::auth::Secret::new("t"),
            });
        }
        c
    };
    let remote_only = vyx_gateway::Gateway::bind(config(false)).await.unwrap();
    let url = remote_only.loopback_register_url();
    assert_eq!(
        url,
        format!("wss://{}/_vyx/register", remote_only.local_addr())
    );
    let with_local = vyx_gateway::Gateway::bind(config(true)).await.unwrap();
    let url = with_local.loopback_register_url();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    assert_ne!(
        url,
        format!("ws://{}/_vyx/register", with_local.local_addr())
    );
}

/// The gateway binary with `tls:` files, and a SIGHUP to it.
#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections_and_keeps_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Ca::new(), Ca::new());
    let files = old_ca.leaf(dir.path(), "gw", LOOPBACK);
    let yaml = write(
        dir.path(),
        "vyx.yaml",
        "listen: 127.0.0.1:0\ntls: {cert: gw.pem, key: gw.key}\n",
    );
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_vyx"));
    cmd.arg("--config").arg(&yaml);
    let vyx = LoggedVyx::spawn(cmd).await;
    let hup = || {
        let pid = vyx.child.id().unwrap() as libc::pid_t;
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    };
    let mut old_conn = h1_over_tls(vyx.addr, old_ca.der()).await;
    assert_eq!(h1_get(&mut old_conn, "/_vyx/health").await.0, 200);

    // A new certificate from another CA, in the same files.
    let fresh = new_ca.leaf(dir.path(), "fresh", LOOPBACK);
    std::fs::rename(&fresh.cert, &files.cert).unwrap();
    std::fs::rename(&fresh.key, &files.key).unwrap();
    hup();
    vyx.wait_for_log("TLS certificate reloaded").await;
    let refused = tls_connect(vyx.addr, old_ca.der(), &[]).await.unwrap_err();
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");
    let mut new_conn = h1_over_tls(vyx.addr, new_ca.der()).await;
    assert_eq!(h1_get(&mut new_conn, "/_vyx/health").await.0, 200);
    // The connection made before the reload keeps its session.
    assert_eq!(h1_get(&mut old_conn, "/_vyx/health").await.0, 200);

    // A file that is not a certificate: logged once, naming it; the certificate stays.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    hup();
    vyx.wait_for_log("TLS certificate not reloaded").await;
    let log = vyx.log_text();
    assert_eq!(
        log.matches("TLS certificate not reloaded").count(),
        1,
        "{log}"
    );
    let named = log
        .lines()
        .find(|l| l.contains("not reloaded"))
        .unwrap()
        .contains(&files.cert.display().to_string());
    assert!(named, "{log}");
    let mut after_bad = h1_over_tls(vyx.addr, new_ca.der()).await;
    assert_eq!(h1_get(&mut after_bad, "/_vyx/health").await.0, 200);
    assert_eq!(h1_get(&mut new_conn, "/_vyx/health").await.0, 200);
}

#[test]
fn a_tls_section_with_files_that_cannot_be_used_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = Ca::new().leaf(dir.path(), "gw", LOOPBACK);
    Ca::new().leaf(dir.path(), "other", LOOPBACK);
    let load = |text: &str| {
        let yaml = write(dir.path(), "vyx.yaml", text);
        vyx_gateway::file_config::load(&yaml)
    };
    let refused = |text: &str| load(text).err().expect("refused");
    let c = load("tls: {cert: gw.pem, key: gw.key}\n").ok().unwrap();
    assert_eq!(c.tls, Some(files.clone()));
    let e = refused("tls: {cert: missing.pem, key: gw.key}\n");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    assert_eq!(e.line, 1);
    let e = refused("tls: {cert: gw.pem, key: other.key}\n");
    assert!(e.to_string().contains("other.key"), "{e}");
    let e = refused("tls: {cert: gw.pem}\n");
    assert!(e.to_string().contains("key"), "{e}");
}

#[tokio::test]
async fn a_worker_dialling_an_address_of_a_name_verifies_the_certificate_for_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    // A certificate for the name only: verifying it against the address dialled would fail.
    let gw = tls_gateway(ca.leaf(dir.path(), "named", &["gw.example"])).await;
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let addr = gw.addr;
    let w = vyx::Worker::builder()
        .connect(format!("wss://gw.example:{}", addr.port()))
        .id("rust:tls")
        .handle_signals(false)
        .ca_file(ca_file)
        .resolver(vyx::Resolver::new(move |host, _port| {
            assert_eq!(host, "gw.example");
            Box::pin(async move { Ok(vec![addr]) })
        }))
        .get("/tls", |_req: Request| async { "named" })
        .build()
        .unwrap();
    let runner = w.clone();
    let task = tokio::spawn(async move { runner.start().await });
    let mut state = w.state();
    let reached = tokio::time::timeout(
        WAIT,
        state.wait_for(|s| {
            matches!(
                s,
                ConnectionState::Connected { .. } | ConnectionState::Reconnecting { .. }
            )
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        matches!(reached, ConnectionState::Connected { .. }),
        "{reached:?}"
    );
    assert_eq!(w.gateways()[0].address, Some(addr));
    w.stop();
    task.await.unwrap().unwrap();
}

/// The lingering close after an early answer (`front.rs`
/// `a_client_still_sending_after_an_early_answer_is_drained_and_reads_it`) over TLS: the
/// gateway's close_notify and FIN, then the rest of the body read through TLS and dropped,
/// and the client reads its answer after sending all of it.
#[tokio::test]
async fn an_early_answer_over_tls_is_followed_by_a_lingering_close() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let files = ca.leaf(dir.path(), "gw", LOOPBACK);
    let gw = TestGateway::start_with(|c| {
        c.tls = Some(files);
        c.body_buffer = 0;
    })
    .await;
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let w = vyx::Worker::builder()
        .connect(format!("wss://{}", gw.addr))
        .id("rust:tls")
        .handle_signals(false)
        .ca_file(ca_file)
        // Answers without reading the body: the SDK then RESETs the stream `no_error`.
        .post("/up", |_req: Request| async {
            (vyx::StatusCode::PAYLOAD_TOO_LARGE, "too large")
        })
        .build()
        .unwrap();
    start_connected(&w).await;
    let mut tls = tls_connect(gw.addr, ca.der(), &[b"http/1.1"])
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tls, &chunked_post("/up"))
        .await
        .unwrap();
    // More than the socket buffers hold: a close without lingering resets the writes.
    send_chunked_past_the_answer(&mut tls, 16 << 20).await;
    let mut answer = Vec::new();
    let end = tokio::time::timeout(WAIT, tls.read_to_end(&mut answer))
        .await
        .expect("the answer and the close in time");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.ends_with("too large"), "{answer} ({end:?})");
    w.stop();
}
