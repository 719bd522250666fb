//! `wss://` to a gateway with `tls:`: the worker trusts a private CA through `VYX_CA_FILE`,
//! and refuses a certificate from another CA or for another host name, naming it. The
//! certificates are made here, at run time, for every language alike.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use super::{Ctx, Scenario};
use crate::check::{fail, Outcome};
use crate::procs::{Gateway, GatewaySetup, Worker, WAIT};
use crate::{ensure, ensure_eq};

pub fn scenarios() -> Vec<Scenario> {
    crate::scenarios![
        "wss: a private CA trusted, another CA and another name refused, named and retried" => wss,
    ]
}

/// A CA that issues certificates into `dir`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn rc(e: rcgen::Error) -> String {
    format!("rcgen: {e}")
}

impl Ca {
    fn new(name: &str) -> Outcome<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        // Each its own name: a certificate is matched to its issuer by name first.
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().map_err(rc)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(rc)?;
        Ok(Ca { issuer })
    }

    /// Writes the CA as `<stem>.pem`.
    fn write(&self, dir: &Path, stem: &str) -> Outcome<PathBuf> {
        write(dir, &format!("{stem}.pem"), &self.issuer.pem())
    }

    /// A server certificate for `names`, as `(cert, key)` files `<stem>.pem`, `<stem>.key`.
    fn leaf(&self, dir: &Path, stem: &str, names: &[&str]) -> Outcome<(PathBuf, PathBuf)> {
        let key = KeyPair::generate().map_err(rc)?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .map_err(rc)?
            .signed_by(&key, &self.issuer)
            .map_err(rc)?;
        Ok((
            write(dir, &format!("{stem}.pem"), &cert.pem())?,
            write(dir, &format!("{stem}.key"), &key.serialize_pem())?,
        ))
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Outcome<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// A folder of its own under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Outcome<TempDir> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("vyx-conformance-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn tls_gateway(ctx: &Ctx, (cert, key): &(PathBuf, PathBuf)) -> Outcome<Gateway> {
    let yaml = format!(
        "accept_unknown_workers: true\ntls: {{cert: {:?}, key: {:?}}}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    ctx.gateway_with(GatewaySetup {
        config: Some(&yaml),
        env: &[],
    })
    .await
}

/// One GET over TLS, trusting `ca` only: the status and body.
async fn https_get(addr: SocketAddr, ca: &Path, path: &str) -> Outcome<(u16, String)> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(ca).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let get = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::from(addr.ip());
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header("host", addr.to_string())
            .body(Empty::<bytes::Bytes>::new())
            .map_err(std::io::Error::other)?;
        let resp = send
            .send_request(req)
            .await
            .map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?;
        Ok::<_, std::io::Error>((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    };
    match tokio::time::timeout(WAIT, get).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => fail(format!("GET https://{addr}{path}: {e}")),
        Err(_) => fail(format!(
            "GET https://{addr}{path}: no answer within {WAIT:?}"
        )),
    }
}

/// The worker must not connect, must say why (a line naming the certificate), and must try
/// again (a TLS failure is retried: the gateway's certificate may be fixed and reloaded).
async fn refused(worker: Worker, what: &str) -> Outcome<()> {
    let (_, line) = worker.wait_state(0, "reconnecting 1 ", WAIT).await?;
    ensure!(
        line.to_lowercase().contains("certificate"),
        "{what}: the worker's reconnecting state does not name the certificate: {line}"
    );
    worker
        .wait_state(0, "reconnecting 2 ", WAIT)
        .await
        .map_err(|e| format!("{what}: not retried: {e}"))?;
    let out = worker.stdout.tail(50);
    ensure!(
        !out.lines().any(|l| l.starts_with("state connected")),
        "{what}: the worker connected:\n{out}"
    );
    Ok(())
}

async fn wss(ctx: Ctx) -> Outcome<()> {
    let dir = TempDir::new()?;
    let ca = Ca::new("vyx conformance CA")?;
    let ca_file = ca.write(&dir.0, "ca")?;
    let other_ca = Ca::new("vyx conformance other CA")?.write(&dir.0, "other-ca")?;
    let gw = tls_gateway(&ctx, &ca.leaf(&dir.0, "gw", &["127.0.0.1", "localhost"])?).await?;
    let url = format!("wss://{}", gw.addr);
    let id = ctx.worker_id();
    let ca_env = |f: &Path| [("VYX_CA_FILE", f.display().to_string())];

    // Trusted through VYX_CA_FILE: registered, and serving clients over TLS.
    let worker = Worker::spawn(&ctx.worker, &url, &id, &ca_env(&ca_file))?;
    worker.connected(0).await?;
    let (status, body) = https_get(gw.addr, &ca_file, "/greet/tls").await?;
    ensure_eq!(
        status,
        200,
        "GET /greet/tls over TLS, through a worker on wss://"
    );
    ensure!(body.contains("tls"), "GET /greet/tls answered {body:?}");
    drop(worker);

    // Another CA: refused.
    let worker = Worker::spawn(&ctx.worker, &url, &id, &ca_env(&other_ca))?;
    refused(worker, "a certificate from another CA").await?;

    // The right CA, another host name.
    let (wrong_cert, wrong_key) = ca.leaf(&dir.0, "wrong-name", &["gw.example"])?;
    let wrong = tls_gateway(&ctx, &(wrong_cert, wrong_key)).await?;
    let url = format!("wss://{}", wrong.addr);
    let worker = Worker::spawn(&ctx.worker, &url, &id, &ca_env(&ca_file))?;
    refused(worker, "a certificate for another host name").await?;
    Ok(())
}
