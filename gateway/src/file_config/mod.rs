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

mod checks;
mod env;
mod otel;
mod scalars;
mod schema;
mod tls;
mod workers;

use std::fmt;
use std::path::{Path, PathBuf};

use checks::Checker;
use schema::File;

use crate::config::GatewayConfig;

pub use scalars::{parse_duration, parse_size};

/// The most shards `runtime.threads` (and `--threads`) may ask for.
pub const MAX_THREADS: u32 = 1024;

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn err(text: &str) -> ConfigError {
        match parse(Path::new("t/vyx.yaml"), text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e,
        }
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
    fn upgrade_idle_timeout() {
        let c = parse(Path::new("vyx.yaml"), "timeouts: {upgrade_idle: 90s}\n").unwrap();
        assert_eq!(c.upgrade_idle_timeout, Duration::from_secs(90));
        let d = parse(Path::new("vyx.yaml"), "listen: 127.0.0.1:0\n").unwrap();
        assert_eq!(d.upgrade_idle_timeout, vyx_core::limits::UPGRADE_IDLE);
        let e = err("timeouts: {upgrade_idle: 0s}\n");
        assert!(e.message.contains("more than zero"), "{e}");
    }

    #[test]
    fn lingering_close_limits() {
        let d = parse(Path::new("vyx.yaml"), "listen: 127.0.0.1:0\n").unwrap();
        assert_eq!(
            (d.linger_timeout, d.linger_idle_timeout, d.linger_bytes),
            (Duration::from_secs(30), Duration::from_secs(5), None)
        );
        let c = parse(
            Path::new("vyx.yaml"),
            "timeouts: {linger: 10s, linger_idle: 2s}\nlimits: {linger_bytes: 0}\n",
        )
        .unwrap();
        assert_eq!(
            (c.linger_timeout, c.linger_idle_timeout, c.linger_bytes),
            (Duration::from_secs(10), Duration::from_secs(2), Some(0))
        );
        let b = parse(Path::new("vyx.yaml"), "limits: {linger_bytes: 8MiB}\n").unwrap();
        assert_eq!(b.linger_bytes, Some(8 << 20));
        let e = err("timeouts: {linger_idle: 0s}\n");
        assert!(e.message.contains("more than zero"), "{e}");
    }

    #[test]
    fn retries_readiness_delay_and_startup_grace() {
        let d = parse(Path::new("vyx.yaml"), "listen: 127.0.0.1:0\n").unwrap();
        assert!(d.retries, "retries are on by default");
        assert_eq!(d.readiness_delay, Duration::ZERO);
        assert_eq!(d.startup_grace, Duration::from_secs(60));
        let c = parse(
            Path::new("vyx.yaml"),
            "retries: {enabled: false}\ntimeouts: {readiness_delay: 5s, startup_grace: 10s}\n",
        )
        .unwrap();
        assert!(!c.retries);
        assert_eq!(c.readiness_delay, Duration::from_secs(5));
        assert_eq!(c.startup_grace, Duration::from_secs(10));
        let e = err("retries: {enabled: true, attempts: 2}\n");
        assert!(e.message.contains("attempts"), "{e}");
    }

    #[test]
    fn log_format_and_access_log() {
        use crate::access_log::{Mode, Output};
        use crate::log_format::LogFormat;
        let c = parse(Path::new("t/vyx.yaml"), "log: {format: json}\n").unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.access_log, Default::default());
        let c = parse(
            Path::new("t/vyx.yaml"),
            "access_log: {mode: sampled, sample: 0.25, path: logs/access.log}\n",
        )
        .unwrap();
        assert_eq!(c.access_log.mode, Mode::Sampled(0.25));
        assert_eq!(
            c.access_log.output,
            Output::File("t/logs/access.log".into())
        );
        let c = parse(
            Path::new("t/vyx.yaml"),
            "access_log: {mode: errors, path: stderr}\n",
        )
        .unwrap();
        assert_eq!(
            (c.access_log.mode, c.access_log.output),
            (Mode::Errors, Output::Stderr)
        );
        let c = parse(Path::new("t/vyx.yaml"), "access_log: {mode: sampled}\n").unwrap();
        assert_eq!(c.access_log.mode, Mode::Sampled(0.1));
        assert!(err("log: {format: xml}\n")
            .message
            .contains("give json or text"));
        assert!(err("access_log: {mode: some}\n")
            .message
            .contains("all, errors, sampled or off"));
        assert!(err("access_log: {mode: sampled, sample: 0}\n")
            .message
            .contains("more than 0"));
        assert!(err("access_log: {sample: 0.5}\n")
            .message
            .contains("only with mode: sampled"));
        assert!(err("access_log: {format: json}\n")
            .message
            .contains("unknown key"));
    }

    #[test]
    fn tracing_section() {
        let d = parse(Path::new("vyx.yaml"), "listen: 127.0.0.1:0\n").unwrap();
        assert_eq!(d.tracing, None);
        let c = parse(
            Path::new("vyx.yaml"),
            "tracing:\n  endpoint: http://127.0.0.1:4318\n  service_name: edge\n  sample_ratio: 0.25\n  headers: {x-api-key: k}\n  queue: 100\n",
        )
        .unwrap();
        let t = c.tracing.unwrap();
        assert_eq!(t.endpoint.as_deref(), Some("http://127.0.0.1:4318"));
        assert_eq!(t.service_name.as_deref(), Some("edge"));
        assert_eq!(t.sample_ratio, Some(0.25));
        assert_eq!(t.headers, vec![("x-api-key".into(), "k".into())]);
        assert_eq!(t.queue, 100);
        let e = err("tracing:\n  sample_ratio: 1.5\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("from 0 to 1"), "{e}");
        let e = err("tracing: {endpoint: 'https://c:4318'}\n");
        assert!(e.message.contains("https is not supported"), "{e}");
        let e = err("tracing: {endpoint: 'collector:4318'}\n");
        assert!(e.message.contains("base URL"), "{e}");
        let e = err("tracing: {headers: {'a b': c}}\n");
        assert!(e.message.contains("not a header name"), "{e}");
        let e = err("tracing: {queue: 0}\n");
        assert!(e.message.contains("tracing.queue"), "{e}");
        let e = err("tracing: {sampler: 1}\n");
        assert!(e.message.contains("unknown key"), "{e}");
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

    #[test]
    fn runtime_threads() {
        let c = parse(Path::new("vyx.yaml"), "runtime: {threads: 3}\n").unwrap();
        assert_eq!(c.threads, 3);
        let d = parse(Path::new("vyx.yaml"), "listen: 127.0.0.1:0\n").unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(d.threads, cores);
        for bad in ["0", "1025"] {
            let e = err(&format!("runtime:\n  threads: {bad}\n"));
            assert_eq!(e.line, 2, "{e}");
            assert!(e.message.contains("runtime.threads"), "{e}");
        }
        let e = err("runtime: {workers: 2}\n");
        assert!(e.message.contains("unknown"), "{e}");
    }
}
