//! `vyx.yaml`: the file's shape (described in the README's "The gateway" section and in
//! `examples/vyx.yaml`), its parsing with the line and column in every error, and its
//! translation into a [`GatewayConfig`].
//!
//! ```
//! let dir = std::env::temp_dir();
//! let path = dir.join("vyx-doc-example.yaml");
//! std::fs::write(&path, "listen: 127.0.0.1:0\naccept_unknown_workers: true\n").unwrap();
//! let config = vyx_gateway::file_config::load(&path).unwrap();
//! assert!(!config.dev_mode);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use vyx_core::handshake::is_worker_id;
use vyx_core::limits::{MAX_CONCURRENCY, MAX_ROUTES, MAX_WINDOW};

use crate::auth::{Credentials, DeclaredWorker, Secret};
use crate::config::{GatewayConfig, LocalWorker, RestartPolicy, RestartWhen};
use crate::trusted_proxies::IpNet;

/// A file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place in the file (e.g. it cannot be read).
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------
// The file's shape. Every struct refuses unknown keys.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<Listen>,
    #[serde(default)]
    register: Register,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    routes: Routes,
    admin: Option<Spanned<Admin>>,
    tls: Option<Spanned<Tls>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    #[serde(default)]
    client_half_close: bool,
    #[serde(default)]
    accept_unknown_workers: bool,
    #[serde(default)]
    workers: Vec<Worker>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Register {
    path: Option<Spanned<String>>,
    listen: Option<Addr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Timeouts {
    request: Option<Dur>,
    header_read: Option<Dur>,
    body_idle: Option<Dur>,
    body_rate_grace: Option<Dur>,
    handshake: Option<Dur>,
    heartbeat: Option<Spanned<Dur>>,
    queue: Option<Dur>,
    drain_grace: Option<Dur>,
    send: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Limits {
    max_body: Option<Size>,
    max_header: Option<Spanned<Size>>,
    routes_per_worker: Option<Spanned<u32>>,
    streams_per_connection: Option<Spanned<u32>>,
    max_connections: Option<Spanned<u64>>,
    body_buffer: Option<Spanned<Size>>,
    body_buffer_total: Option<Size>,
    min_body_rate: Option<Size>,
    response_buffer: Option<Spanned<Size>>,
    response_buffer_total: Option<Size>,
    streamed_upload_slots: Option<Spanned<u32>>,
    h2_control_frames: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Routes {
    claim_grace: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Admin {
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    token: Option<Spanned<IgnoredAny>>,
}

/// `tls:`: a certificate chain and its key, PEM files (relative to the file's folder).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tls {
    cert: String,
    key: String,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Local,
    Remote,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Worker {
    id: Spanned<String>,
    #[serde(default)]
    mode: Mode,
    command: Option<Spanned<String>>,
    args: Option<Vec<Spanned<String>>>,
    env: Option<BTreeMap<String, Spanned<Scalar>>>,
    cwd: Option<Spanned<String>>,
    replicas: Option<Spanned<u32>>,
    restart: Option<Spanned<Restart>>,
    routes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    allow_remote: bool,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    token: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Restart {
    #[serde(default)]
    policy: Policy,
    max_fast_failures: Option<Spanned<u32>>,
    fast_failure: Option<Dur>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum Policy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// One address or a list of them.
struct Listen(Vec<SocketAddr>);

/// `IP:port`.
struct Addr(SocketAddr);

/// `500ms`, `30s`, `2m`, `1h`.
#[derive(Clone, Copy)]
struct Dur(Duration);

/// Bytes, as an integer or with a unit (`64KiB`, `1MiB`, `1GiB`).
#[derive(Clone, Copy)]
struct Size(u64);

/// An environment value: a string, or a number or boolean taken as written.
struct Scalar(String);

const ADDR_HINT: &str = "an IP address and port such as 127.0.0.1:9000 or [::1]:9000";

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an address: write {ADDR_HINT}"))
}

/// Parses `500ms`, `30s`, `2m` or `1h`; more than zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let hint = "write a whole number with a unit: ms, s, m or h (e.g. \"500ms\", \"30s\", \"2m\")";
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: {hint}"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("{s:?} is not a duration: {hint}")),
    }
    .ok_or_else(|| format!("{s:?} is too long"))?;
    if ms == 0 {
        return Err(format!("{s:?}: a duration must be more than zero"));
    }
    Ok(Duration::from_millis(ms))
}

/// Parses a byte count: `65536`, `64KiB`, `1MiB`, `1GiB` (also `B`, `KB`, `MB`, `GB` as
/// powers of ten).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let hint =
        "write bytes as a number, or with a unit: B, KiB, MiB, GiB, KB, MB, GB (e.g. \"64KiB\")";
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size: {hint}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("{s:?} is not a size: {hint}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A visitor for scalars written as text, with a sentence for anything else.
struct TextVisitor<F> {
    expecting: &'static str,
    parse: F,
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for TextVisitor<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.parse)(&v.to_string()).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.parse)(&v.to_string()).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor {
            expecting: ADDR_HINT,
            parse: parse_addr,
        })
        .map(Addr)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor {
            expecting: "a duration such as \"500ms\", \"30s\" or \"2m\"",
            parse: parse_duration,
        })
        .map(Dur)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor {
            expecting: "a size in bytes, or with a unit such as \"64KiB\" or \"1MiB\"",
            parse: parse_size,
        })
        .map(Size)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Listen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{ADDR_HINT}, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Listen, E> {
                parse_addr(v).map(|a| Listen(vec![a])).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Listen, A::Error> {
                let mut out = Vec::new();
                while let Some(Addr(a)) = seq.next_element()? {
                    out.push(a);
                }
                if out.is_empty() {
                    return Err(de::Error::custom(format!(
                        "an empty list: give at least one address ({ADDR_HINT})"
                    )));
                }
                Ok(Listen(out))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------
// Loading and checking.

/// Reads, parses and checks a `vyx.yaml`, resolving tokens (from the environment or token
/// files) and relative paths (against the file's directory).
pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the file: {e}"),
    })?;
    parse(path, &text)
}

/// [`load`] for text already read; `path` names the file in errors and anchors relative
/// paths.
pub fn parse(path: &Path, text: &str) -> Result<GatewayConfig, ConfigError> {
    let file: File = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        ConfigError {
            file: path.to_path_buf(),
            line,
            column,
            message: saphyr_message(&e),
        }
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Checker {
        file: path.to_path_buf(),
        base,
    }
    .build(file)
}

/// The parser's sentence, without the `error: line L column C:` it starts with (we print
/// the place ourselves, in the `file:line:column:` form editors understand), and in words
/// for a person writing the file.
fn saphyr_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let mut m = full.lines().next().unwrap_or("").trim();
    m = m.strip_prefix("error:").unwrap_or(m).trim_start();
    if let Some(rest) = m.strip_prefix("line ") {
        if let Some((_, after)) = rest.split_once(": ") {
            m = after;
        }
    }
    let m = m.replace("unknown field", "unknown key");
    // Advice for programs using the library, not for people writing the file.
    let m = match m.split_once(", set DuplicateKeyPolicy") {
        Some((head, _)) => head.replace("duplicate mapping key", "a key given twice"),
        None => m,
    };
    match m.as_str() {
        "invalid u32" | "invalid u64" => "expected a whole number that is not negative".into(),
        "expected sequence start" => "expected a list".into(),
        "expected mapping start" => "expected a mapping of keys to values".into(),
        _ => m,
    }
}

struct Checker {
    file: PathBuf,
    base: PathBuf,
}

type Located = serde_saphyr::Location;

impl Checker {
    fn err(&self, at: Located, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Expands `${NAME}` and `${NAME:-default}` from the environment.
    fn expand(&self, s: &Spanned<String>) -> Result<String, ConfigError> {
        expand_env(&s.value).map_err(|m| self.err(s.referenced, m))
    }

    fn token(
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

    fn build(&self, file: File) -> Result<GatewayConfig, ConfigError> {
        let mut c = GatewayConfig {
            dev_mode: false,
            config_file: Some(self.file.clone()),
            ..GatewayConfig::default()
        };
        if let Some(Listen(addrs)) = file.listen {
            c.listen = addrs[0];
            c.extra_listen = addrs[1..].to_vec();
        }
        if let Some(p) = &file.register.path {
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
        c.register_listen = file.register.listen.map(|a| a.0);

        let t = &file.timeouts;
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
        set(&mut c.send_timeout, &t.send);

        let l = &file.limits;
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

        if let Some(d) = file.routes.claim_grace {
            c.claim_grace = d.0;
        }
        if let Some(n) = &l.max_connections {
            if n.value < 1 {
                return Err(self.err(n.referenced, "limits.max_connections: must be at least 1"));
            }
            c.max_connections = Some(usize::try_from(n.value).unwrap_or(usize::MAX));
        }
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
        c.client_half_close = file.client_half_close;
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
            let files = crate::tls::TlsFiles {
                cert: self.resolve(&t.value.cert),
                key: self.resolve(&t.value.key),
            };
            // Read now, so that `vyx check` and the start refuse files that cannot be used.
            crate::tls::load(&files).map_err(|e| self.err(t.referenced, format!("tls: {e}")))?;
            c.tls = Some(files);
        }

        let mut declared: HashMap<String, DeclaredWorker> = HashMap::new();
        let mut first_at: HashMap<String, u64> = HashMap::new();
        for w in &file.workers {
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
        c.declared_workers = file.workers.iter().map(|w| w.id.value.clone()).collect();
        c.auth = Arc::new(Credentials::new(declared, file.accept_unknown_workers));
        Ok(c)
    }

    /// One `workers:` entry: its credentials, and what to start for a local one.
    fn worker(&self, w: &Worker) -> Result<(DeclaredWorker, Option<LocalWorker>), ConfigError> {
        let id = &w.id.value;
        let at = w.id.referenced;
        let owner = format!("worker {id:?}");
        let token = self.token(&owner, &w.token_env, &w.token_file, &w.token)?;
        let routes = match &w.routes {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for r in list {
                    if !r.value.starts_with('/') {
                        return Err(self.err(
                            r.referenced,
                            format!("{owner}: route prefix {:?} must start with '/'", r.value),
                        ));
                    }
                    out.push(r.value.clone());
                }
                Some(out)
            }
        };
        match w.mode {
            Mode::Remote => {
                let local_only = [
                    ("command", w.command.as_ref().map(|s| s.referenced)),
                    (
                        "args",
                        w.args
                            .as_ref()
                            .and_then(|a| a.first())
                            .map(|s| s.referenced),
                    ),
                    ("cwd", w.cwd.as_ref().map(|s| s.referenced)),
                    ("replicas", w.replicas.as_ref().map(|s| s.referenced)),
                    ("restart", w.restart.as_ref().map(|s| s.referenced)),
                    (
                        "env",
                        w.env
                            .as_ref()
                            .and_then(|e| e.values().next())
                            .map(|s| s.referenced),
                    ),
                ];
                if let Some((key, Some(loc))) = local_only.into_iter().find(|(_, l)| l.is_some()) {
                    return Err(self.err(loc, format!("{owner} is remote: it starts by itself, so {key} is not allowed (use mode: local to have the gateway start it)")));
                }
                if w.allow_remote {
                    return Err(self.err(at, format!("{owner}: allow_remote is for local workers; a remote worker is always admitted from anywhere")));
                }
                let Some(token) = token else {
                    return Err(self.err(
                        at,
                        format!("{owner} is remote: it needs token_env or token_file"),
                    ));
                };
                let remote = DeclaredWorker {
                    token,
                    routes,
                    loopback_only: false,
                };
                Ok((remote, None))
            }
            Mode::Local => {
                let Some(command) = &w.command else {
                    return Err(self.err(at, format!("{owner} is local (the default mode): it needs a command to start (or set mode: remote)")));
                };
                let command_text = self.expand(command)?;
                if command_text.trim().is_empty() {
                    return Err(self.err(command.referenced, format!("{owner}: command is empty")));
                }
                // A bare name is looked up on PATH; anything with a slash is a path.
                let program = if command_text.contains('/') {
                    self.resolve(&command_text)
                } else {
                    PathBuf::from(&command_text)
                };
                let mut args = Vec::new();
                for a in w.args.iter().flatten() {
                    args.push(self.expand(a)?);
                }
                let mut env = Vec::new();
                for (k, v) in w.env.iter().flatten() {
                    let value = expand_env(&v.value.0).map_err(|m| self.err(v.referenced, m))?;
                    env.push((k.clone(), value));
                }
                let cwd = match &w.cwd {
                    Some(d) => self.resolve(&self.expand(d)?),
                    None => self.base.clone(),
                };
                let replicas = match &w.replicas {
                    Some(r) if !(1..=256).contains(&r.value) => {
                        return Err(self.err(
                            r.referenced,
                            format!("{owner}: replicas {} must be between 1 and 256", r.value),
                        ))
                    }
                    Some(r) => r.value,
                    None => 1,
                };
                let mut restart = RestartPolicy::default();
                if let Some(r) = &w.restart {
                    restart.when = match r.value.policy {
                        Policy::Always => RestartWhen::Always,
                        Policy::OnFailure => RestartWhen::OnFailure,
                        Policy::Never => RestartWhen::Never,
                    };
                    if let Some(n) = &r.value.max_fast_failures {
                        if n.value == 0 {
                            return Err(self.err(
                                n.referenced,
                                format!("{owner}: restart.max_fast_failures must be at least 1"),
                            ));
                        }
                        restart.max_fast_failures = n.value;
                    }
                    if let Some(d) = r.value.fast_failure {
                        restart.fast_failure = d.0;
                    }
                }
                let token = token.unwrap_or_else(Secret::random);
                let declared = DeclaredWorker {
                    token: token.clone(),
                    routes,
                    loopback_only: !w.allow_remote,
                };
                let local = LocalWorker {
                    id: id.clone(),
                    program,
                    args,
                    env,
                    cwd,
                    replicas,
                    restart,
                    token,
                };
                Ok((declared, Some(local)))
            }
        }
    }
}

/// Expands `${NAME}` and `${NAME:-default}` (the default may itself use `${...}`); `$$`
/// is a literal `$`. An empty variable counts as unset.
fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            // The matching '}', so that a default may hold another ${...}.
            let mut depth = 0usize;
            let end = r
                .char_indices()
                .find(|&(_, ch)| match ch {
                    '{' => {
                        depth += 1;
                        false
                    }
                    '}' if depth == 0 => true,
                    '}' => {
                        depth -= 1;
                        false
                    }
                    _ => false,
                })
                .map(|(i, _)| i)
                .ok_or_else(|| format!("{s:?}: '${{' without a closing '}}'"))?;
            let inner = &r[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            match (std::env::var(name).ok().filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(&expand_env(d)?),
                (None, None) => {
                    return Err(format!(
                        "{s:?}: environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                    ))
                }
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        match parse(Path::new("t/vyx.yaml"), text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("1 TB").is_err());
    }

    #[test]
    fn env_expansion() {
        std::env::set_var("VYX_TEST_EXPAND", "/x");
        assert_eq!(expand_env("${VYX_TEST_EXPAND}/bin").unwrap(), "/x/bin");
        assert_eq!(expand_env("${VYX_TEST_UNSET_9:-d}/b").unwrap(), "d/b");
        assert_eq!(expand_env("a$$b").unwrap(), "a$b");
        assert_eq!(
            expand_env("${VYX_TEST_UNSET_9:-${VYX_TEST_EXPAND}/t}/b").unwrap(),
            "/x/t/b"
        );
        assert!(expand_env("${VYX_TEST_UNSET_9}").is_err());
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = err("listen: 127.0.0.1:9000\ntimeouts:\n  request: 30\n");
        assert_eq!((e.line, e.column), (3, 12), "{e}");
        assert!(e.message.contains("unit"), "{e}");
        let e = err("listen: 127.0.0.1:9000\nlistne: 1\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(
            e.message
                .starts_with("unknown key `listne`, expected one of listen"),
            "{e}"
        );
    }

    #[test]
    fn send_timeout_and_response_buffers() {
        let c = parse(
            Path::new("vyx.yaml"),
            "timeouts: {send: 5s}\nlimits: {response_buffer: 2MiB, response_buffer_total: 16MiB, streamed_upload_slots: 25}\n",
        )
        .unwrap();
        assert_eq!(c.streamed_upload_slots, 25);
        let e = err("limits: {streamed_upload_slots: 0}\n");
        assert!(e.message.contains("between 1 and 100"), "{e}");
        assert_eq!(c.send_timeout, Duration::from_secs(5));
        assert_eq!(
            (c.response_buffer, c.response_buffer_total),
            (2 << 20, 16 << 20)
        );
        let e = err("timeouts: {send: 0s}\n");
        assert!(e.message.contains("more than zero"), "{e}");
        let e = err("limits: {response_buffer: 2GiB}\n");
        assert!(e.message.contains("at most 1GiB"), "{e}");
    }

    #[test]
    fn front_limits_and_trusted_proxies() {
        let c = parse(
            Path::new("vyx.yaml"),
            "timeouts: {header_read: 2s, body_rate_grace: 1s}\n\
             limits: {max_connections: 100, body_buffer: 64KiB, body_buffer_total: 1MiB, min_body_rate: 1KiB, h2_control_frames: 50}\n\
             trusted_proxies: [10.0.0.0/8, '::1']\n\
             client_half_close: true\n",
        )
        .unwrap();
        assert!(c.client_half_close);
        assert_eq!(c.h2_control_frames, 50);
        assert_eq!(c.header_read_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.min_body_rate_grace, Duration::from_secs(1));
        assert_eq!(c.max_connections, Some(100));
        assert_eq!((c.body_buffer, c.body_buffer_total), (64 << 10, 1 << 20));
        assert_eq!(c.min_body_rate, 1024);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.trusted_proxies[0].contains("10.9.8.7".parse().unwrap()));
        // The defaults hold without the keys.
        let d = parse(Path::new("vyx.yaml"), "listen: 127.0.0.1:0\n").unwrap();
        assert_eq!(d.header_read_timeout, Some(Duration::from_secs(30)));
        assert!(d.trusted_proxies.is_empty() && d.max_connections.is_none());
        assert!(!d.client_half_close);
        assert_eq!(d.h2_control_frames, 1000);
        let e = err("limits: {h2_control_frames: 2}\n");
        assert!(e.message.contains("h2_control_frames"), "{e}");
        let e = err("trusted_proxies:\n  - 10.0.0.1/8\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("10.0.0.0/8"), "{e}");
        let e = err("limits: {max_connections: 0}\n");
        assert!(e.message.contains("max_connections"), "{e}");
    }
}
