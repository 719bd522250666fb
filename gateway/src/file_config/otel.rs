//! The `tracing:` section: where spans are exported (OTLP over HTTP), which share of new
//! traces is recorded, the service name and the export's headers (see `crate::otel`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::checks::Checker;
use super::ConfigError;
use crate::otel::TracingConfig;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Tracing {
    endpoint: Option<Spanned<String>>,
    service_name: Option<Spanned<String>>,
    sample_ratio: Option<Spanned<f64>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    queue: Option<Spanned<u32>>,
}

/// The most spans `tracing.queue` may hold waiting for the exporter.
const MAX_QUEUE: u32 = 1 << 20;

impl Checker {
    pub(super) fn tracing(&self, t: &Spanned<Tracing>) -> Result<TracingConfig, ConfigError> {
        let mut c = TracingConfig::default();
        let t = &t.value;
        if let Some(e) = &t.endpoint {
            let url = self.expand(e)?;
            let uri: http::Uri = url.parse().map_err(|why| {
                self.err(e.referenced, format!("tracing.endpoint {url:?}: {why}"))
            })?;
            match (uri.scheme_str(), uri.authority()) {
                (Some("http"), Some(_)) => {}
                (Some("https"), _) => {
                    let why = "tracing.endpoint: https is not supported (this build exports over plain HTTP: send to a collector on this host or network, e.g. http://127.0.0.1:4318)";
                    return Err(self.err(e.referenced, why));
                }
                _ => {
                    let why = format!("tracing.endpoint {url:?}: give the collector's base URL, e.g. http://collector:4318 (spans go to its /v1/traces)");
                    return Err(self.err(e.referenced, why));
                }
            }
            c.endpoint = Some(url);
        }
        if let Some(n) = &t.service_name {
            let name = self.expand(n)?;
            if name.trim().is_empty() {
                return Err(self.err(n.referenced, "tracing.service_name: empty"));
            }
            c.service_name = Some(name);
        }
        if let Some(r) = &t.sample_ratio {
            if !(0.0..=1.0).contains(&r.value) {
                let why = format!("tracing.sample_ratio {}: must be from 0 to 1", r.value);
                return Err(self.err(r.referenced, why));
            }
            c.sample_ratio = Some(r.value);
        }
        for (name, value) in &t.headers {
            let v = self.expand(value)?;
            if http::HeaderName::try_from(name.as_str()).is_err() {
                let why = format!("tracing.headers: {name:?} is not a header name");
                return Err(self.err(value.referenced, why));
            }
            if http::HeaderValue::try_from(v.as_str()).is_err() {
                let why = format!("tracing.headers.{name}: not a valid header value");
                return Err(self.err(value.referenced, why));
            }
            c.headers.push((name.clone(), v));
        }
        if let Some(q) = &t.queue {
            if q.value == 0 || q.value > MAX_QUEUE {
                let why = format!("tracing.queue {}: from 1 to {MAX_QUEUE} spans", q.value);
                return Err(self.err(q.referenced, why));
            }
            c.queue = q.value as usize;
        }
        Ok(c)
    }
}
