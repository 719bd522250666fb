//! A worker dialing `wss://`: through a TLS terminator in front of the gateway, trusting a
//! private CA given as a PEM file.

mod common;

use std::sync::Arc;

use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use vyx::{ConnectionState, Request};

/// Terminates TLS on an ephemeral loopback port and forwards the bytes to `upstream`.
async fn tls_terminator(upstream: std::net::SocketAddr) -> (std::net::SocketAddr, String) {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_der: CertificateDer<'static> = key.cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return; // a client that does not trust us: nothing to forward
                };
                let mut up = TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    (addr, key.cert.pem())
}

fn worker(url: String, ca_file: Option<std::path::PathBuf>) -> vyx::Worker {
    let mut b = vyx::Worker::builder()
        .connect(url)
        .id("rust:tls")
        .handle_signals(false)
        .get("/tls", |_req: Request| async { "over wss" });
    if let Some(f) = ca_file {
        b = b.ca_file(f);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn a_worker_registers_over_wss_with_a_private_ca() {
    let gw = TestGateway::start().await;
    let (tls_addr, ca_pem) = tls_terminator(gw.addr).await;
    let url = format!("wss://{tls_addr}");

    // Without the CA the certificate is refused, and the worker says why.
    let untrusting = worker(url.clone(), None);
    let runner = untrusting.clone();
    let task = tokio::spawn(async move { runner.start().await });
    let mut state = untrusting.state();
    let s = tokio::time::timeout(
        WAIT,
        state.wait_for(|s| matches!(s, ConnectionState::Reconnecting { .. })),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    let ConnectionState::Reconnecting { cause, .. } = s else {
        unreachable!()
    };
    assert!(cause.to_lowercase().contains("certificate"), "{cause}");
    untrusting.stop();
    task.await.unwrap().unwrap();

    // With it, the worker registers and serves.
    let ca_file = std::env::temp_dir().join(format!(
        "vyx-test-ca-{}-{}.pem",
        std::process::id(),
        tls_addr.port()
    ));
    std::fs::write(&ca_file, ca_pem).unwrap();
    let trusting = worker(url, Some(ca_file.clone()));
    let runner = trusting.clone();
    let task = tokio::spawn(async move { runner.start().await });
    wait_for_workers(gw.addr, "rust:tls", 1).await;
    assert_eq!(
        get(&client(), &gw.url("/tls")).await,
        (200, bytes::Bytes::from("over wss"))
    );
    trusting.stop();
    task.await.unwrap().unwrap();
    std::fs::remove_file(ca_file).unwrap();

    // A CA file that is not PEM is a configuration error naming the file.
    let junk = std::env::temp_dir().join(format!("vyx-test-junk-{}.pem", std::process::id()));
    std::fs::write(&junk, "not a certificate").unwrap();
    let err = worker(format!("wss://{tls_addr}"), Some(junk.clone()))
        .start()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&junk.display().to_string()),
        "{err}"
    );
    std::fs::remove_file(junk).unwrap();
}
