//! Draining on SIGTERM and SIGINT (Ctrl-C elsewhere).

use std::time::Duration;

use tracing::{info, warn};
use vyx_core::session::Engine;

/// Drains the engine on SIGTERM or SIGINT.
pub(crate) async fn drain_on_signal(engine: Engine, mut signals: Signals, deadline: Duration) {
    let name = signals.recv().await;
    info!(
        signal = name,
        deadline_ms = deadline.as_millis() as u64,
        "signal received; draining"
    );
    engine.drain(deadline);
    loop {
        let name = signals.recv().await;
        warn!(
            signal = name,
            "signal received again; still draining until the deadline"
        );
    }
}

/// SIGTERM and SIGINT, registered when the worker starts.
pub(crate) struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    pub(crate) fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(signal = name, error = %e, "cannot handle signal");
                None
            }
        };
        Signals {
            term: install(SignalKind::terminate(), "SIGTERM"),
            int: install(SignalKind::interrupt(), "SIGINT"),
        }
    }

    #[cfg(not(unix))]
    pub(crate) fn install() -> Signals {
        Signals {}
    }

    #[cfg(unix)]
    async fn recv(&mut self) -> &'static str {
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await
                    }
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => "SIGTERM",
            _ = next(&mut self.int) => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "ctrl-c",
            Err(_) => std::future::pending().await,
        }
    }
}
