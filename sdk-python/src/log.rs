//! The core's log records (`vyx_core::host_logs`) for Python's `logging`: no Rust thread
//! attaches to the interpreter; a record queued wakes the asyncio loops, which take the
//! records with their next batch and log them under `vyx.core` (spec/HOSTS.md §11).

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tracing::Level;
use vyx_core::host_logs::{self, Sink, Value};

/// Installs the forwarding subscriber (a program that installed its own keeps it).
pub(crate) fn install() {
    host_logs::on_queued(crate::hub::wake_all);
    host_logs::install(Sink::Host);
}

/// One record for Python: `(levelno, target, message, fields)`.
pub(crate) type PyRecord<'py> = (u8, String, String, Bound<'py, PyDict>);

/// The records queued since the last call.
pub(crate) fn take(py: Python<'_>) -> PyResult<Vec<PyRecord<'_>>> {
    host_logs::take()
        .into_iter()
        .map(|record| {
            let fields = PyDict::new(py);
            for (name, value) in record.fields {
                match value {
                    Value::Str(s) => fields.set_item(name, s)?,
                    Value::I64(n) => fields.set_item(name, n)?,
                    Value::U64(n) => fields.set_item(name, n)?,
                    Value::F64(n) => fields.set_item(name, n)?,
                    Value::Bool(b) => fields.set_item(name, b)?,
                }
            }
            let levelno = match record.level {
                Level::ERROR => 40,
                Level::WARN => 30,
                Level::INFO => 20,
                Level::DEBUG => 10,
                Level::TRACE => 5,
            };
            Ok((levelno, record.target, record.message, fields))
        })
        .collect()
}

/// Sets the core's level by name (`vyx_core::host_logs::parse_level`), for every engine.
#[pyfunction]
pub(crate) fn set_log_level(level: &str) -> PyResult<()> {
    let level = host_logs::parse_level(level)
        .map_err(|e| crate::ConfigError::new_err(format!("log level: {e}")))?;
    host_logs::set_level(level);
    Ok(())
}
