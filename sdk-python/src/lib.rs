//! `vyx._core`: the host API of `vyx-core` (`spec/HOSTS.md`) as a Python extension module.
//!
//! The shape keeps asyncio fast and free of GIL deadlocks (`docs/ARCHITECTURE.md`, "The pull
//! engine and how the bindings meet the core"): no Rust thread ever attaches to the
//! interpreter. A tokio task pulls batches from the engine into a [`hub::Hub`] queue and
//! writes one byte to a socket the asyncio loop watches (`loop.add_reader`); the loop then
//! takes the whole queue in one synchronous call, [`engine::PyEngine::take`]. Answers go out
//! in synchronous calls too (`respond`, `try_send`); the rare readiness waits come back
//! through the same queue. Python holds no protocol logic: it maps handlers, requests and
//! responses to these calls.

mod engine;
mod hub;
mod log;
mod ws;

use pyo3::prelude::*;

pyo3::create_exception!(
    vyx,
    VyxError,
    pyo3::exceptions::PyException,
    "Base class of every error the vyx SDK raises."
);
pyo3::create_exception!(
    vyx,
    ConfigError,
    VyxError,
    "The worker's configuration is invalid (address, id, concurrency, routes)."
);
pyo3::create_exception!(
    vyx,
    AlreadyStartedError,
    VyxError,
    "The worker was started a second time: a worker runs once."
);
pyo3::create_exception!(
    vyx,
    RefusedError,
    VyxError,
    "The gateway refused this worker for good (bad token, route conflict, ...)."
);
pyo3::create_exception!(
    vyx,
    StreamError,
    VyxError,
    "A request's stream cannot do what was asked (already answered, reset, ...)."
);
pyo3::create_exception!(
    vyx,
    StreamResetError,
    StreamError,
    "The gateway reset the stream: the client went away or timed out."
);
pyo3::create_exception!(
    vyx,
    ConnectionLostError,
    StreamError,
    "The connection to the gateway ended before the stream did."
);
pyo3::create_exception!(
    vyx,
    InvalidResponseError,
    StreamError,
    "The response head cannot be sent (bad status or header); the core answered 500."
);

/// The module: the engine class and the error hierarchy.
#[pymodule(gil_used = true)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    log::install();
    let py = m.py();
    m.add_class::<engine::PyEngine>()?;
    m.add_function(pyo3::wrap_pyfunction!(log::set_log_level, m)?)?;
    m.add("VyxError", py.get_type::<VyxError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("RefusedError", py.get_type::<RefusedError>())?;
    m.add("AlreadyStartedError", py.get_type::<AlreadyStartedError>())?;
    m.add("StreamError", py.get_type::<StreamError>())?;
    m.add("StreamResetError", py.get_type::<StreamResetError>())?;
    m.add("ConnectionLostError", py.get_type::<ConnectionLostError>())?;
    m.add(
        "InvalidResponseError",
        py.get_type::<InvalidResponseError>(),
    )?;
    m.add("CORE_VERSION", env!("CARGO_PKG_VERSION"))?;
    // vyx-core's defaults, for the Python layer to use instead of repeating the numbers.
    use vyx_core::config;
    m.add("DEFAULT_MAX_CONCURRENCY", config::DEFAULT_MAX_CONCURRENCY)?;
    m.add(
        "DEFAULT_CONNECT_TIMEOUT",
        config::DEFAULT_CONNECT_TIMEOUT.as_secs_f64(),
    )?;
    m.add(
        "DEFAULT_DRAIN_TIMEOUT",
        config::DEFAULT_DRAIN_TIMEOUT.as_secs_f64(),
    )?;
    m.add("DEFAULT_WS_MAX_MESSAGE", ws::DEFAULT_MAX_MESSAGE)?;
    m.add("DEFAULT_WS_MAX_FRAME", ws::DEFAULT_MAX_FRAME)?;
    Ok(())
}
