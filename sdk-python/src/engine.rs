//! `vyx._core.Engine`: one worker session. Requests are integer slots into a table of
//! [`Stream`] handles held here; Python objects wrapping them are plain, and a slot the
//! Python side releases without an answer is answered by the core (500).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::session::{
    ConnectionState, Engine, EngineError, Stream, StreamError, TryChunk, TrySend, WorkerConfig,
};

use crate::hub::{Hub, Item};
use crate::ws::{WsConn, WsEvent};
use crate::{
    ConfigError, ConnectionLostError, InvalidResponseError, RefusedError, StreamResetError,
    VyxError,
};

/// Requests taken from the engine per pull.
const BATCH: usize = 256;

/// How long `close` waits for the runtime's tasks to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The engine, its runtime, and the streams the Python side is answering.
#[pyclass(name = "Engine", module = "vyx._core", frozen)]
pub(crate) struct PyEngine {
    engine: Engine,
    hub: Arc<Hub>,
    /// Built on `start`, shut down on `close` (its threads end with it).
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    streams: Mutex<HashMap<u64, Stream>>,
    /// Accepted WebSockets by slot, until Python releases them (`ws_release`).
    websockets: Mutex<HashMap<u64, Arc<WsConn>>>,
    ws_max_message: usize,
    ws_max_frame: usize,
}

/// A header list from Python: `(name, value)` pairs of `str` or `bytes`.
fn header_pairs(headers: &Bound<'_, PyAny>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
    fn part(o: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        if let Ok(b) = o.cast::<PyBytes>() {
            return Ok(b.as_bytes().to_vec());
        }
        if let Ok(s) = o.cast::<PyString>() {
            return Ok(s.to_cow()?.as_bytes().to_vec());
        }
        Err(pyo3::exceptions::PyTypeError::new_err(
            "header names and values must be str or bytes",
        ))
    }
    let mut out = Vec::new();
    for pair in headers.try_iter()? {
        let pair = pair?;
        let (n, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
        out.push((part(&n)?, part(&v)?));
    }
    Ok(out)
}

fn stream_error(e: StreamError) -> PyErr {
    let msg = e.to_string();
    match e {
        StreamError::Reset { .. } => StreamResetError::new_err(msg),
        StreamError::ConnectionLost => ConnectionLostError::new_err(msg),
        StreamError::InvalidHead(_) => InvalidResponseError::new_err(msg),
        StreamError::InvalidState(_) => crate::StreamError::new_err(msg),
    }
}

fn engine_error(e: EngineError) -> PyErr {
    match e {
        EngineError::AlreadyStarted => crate::AlreadyStartedError::new_err(e.to_string()),
        EngineError::Config(_) | EngineError::NoRuntime => ConfigError::new_err(e.to_string()),
        EngineError::Refused(_) | EngineError::Closed { .. } => {
            RefusedError::new_err(e.to_string())
        }
    }
}

fn state_tuple<'py>(py: Python<'py>, state: &ConnectionState) -> PyResult<Bound<'py, PyTuple>> {
    match state {
        ConnectionState::Connecting => ("connecting",).into_pyobject(py),
        ConnectionState::Connected { connection_id } => {
            ("connected", connection_id.as_str()).into_pyobject(py)
        }
        ConnectionState::Reconnecting {
            attempt,
            delay,
            cause,
        } => (
            "reconnecting",
            *attempt,
            delay.as_secs_f64(),
            cause.as_str(),
        )
            .into_pyobject(py),
        ConnectionState::Draining => ("draining",).into_pyobject(py),
        ConnectionState::Stopped => ("stopped",).into_pyobject(py),
        ConnectionState::Failed { cause } => ("failed", cause.as_str()).into_pyobject(py),
    }
}

impl PyEngine {
    /// A clone of the slot's handle (the table's lock is not held while it is used).
    fn stream(&self, slot: u64) -> PyResult<Stream> {
        lock(&self.streams)
            .get(&slot)
            .cloned()
            .ok_or_else(|| crate::StreamError::new_err(format!("no open request in slot {slot}")))
    }

    fn remove(&self, slot: u64) -> Option<Stream> {
        lock(&self.streams).remove(&slot)
    }

    /// Runs one operation on the slot's WebSocket; its event comes back with `token`.
    fn ws_op<F, Fut>(&self, slot: u64, token: u64, op: F) -> PyResult<()>
    where
        F: FnOnce(Arc<WsConn>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = WsEvent> + Send + 'static,
    {
        let conn = lock(&self.websockets).get(&slot).cloned().ok_or_else(|| {
            crate::StreamError::new_err(format!("no accepted WebSocket in slot {slot}"))
        })?;
        let hub = self.hub.clone();
        let runtime = lock(&self.runtime);
        let Some(runtime) = runtime.as_ref() else {
            return Err(crate::StreamError::new_err("the engine is not running"));
        };
        runtime.spawn(async move {
            let event = op(conn).await;
            hub.push(Item::Ws { token, event });
        });
        Ok(())
    }
}

/// A size limit from Python: a positive number of bytes, else the default.
fn size_limit(name: &str, value: Option<i64>, default: usize) -> PyResult<usize> {
    match value {
        None => Ok(default),
        Some(n) if n > 0 => Ok(n as usize),
        Some(n) => Err(ConfigError::new_err(format!(
            "{name} {n} must be a positive number of bytes"
        ))),
    }
}

#[pymethods]
impl PyEngine {
    /// Checks the configuration at once (`ConfigError`); empty `connect`/`worker_id` and a
    /// missing token or CA file come from `VYX_CONNECT`, `VYX_WORKER_ID`, `VYX_TOKEN`,
    /// `VYX_CA_FILE`.
    #[new]
    #[pyo3(signature = (connect, worker_id, token=None, max_concurrency=None, ca_file=None, labels=None, sdk=None, instance=None, connect_timeout=None, ws_max_message=None, ws_max_frame=None))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one per option
    fn new(
        connect: Vec<String>,
        worker_id: String,
        token: Option<String>,
        max_concurrency: Option<u32>,
        ca_file: Option<String>,
        labels: Option<Vec<(String, String)>>,
        sdk: Option<String>,
        instance: Option<String>,
        connect_timeout: Option<f64>,
        ws_max_message: Option<i64>,
        ws_max_frame: Option<i64>,
    ) -> PyResult<PyEngine> {
        let ws_max_message = size_limit(
            "ws_max_message_size",
            ws_max_message,
            crate::ws::DEFAULT_MAX_MESSAGE,
        )?;
        let ws_max_frame = size_limit(
            "ws_max_frame_size",
            ws_max_frame,
            crate::ws::DEFAULT_MAX_FRAME,
        )?;
        let mut config = WorkerConfig::new(connect, worker_id);
        config.token = token;
        if let Some(n) = max_concurrency {
            config.max_concurrency = n;
        }
        if let Some(instance) = instance.filter(|i| !i.is_empty()) {
            config.instance = instance;
        }
        if let Some(secs) = connect_timeout {
            config.connect_timeout = Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ConfigError::new_err(format!(
                        "connect_timeout {secs} must be a positive number of seconds"
                    ))
                })?;
        }
        config.tls_ca_file = ca_file.map(Into::into);
        config.labels = labels.unwrap_or_default().into_iter().collect();
        if let Some(sdk) = sdk {
            config.sdk = sdk;
        }
        // What this host carries end to end (PROTOCOL.md §2.6): `Response.trailers`,
        // `Request.trailers`, ASGI's `http.response.trailers`; WebSockets (`ws_accept`).
        config.features = vyx_core::features::Features::TRAILERS
            .union(vyx_core::features::Features::UPGRADE)
            .union(vyx_core::features::Features::INFORMATIONAL);
        config.apply_env_defaults();
        let engine = Engine::new(config).map_err(engine_error)?;
        let hub = Hub::new().map_err(|e| VyxError::new_err(format!("wake socket: {e}")))?;
        Ok(PyEngine {
            engine,
            hub,
            runtime: Mutex::new(None),
            streams: Mutex::new(HashMap::new()),
            websockets: Mutex::new(HashMap::new()),
            ws_max_message,
            ws_max_frame,
        })
    }

    /// The gateway addresses and worker id in use (after the environment defaults).
    #[getter]
    fn connect(&self) -> Vec<String> {
        self.engine.config().connect
    }

    /// Each session's latest state, as `(gateway, address or None, state tuple)`.
    fn gateways<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for g in self.engine.gateways() {
            let address = g.address.map(|a| a.to_string());
            list.append((g.gateway, address, state_tuple(py, &g.state)?))?;
        }
        Ok(list)
    }

    #[getter]
    fn worker_id(&self) -> String {
        self.engine.config().worker_id
    }

    /// Requests handed to Python and not closed yet (answered, failed or released).
    #[getter]
    fn open_requests(&self) -> usize {
        lock(&self.streams).len()
    }

    /// Declares a route; returns the id its requests carry. Only before `start`.
    fn add_route(&self, method: &str, path: &str) -> PyResult<u32> {
        self.engine.add_route(method, path).map_err(engine_error)
    }

    /// Declares route `id` idempotent: the gateway may retry its requests elsewhere.
    fn set_idempotent(&self, id: u32) -> PyResult<()> {
        self.engine.set_idempotent(id).map_err(engine_error)
    }

    /// Builds the runtime (two threads, none of which ever takes the GIL), starts the
    /// engine on it and the task that pulls its batches into the queue.
    fn start(&self) -> PyResult<()> {
        let mut slot = lock(&self.runtime);
        if slot.is_some() {
            return Err(engine_error(EngineError::AlreadyStarted));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vyx-core")
            .enable_all()
            .build()
            .map_err(|e| VyxError::new_err(format!("tokio runtime: {e}")))?;
        self.engine
            .start_on(runtime.handle())
            .map_err(engine_error)?;
        let engine = self.engine.clone();
        let hub = self.hub.clone();
        runtime.spawn(async move {
            while let Some(batch) = engine.next_batch(BATCH).await {
                let states = batch.states.into_iter().map(Item::State);
                let requests = batch.requests.into_iter().map(Item::Request);
                let resets = batch.resets.into_iter().map(|r| Item::Reset(r.slot));
                hub.push_all(states.chain(requests).chain(resets));
            }
            hub.push(Item::End(engine.wait().await));
        });
        *slot = Some(runtime);
        Ok(())
    }

    /// The descriptor that becomes readable when `take` has something.
    fn fileno(&self) -> i32 {
        self.hub.fileno()
    }

    /// Everything queued, as `(requests, resets, states, ready, ws, logs, end)`:
    /// requests `(slot, route_id, method, target, params, headers, client_ip, scheme,
    /// http_version, upgrade)` with params `[(name, value)]` as str, headers `[(name, value)]` as
    /// bytes, and the client's IP (str or None), scheme and HTTP version `(major, minor)` by
    /// the core's rule (HOSTS.md §5); resets slots;
    /// states tuples (`("connected", id)`, ...); ready `(slot, writable, error)`; ws
    /// `(token, kind, value)`: `("text", str)`, `("bytes", bytes)`, `("closed", (code,
    /// reason))`, `("sent", None)`, `("failed", message)`; logs
    /// `(levelno, target, message, fields)` with the fields a dict; end `None`, `("ok", "")` or `(kind, message)`.
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let items = self.hub.take();
        let requests = PyList::empty(py);
        let resets = PyList::empty(py);
        let states = PyList::empty(py);
        let ready = PyList::empty(py);
        let ws = PyList::empty(py);
        let mut end = py.None().into_bound(py);
        let mut new_streams = Vec::new();
        for item in items {
            match item {
                Item::Request(req) => {
                    let params = PyList::empty(py);
                    for (k, v) in &req.params {
                        params.append((
                            String::from_utf8_lossy(k).as_ref(),
                            String::from_utf8_lossy(v).as_ref(),
                        ))?;
                    }
                    let headers = PyList::empty(py);
                    for (k, v) in &req.headers {
                        headers.append((PyBytes::new(py, k), PyBytes::new(py, v)))?;
                    }
                    requests.append((
                        req.slot,
                        req.route_id,
                        String::from_utf8_lossy(&req.method).as_ref(),
                        String::from_utf8_lossy(&req.target).as_ref(),
                        params,
                        headers,
                        req.client_ip().map(|ip| ip.to_string()),
                        req.scheme(),
                        req.http_version(),
                        req.upgrade,
                    ))?;
                    new_streams.push((req.slot, req.stream));
                }
                Item::Reset(slot) => resets.append(slot)?,
                Item::State(state) => states.append(state_tuple(py, &state)?)?,
                Item::Ready {
                    slot,
                    writable,
                    error,
                } => ready.append((slot, writable, error))?,
                Item::Ws { token, event } => match event {
                    WsEvent::Text(t) => ws.append((token, "text", t))?,
                    WsEvent::Binary(b) => ws.append((token, "bytes", PyBytes::new(py, &b)))?,
                    WsEvent::Closed(code, reason) => {
                        ws.append((token, "closed", (code, reason)))?
                    }
                    WsEvent::Sent => ws.append((token, "sent", py.None()))?,
                    WsEvent::Failed(e) => ws.append((token, "failed", e))?,
                },
                Item::End(result) => {
                    end = match result {
                        Ok(()) => ("ok", "").into_pyobject(py)?.into_any(),
                        Err(e) => {
                            let kind = match e {
                                EngineError::Refused(_) | EngineError::Closed { .. } => "refused",
                                _ => "error",
                            };
                            (kind, e.to_string()).into_pyobject(py)?.into_any()
                        }
                    }
                }
            }
        }
        if !new_streams.is_empty() {
            lock(&self.streams).extend(new_streams);
        }
        let logs = crate::log::take(py)?;
        (requests, resets, states, ready, ws, logs, end).into_pyobject(py)
    }

    /// Answers with a whole response in one call and closes the slot. The body is copied
    /// at once; what the flow-control window cannot take yet follows as credit comes.
    fn respond(
        &self,
        slot: u64,
        status: u16,
        headers: &Bound<'_, PyAny>,
        body: &[u8],
    ) -> PyResult<()> {
        let headers = header_pairs(headers)?;
        let stream = self.remove(slot).ok_or_else(|| {
            crate::StreamError::new_err(format!("no open request in slot {slot}"))
        })?;
        stream.respond(status, &headers, body).map_err(stream_error)
    }

    /// Sends an interim (1xx) response before the head: `False` when it was dropped (no
    /// grant, 8 sent already, the stream gone), as one may be (PROTOCOL.md §3.11). After the
    /// head, or with a status or field a head cannot carry, a `StreamError`.
    fn send_informational(
        &self,
        slot: u64,
        status: u16,
        headers: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let headers = header_pairs(headers)?;
        let Some(stream) = lock(&self.streams).get(&slot).cloned() else {
            return Ok(false);
        };
        stream
            .send_informational(status, &headers)
            .map_err(stream_error)
    }

    /// Sends the head of a streamed response; returns whether a body is wanted (not for
    /// HEAD, 204, 304, or `end`).
    fn send_head(
        &self,
        slot: u64,
        status: u16,
        headers: &Bound<'_, PyAny>,
        end: bool,
    ) -> PyResult<bool> {
        let headers = header_pairs(headers)?;
        self.stream(slot)?
            .send_head(status, &headers, end)
            .map_err(stream_error)
    }

    /// Writes body bytes without waiting; `False` means the window is full: ask for
    /// `watch(slot, True)` and wait for its ready entry before the next write.
    #[pyo3(signature = (slot, data, end=false))]
    fn try_send(&self, slot: u64, data: &[u8], end: bool) -> PyResult<bool> {
        match self.stream(slot)?.try_send(data, end) {
            Ok(TrySend::Accepted) => Ok(true),
            Ok(TrySend::Full) => Ok(false),
            Err(e) => Err(stream_error(e)),
        }
    }

    /// Ends a streamed body after `data` with trailer fields and closes the slot. They are
    /// dropped where the gateway did not grant `trailers`; invalid ones reset the stream
    /// (`InvalidResponseError`).
    fn end_with_trailers(
        &self,
        slot: u64,
        data: &[u8],
        trailers: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let trailers = header_pairs(trailers)?;
        let stream = self.remove(slot).ok_or_else(|| {
            crate::StreamError::new_err(format!("no open request in slot {slot}"))
        })?;
        stream
            .end_with_trailers(data, &trailers)
            .map(drop)
            .map_err(stream_error)
    }

    /// The request's trailer fields as `(name, value)` bytes pairs once its body has ended
    /// with them; `None` before the end, without any, or for a closed slot.
    fn trailers<'py>(&self, py: Python<'py>, slot: u64) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(fields) = lock(&self.streams).get(&slot).and_then(Stream::trailers) else {
            return Ok(None);
        };
        let list = PyList::empty(py);
        for (n, v) in &fields {
            list.append((PyBytes::new(py, n), PyBytes::new(py, v)))?;
        }
        Ok(Some(list))
    }

    /// The next request-body chunk: bytes, `b""` when nothing is there yet (ask for
    /// `watch(slot, False)`), `None` at the end.
    fn try_chunk<'py>(&self, py: Python<'py>, slot: u64) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.stream(slot)?.try_chunk() {
            Ok(TryChunk::Data(bytes)) => Ok(Some(PyBytes::new(py, &bytes))),
            Ok(TryChunk::Pending) => Ok(Some(PyBytes::new(py, b""))),
            Ok(TryChunk::End) => Ok(None),
            Err(e) => Err(stream_error(e)),
        }
    }

    /// Waits, on the engine's runtime, until the slot is writable (`writable`) or has body
    /// to read; the answer comes as a `ready` entry of a later `take`.
    fn watch(&self, slot: u64, writable: bool) -> PyResult<()> {
        let stream = self.stream(slot)?;
        let hub = self.hub.clone();
        let runtime = lock(&self.runtime);
        let Some(runtime) = runtime.as_ref() else {
            return Err(crate::StreamError::new_err("the engine is not running"));
        };
        runtime.spawn(async move {
            let error = if writable {
                stream.writable().await.err().map(|e| e.to_string())
            } else {
                stream.readable().await;
                None
            };
            drop(stream);
            hub.push(Item::Ready {
                slot,
                writable,
                error,
            });
        });
        Ok(())
    }

    /// Accepts the WebSocket of upgrade request `slot`: the 101 with `sec-websocket-accept`
    /// derived from the client's `key` and the app's `headers` (a subprotocol among them),
    /// then the slot's stream carries WebSocket messages (`ws_receive`, `ws_send`,
    /// `ws_close`) under the size limits given to the engine.
    fn ws_accept(&self, slot: u64, key: &[u8], headers: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut head = vec![
            (b"upgrade".to_vec(), b"websocket".to_vec()),
            (
                b"sec-websocket-accept".to_vec(),
                derive_accept_key(key).into_bytes(),
            ),
        ];
        head.extend(header_pairs(headers)?);
        let stream = self.stream(slot)?;
        stream.send_head(101, &head, false).map_err(stream_error)?;
        let conn = WsConn::new(stream, self.ws_max_message, self.ws_max_frame);
        lock(&self.websockets).insert(slot, Arc::new(conn));
        Ok(())
    }

    /// Asks for the next message; it comes as a `ws` entry with `token`.
    fn ws_receive(&self, slot: u64, token: u64) -> PyResult<()> {
        self.ws_op(slot, token, |ws| async move { ws.receive().await })
    }

    /// Sends a text (`str`) or binary (`bytes`) message; `("sent", None)` with `token` once
    /// the stream's window took it.
    fn ws_send(&self, slot: u64, token: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let message = if let Ok(s) = data.cast::<PyString>() {
            Message::text(s.to_cow()?.into_owned())
        } else if let Ok(b) = data.cast::<PyBytes>() {
            Message::binary(b.as_bytes().to_vec())
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "a WebSocket message is str or bytes",
            ));
        };
        self.ws_op(slot, token, |ws| async move { ws.send(message).await })
    }

    /// Closes with `code` and `reason`; `("sent", None)` with `token` once the close
    /// handshake is over (or the client did not answer in time) and the stream has ended.
    fn ws_close(&self, slot: u64, token: u64, code: u16, reason: String) -> PyResult<()> {
        self.ws_op(slot, token, move |ws| async move {
            ws.close(code, &reason).await
        })
    }

    /// Forgets the slot's WebSocket: once its running operations end, an unclosed stream is
    /// reset.
    fn ws_release(&self, slot: u64) {
        drop(lock(&self.websockets).remove(&slot));
    }

    /// Ends a streamed body and closes the slot.
    fn end(&self, slot: u64) -> PyResult<()> {
        let stream = self.remove(slot).ok_or_else(|| {
            crate::StreamError::new_err(format!("no open request in slot {slot}"))
        })?;
        stream.end().map(drop).map_err(stream_error)
    }

    /// The handler failed: 500 before the head, RESET after it. Closes the slot.
    fn fail(&self, slot: u64, reason: &str) {
        if let Some(stream) = self.remove(slot) {
            stream.fail(reason);
        }
    }

    /// Closes the slot; an unanswered request is answered by the core (500).
    fn release(&self, slot: u64) {
        drop(self.remove(slot));
    }

    /// Drains: DRAIN to the gateway, in-flight requests get `deadline` seconds, then the
    /// engine stops (the queue ends with `end`).
    fn drain(&self, deadline: f64) {
        self.engine
            .drain(Duration::from_secs_f64(deadline.clamp(0.0, 86_400.0)));
    }

    /// After `end`: closes what is left and shuts the runtime down, its threads included.
    fn close(&self, py: Python<'_>) {
        let streams = std::mem::take(&mut *lock(&self.streams));
        drop(streams);
        let websockets = std::mem::take(&mut *lock(&self.websockets));
        drop(websockets);
        let runtime = lock(&self.runtime).take();
        if let Some(runtime) = runtime {
            py.detach(move || runtime.shutdown_timeout(SHUTDOWN_WAIT));
        }
    }
}

impl Drop for PyEngine {
    fn drop(&mut self) {
        if let Some(runtime) = lock(&self.runtime).take() {
            runtime.shutdown_background();
        }
    }
}
