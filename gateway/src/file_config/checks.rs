//! The checks of a parsed file and its translation into a [`GatewayConfig`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde_saphyr::Spanned;
use vyx_core::handshake::is_worker_id;
use vyx_core::limits::{MAX_CONCURRENCY, MAX_ROUTES, MAX_WINDOW};

use super::env::expand_env;
use super::scalars::{Dur, Listen};
use super::schema::{File, Limits, Register, Timeouts, Ui, Worker};
use super::ConfigError;
use crate::access_log::{Mode, Output, DEFAULT_SAMPLE};
use crate::auth::{Credentials, DeclaredWorker, Secret};
use crate::config::GatewayConfig;
use crate::trusted_proxies::IpNet;

pub(super) struct Checker {
    pub(super) file: PathBuf,
    pub(super) base: PathBuf,
}

type Located = serde_saphyr::Location;

impl Checker {
    pub(super) fn err(&self, at: Located, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
        }
    }

    pub(super) fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Expands `${NAME}` and `${NAME:-default}` from the environment.
    pub(super) fn expand(&self, s: &Spanned<String>) -> Result<String, ConfigError> {
        expand_env(&s.value).map_err(|m| self.err(s.referenced, m))
    }

    pub(super) fn token(
        &self,
        owner: &str,
        env: &Option<Spanned<String>>,
        file: &Option<Spanned<String>>,
        written: &Option<Spanned<IgnoredAny>>,
    ) -> Result<Option<Secret>, ConfigError> {
        if let Some(t) = written {
            return Err(self.err(
                t.referenced,
                format!("{owner}: a token is never written in the file; use token_env (an environment variable) or token_file (a file holding it)"),
            ));
        }
        match (env, file) {
            (Some(_), Some(f)) => Err(self.err(
                f.referenced,
                format!("{owner}: give token_env or token_file, not both"),
            )),
            (Some(var), None) => match std::env::var(&var.value) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
                Ok(_) => Err(self.err(
                    var.referenced,
                    format!(
                        "{owner}: environment variable {} is empty; it must hold the token",
                        var.value
                    ),
                )),
                Err(_) => Err(self.err(
                    var.referenced,
                    format!(
                        "{owner}: environment variable {} is not set; it must hold the token",
                        var.value
                    ),
                )),
            },
            (None, Some(f)) => {
                let path = self.resolve(&f.value);
                match std::fs::read_to_string(&path) {
                    Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
                    Ok(_) => Err(self.err(
                        f.referenced,
                        format!("{owner}: token file {} is empty", path.display()),
                    )),
                    Err(e) => Err(self.err(
                        f.referenced,
                        format!("{owner}: cannot read token file {}: {e}", path.display()),
                    )),
                }
            }
            (None, None) => Ok(None),
        }
    }

    pub(super) fn build(&self, file: File) -> Result<GatewayConfig, ConfigError> {
        let mut c = GatewayConfig {
            dev_mode: false,
            config_file: Some(self.file.clone()),
            ..GatewayConfig::default()
        };
        if let Some(Listen(addrs)) = &file.listen {
            c.listen = addrs[0];
            c.extra_listen = addrs[1..].to_vec();
        }
        self.register(&file.register, &mut c)?;
        self.timeouts(&file.timeouts, &mut c)?;
        self.limits(&file.limits, &mut c)?;
        if let Some(d) = file.routes.claim_grace {
            c.claim_grace = d.0;
        }
        self.buffer_limits(&file.limits, &mut c)?;
        self.ui(&file.ui, &mut c)?;
        if let Some(n) = &file.runtime.threads {
            if !(1..=super::MAX_THREADS).contains(&n.value) {
                let why = format!(
                    "runtime.threads {}: must be between 1 and {}",
                    n.value,
                    super::MAX_THREADS
                );
                return Err(self.err(n.referenced, why));
            }
            c.threads = n.value as usize;
        }
        c.client_half_close = file.client_half_close;
        if let Some(on) = file.retries.enabled {
            c.retries = on;
        }
        for p in &file.trusted_proxies {
            match IpNet::parse(&p.value) {
                Ok(net) => c.trusted_proxies.push(net),
                Err(why) => return Err(self.err(p.referenced, format!("trusted_proxies: {why}"))),
            }
        }
        if let Some(a) = &file.admin {
            let at = a.referenced;
            let a = &a.value;
            match self.token("admin", &a.token_env, &a.token_file, &a.token)? {
                Some(t) => c.admin_token = Some(t),
                None => return Err(self.err(at, "admin: give token_env or token_file")),
            }
        }
        if let Some(t) = &file.tls {
            c.tls = Some(self.tls(t)?);
        }
        self.logs(&file, &mut c)?;
        if let Some(t) = &file.tracing {
            c.tracing = Some(self.tracing(t)?);
        }
        let declared = self.workers(&file.workers, &mut c)?;
        c.auth = Arc::new(Credentials::new(declared, file.accept_unknown_workers));
        Ok(c)
    }

    /// `log:` and `access_log:`.
    fn logs(&self, file: &File, c: &mut GatewayConfig) -> Result<(), ConfigError> {
        if let Some(f) = &file.log.format {
            c.log_format = f
                .value
                .parse()
                .map_err(|e| self.err(f.referenced, format!("log.format: {e}")))?;
        }
        let Some(a) = &file.access_log else {
            return Ok(());
        };
        let at = a.referenced;
        let a = &a.value;
        let sample = match &a.sample {
            Some(s) if !(s.value > 0.0 && s.value <= 1.0) => {
                return Err(self.err(
                    s.referenced,
                    format!(
                        "access_log.sample {}: must be more than 0 and at most 1",
                        s.value
                    ),
                ))
            }
            Some(s) => Some((s.value, s.referenced)),
            None => None,
        };
        let mode = a.mode.as_ref().map_or("all", |m| m.value.as_str());
        c.access_log.mode = match (mode, sample) {
            ("sampled", Some((share, _))) => Mode::Sampled(share),
            ("sampled", None) => Mode::Sampled(DEFAULT_SAMPLE),
            (_, Some((_, at))) => {
                return Err(self.err(at, "access_log.sample: only with mode: sampled"))
            }
            ("all", None) => Mode::All,
            ("errors", None) => Mode::Errors,
            ("off", None) => Mode::Off,
            (other, None) => {
                let at = a.mode.as_ref().map_or(at, |m| m.referenced);
                return Err(self.err(
                    at,
                    format!("access_log.mode {other:?}: give all, errors, sampled or off"),
                ));
            }
        };
        if let Some(p) = &a.path {
            c.access_log.output = match p.value.as_str() {
                "stdout" => Output::Stdout,
                "stderr" => Output::Stderr,
                _ => Output::File(self.resolve(&self.expand(p)?)),
            };
        }
        Ok(())
    }

    /// `ui:`: the dashboard's bounds.
    fn ui(&self, u: &Ui, c: &mut GatewayConfig) -> Result<(), ConfigError> {
        if let Some(n) = &u.clients {
            if n.value > 1024 {
                let why = "ui.clients: at most 1024 (0: no event streams)";
                return Err(self.err(n.referenced, why));
            }
            c.ui.clients = n.value as usize;
        }
        if let Some(d) = &u.interval {
            let (low, high) = (Duration::from_millis(100), Duration::from_secs(60));
            if d.value.0 < low || d.value.0 > high {
                return Err(self.err(d.referenced, "ui.interval: between 100ms and 60s"));
            }
            c.ui.interval = d.value.0;
        }
        if let Some(n) = &u.max_missed {
            if !(1..=1024).contains(&n.value) {
                return Err(self.err(n.referenced, "ui.max_missed: between 1 and 1024 updates"));
            }
            c.ui.max_missed = n.value;
        }
        Ok(())
    }

    /// `register:`: the registration path and its own listener.
    fn register(&self, r: &Register, c: &mut GatewayConfig) -> Result<(), ConfigError> {
        if let Some(p) = &r.path {
            let v = &p.value;
            if !v.starts_with('/')
                || v.contains(['?', '#', ' '])
                || v.starts_with("/_vyx/") && v != "/_vyx/register"
            {
                return Err(self.err(
                    p.referenced,
                    format!("register.path {v:?}: must be a path starting with '/', without '?', '#' or spaces, and not another /_vyx/ endpoint"),
                ));
            }
            c.register_path = v.clone();
        }
        c.register_listen = r.listen.as_ref().map(|a| a.0);
        Ok(())
    }

    /// `timeouts:`.
    fn timeouts(&self, t: &Timeouts, c: &mut GatewayConfig) -> Result<(), ConfigError> {
        let set = |slot: &mut Duration, v: &Option<Dur>| {
            if let Some(d) = v {
                *slot = d.0;
            }
        };
        set(&mut c.request_timeout, &t.request);
        if let Some(d) = t.header_read {
            c.header_read_timeout = Some(d.0);
        }
        set(&mut c.body_idle_timeout, &t.body_idle);
        set(&mut c.upgrade_idle_timeout, &t.upgrade_idle);
        set(&mut c.linger_timeout, &t.linger);
        set(&mut c.linger_idle_timeout, &t.linger_idle);
        set(&mut c.min_body_rate_grace, &t.body_rate_grace);
        set(&mut c.handshake_timeout, &t.handshake);
        if let Some(h) = &t.heartbeat {
            // WELCOME carries it as heartbeat_ms, 1..=2^31−1 (§3.8): a worker refuses more.
            if h.value.0.as_millis() > MAX_WINDOW as u128 {
                return Err(self.err(
                    h.referenced,
                    format!(
                        "timeouts.heartbeat {:?}: must be at most {MAX_WINDOW}ms (about 24 days)",
                        h.value.0
                    ),
                ));
            }
            c.heartbeat = h.value.0;
        }
        set(&mut c.queue_timeout, &t.queue);
        set(&mut c.drain_grace, &t.drain_grace);
        set(&mut c.readiness_delay, &t.readiness_delay);
        set(&mut c.startup_grace, &t.startup_grace);
        set(&mut c.send_timeout, &t.send);
        Ok(())
    }

    /// `limits:` on requests, routes and connections.
    fn limits(&self, l: &Limits, c: &mut GatewayConfig) -> Result<(), ConfigError> {
        if let Some(s) = l.max_body {
            c.max_body = s.0;
        }
        if let Some(s) = &l.max_header {
            if !(8 << 10..=16 << 20).contains(&s.value.0) {
                return Err(self.err(
                    s.referenced,
                    format!(
                        "limits.max_header {}: must be between 8KiB and 16MiB",
                        s.value.0
                    ),
                ));
            }
            c.max_header = Some(s.value.0 as usize);
        }
        if let Some(n) = &l.routes_per_worker {
            if !(1..=MAX_ROUTES as u32).contains(&n.value) {
                return Err(self.err(
                    n.referenced,
                    format!(
                        "limits.routes_per_worker {}: must be between 1 and {MAX_ROUTES}",
                        n.value
                    ),
                ));
            }
            c.routes_per_worker = n.value as usize;
        }
        if let Some(n) = &l.streams_per_connection {
            if !(1..=MAX_CONCURRENCY).contains(&n.value) {
                return Err(self.err(
                    n.referenced,
                    format!(
                        "limits.streams_per_connection {}: must be between 1 and {MAX_CONCURRENCY}",
                        n.value
                    ),
                ));
            }
            c.max_concurrency_per_connection = n.value;
        }
        if let Some(n) = &l.max_connections {
            if n.value < 1 {
                return Err(self.err(n.referenced, "limits.max_connections: must be at least 1"));
            }
            c.max_connections = Some(usize::try_from(n.value).unwrap_or(usize::MAX));
        }
        Ok(())
    }

    /// `limits:` on the buffers held for bodies, and on HTTP/2 control frames.
    fn buffer_limits(&self, l: &Limits, c: &mut GatewayConfig) -> Result<(), ConfigError> {
        if let Some(s) = &l.body_buffer {
            if s.value.0 > 16 << 20 {
                return Err(self.err(
                    s.referenced,
                    format!("limits.body_buffer {}: must be at most 16MiB", s.value.0),
                ));
            }
            c.body_buffer = s.value.0;
        }
        if let Some(s) = l.body_buffer_total {
            c.body_buffer_total = s.0;
        }
        if let Some(s) = l.min_body_rate {
            c.min_body_rate = s.0;
        }
        if let Some(s) = &l.response_buffer {
            if s.value.0 > 1 << 30 {
                return Err(self.err(
                    s.referenced,
                    format!("limits.response_buffer {}: must be at most 1GiB", s.value.0),
                ));
            }
            c.response_buffer = s.value.0;
        }
        if let Some(s) = l.response_buffer_total {
            c.response_buffer_total = s.0;
        }
        if let Some(s) = l.linger_bytes {
            c.linger_bytes = Some(s.0);
        }
        if let Some(n) = &l.streamed_upload_slots {
            if !(1..=100).contains(&n.value) {
                return Err(self.err(
                    n.referenced,
                    format!(
                        "limits.streamed_upload_slots {}: a percentage of each worker's slots, between 1 and 100",
                        n.value
                    ),
                ));
            }
            c.streamed_upload_slots = n.value;
        }
        if let Some(n) = &l.h2_control_frames {
            if n.value < 10 {
                return Err(self.err(
                    n.referenced,
                    "limits.h2_control_frames: must be at least 10",
                ));
            }
            c.h2_control_frames = n.value;
        }
        Ok(())
    }

    /// `workers:`: each entry checked, the local ones to start put in `c`, and the
    /// credentials of all.
    fn workers(
        &self,
        workers: &[Worker],
        c: &mut GatewayConfig,
    ) -> Result<HashMap<String, DeclaredWorker>, ConfigError> {
        let mut declared: HashMap<String, DeclaredWorker> = HashMap::new();
        let mut first_at: HashMap<String, u64> = HashMap::new();
        for w in workers {
            let id = &w.id.value;
            let at = w.id.referenced;
            if !is_worker_id(id) {
                return Err(self.err(
                    at,
                    format!("worker id {id:?}: use 1 to 128 characters of A-Z a-z 0-9 . _ : @ / -"),
                ));
            }
            if let Some(line) = first_at.insert(id.clone(), at.line()) {
                return Err(self.err(at, format!("worker id {id:?} is declared twice (first on line {line}); replicas of one id are set with replicas:")));
            }
            let (entry, local) = self.worker(w)?;
            declared.insert(id.clone(), entry);
            c.local_workers.extend(local);
        }
        c.declared_workers = workers.iter().map(|w| w.id.value.clone()).collect();
        Ok(declared)
    }
}
