//! TLS on the gateway's own listeners (`tls:` in vyx.yaml): rustls with the ring provider,
//! ALPN `h2` and `http/1.1`, worker registrations (`wss://`) on the same listener as
//! clients, and the certificate reloaded on SIGHUP.
//!
//! A reload swaps the certificate the resolver hands to new handshakes; connections already
//! up keep their session. A pair of files that cannot be used is logged once, naming the
//! file, and the certificate in use stays.
//!
//! A worker connection over TLS keeps its raw socket beside the TLS stream (the stream reads
//! and writes through [`SocketHandle::io`]), so that the gateway can still reset or
//! linger-close it at once (see `conn::socket`).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::{info, warn};

use crate::conn::{SocketHandle, SocketIo};
use crate::conn_limit::{ConnSlot, Counted};

/// The `tls:` section of vyx.yaml: a PEM certificate chain (leaf first) and its PEM private
/// key (PKCS#8, PKCS#1 or SEC1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The TLS side of every listener: the acceptor and the certificate it serves.
///
/// ```no_run
/// use vyx_gateway::tls::{Tls, TlsFiles};
/// let tls = Tls::new(TlsFiles { cert: "gw.pem".into(), key: "gw.key".into() })?;
/// tls.reload()?; // what a SIGHUP does: new handshakes get the files' certificate
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Tls {
    files: TlsFiles,
    current: Arc<Resolver>,
    acceptor: tokio_rustls::TlsAcceptor,
}

/// Hands each new handshake the certificate in force when it starts.
#[derive(Debug)]
struct Resolver(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a certificate chain and its key; the error names the file at fault.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let cert_pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not valid PEM: {e}", files.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: holds no PEM certificate",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| format!("{}: no usable PEM private key: {e}", files.key.display()))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| format!("{} with {}: {e}", files.key.display(), files.cert.display()))
}

impl Tls {
    /// Loads the certificate; an error names the file that cannot be used.
    pub fn new(files: TlsFiles) -> io::Result<Tls> {
        let key = load(&files).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let current = Arc::new(Resolver(ArcSwap::from_pointee(key)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // HTTP/2 for clients that offer it; workers (WebSocket over HTTP/1.1) and older
        // clients get HTTP/1.1. hyper tells the two apart by the preface in any case.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            files,
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again: new handshakes get the new certificate; on an error the one in
    /// force stays and the error is logged (once, naming the file) and returned.
    pub fn reload(&self) -> Result<(), String> {
        match load(&self.files) {
            Ok(key) => {
                self.current.0.store(Arc::new(key));
                info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "TLS certificate not reloaded; the one in use stays");
                Err(e)
            }
        }
    }

    /// Reloads on each SIGHUP, for as long as the returned future runs. The handler is
    /// installed by this call (within a Tokio runtime), not when the future is first polled:
    /// a SIGHUP that comes once the gateway says it listens never finds the default action.
    pub fn reload_on_sighup(self: Arc<Self>) -> impl std::future::Future<Output = ()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        async move {
            while hup.recv().await.is_some() {
                info!("SIGHUP: reloading the TLS certificate");
                let _ = self.reload();
            }
        }
    }

    /// The server side of the handshake on an accepted connection (unbounded: the caller
    /// times it).
    pub(crate) async fn accept(&self, tcp: TcpStream, slot: ConnSlot) -> io::Result<ClientStream> {
        let socket = SocketHandle::new(tcp, slot);
        let tls = self.acceptor.accept(socket.io()).await?;
        Ok(ClientStream::Tls(Box::new((tls, socket))))
    }
}

/// Marks a request that came in over TLS (a request extension), for the forwarding headers.
#[derive(Clone, Copy)]
pub(crate) struct OverTls;

/// The scheme a request came in over: `https` if it carries [`OverTls`], else `http`.
pub(crate) fn scheme(extensions: &http::Extensions) -> &'static str {
    match extensions.get::<OverTls>() {
        Some(_) => "https",
        None => "http",
    }
}

/// A client connection's byte stream, plain or TLS. The TLS one keeps the handle on its
/// socket (which holds the connection's slot) for a worker registration to take over.
pub(crate) enum ClientStream {
    Plain(Counted<TcpStream>),
    Tls(Box<(TlsStream<SocketIo>, SocketHandle)>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(&mut s.0).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(&mut s.0).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(&mut s.0).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.0.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(&mut s.0).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(&mut s.0).poll_shutdown(cx),
        }
    }
}
