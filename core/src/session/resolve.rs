//! Where a gateway URL leads: its host and port, and the addresses its host name resolves
//! to (PROTOCOL.md §9.1). A worker holds one session per address, so a name that resolves
//! to every gateway (a headless Service, round-robin DNS) reaches every gateway.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::http::Uri;

/// What a [`Resolver`] returns.
pub type ResolveFuture = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

type ResolveFn = dyn Fn(&str, u16) -> ResolveFuture + Send + Sync;

/// Turns a gateway's host name and port into the addresses to dial. The system's resolver
/// unless a test (or an application with its own discovery) names another.
///
/// ```
/// use std::net::SocketAddr;
/// use vyx_core::session::{Resolver, WorkerConfig};
///
/// let mut config = WorkerConfig::new("ws://gateways.test:9000", "rust:api");
/// config.resolver = Resolver::new(|_host, port| {
///     let addrs = vec![SocketAddr::from(([127, 0, 0, 1], port))];
///     Box::pin(async move { Ok(addrs) })
/// });
/// ```
#[derive(Clone)]
pub struct Resolver(Arc<ResolveFn>);

impl Resolver {
    /// The system's resolver (`getaddrinfo`, through tokio).
    pub fn system() -> Resolver {
        Resolver::new(|host, port| {
            let host = host.to_owned();
            Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
        })
    }

    /// A resolver of your own: `resolve(host, port)` returns every address of `host`.
    pub fn new(resolve: impl Fn(&str, u16) -> ResolveFuture + Send + Sync + 'static) -> Resolver {
        Resolver(Arc::new(resolve))
    }

    /// The addresses of `target`, without duplicates, in the order given: an IP literal
    /// is its own address and asks no resolver.
    pub(crate) async fn addresses(&self, target: &Target) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, target.port)]);
        }
        let mut addrs = (self.0)(&target.host, target.port).await?;
        let mut seen = std::collections::HashSet::new();
        addrs.retain(|a| seen.insert(*a));
        Ok(addrs)
    }
}

impl Default for Resolver {
    fn default() -> Resolver {
        Resolver::system()
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

/// One gateway URL of the worker's `connect` list, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The registration URL (§2.1) dialled at each address.
    pub(crate) url: String,
    /// The host as it is resolved: no brackets around an IPv6 literal.
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Target {
    /// `connect` as a target, or why it cannot be one.
    pub(crate) fn parse(connect: &str) -> Result<Target, String> {
        let tls = if connect.starts_with("wss://") {
            true
        } else if connect.starts_with("ws://") {
            false
        } else {
            return Err("must start with ws:// or wss://".into());
        };
        let url = super::registration_url(connect);
        let uri: Uri = url.parse().map_err(|e| format!("is not a URL: {e}"))?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or("names no host")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target { url, host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_keeps_its_host_name_and_takes_the_scheme_s_port() {
        let t = Target::parse("wss://gw.example").unwrap();
        assert_eq!(
            (t.url.as_str(), t.host.as_str(), t.port),
            ("wss://gw.example/_vyx/register", "gw.example", 443)
        );
        let t = Target::parse("ws://[::1]:9000/reg").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(Target::parse("http://gw").unwrap_err().contains("ws://"));
        assert!(Target::parse("ws://:9000").is_err());
    }

    #[tokio::test]
    async fn an_ip_literal_asks_no_resolver_and_duplicates_are_dropped() {
        let none = Resolver::new(|_, _| panic!("resolver asked"));
        let t = Target::parse("ws://[::1]:9000").unwrap();
        assert_eq!(
            none.addresses(&t).await.unwrap(),
            vec!["[::1]:9000".parse().unwrap()]
        );
        let twice = Resolver::new(|_, port| {
            let a = SocketAddr::from(([127, 0, 0, 1], port));
            Box::pin(async move { Ok(vec![a, a]) })
        });
        let t = Target::parse("ws://gw.test:1").unwrap();
        assert_eq!(twice.addresses(&t).await.unwrap().len(), 1);
    }
}
