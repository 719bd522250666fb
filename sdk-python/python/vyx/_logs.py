"""The worker's logs: the core's records as ``logging`` records, the request id of the
request being handled, and the default handler for a program that configured no logging.

Writing a log never stops the worker: the core queues its records without blocking
(``vyx_core::host_logs``), and the default handler hands lines to a thread of its own, so a
closed or full stderr costs lines, not the event loop.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from typing import Any, Dict, Iterable, Optional, Tuple

from . import _core

log = logging.getLogger("vyx")
core_log = logging.getLogger("vyx.core")

_request_id: "contextvars.ContextVar[Optional[str]]" = contextvars.ContextVar(
    "vyx_request_id", default=None
)

# What a LogRecord holds already: a core field of the same name goes in as ``vyx_<name>``
# (``logging`` refuses to overwrite them).
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def request_id() -> Optional[str]:
    """The id of the request being handled (the gateway's ``X-Request-Id``), in a handler,
    an ASGI or WSGI app, and what they call or start as tasks; ``None`` elsewhere.

    .. code-block:: python

        @worker.get("/orders/{id}")
        async def order(req):
            log.info("order %s asked (request %s)", req.params["id"], vyx.request_id())
    """
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` on every record it sees: the request being handled, or
    ``"-"`` outside one, so that a format can always name it.

    .. code-block:: python

        handler = logging.StreamHandler()
        handler.addFilter(vyx.RequestIdFilter())
        handler.setFormatter(logging.Formatter("%(levelname)s [%(request_id)s] %(message)s"))
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        return True


def log_core_records(records: Iterable[Tuple[int, str, str, Dict[str, Any]]]) -> None:
    """Logs the core's records under ``vyx.core``: the message followed by ``key=value``
    for the people reading text, and each field as an ``extra`` attribute for the formatters
    and filters that want it (``rust_target`` is the Rust module that logged it)."""
    for level, target, message, fields in records:
        if not core_log.isEnabledFor(level):
            continue
        extra = {("vyx_" + k if k in _RESERVED else k): v for k, v in fields.items()}
        extra["rust_target"] = target
        text = "".join([message, *(f" {k}={v}" for k, v in fields.items())])
        core_log.log(level, "%s", text, extra=extra)


_LEVEL_NAMES = ((logging.DEBUG, "debug"), (logging.INFO, "info"), (logging.WARNING, "warn"),
                (logging.ERROR, "error"), (logging.CRITICAL, "error"))


def follow_core_level() -> None:
    """Sets the core's level from ``vyx.core``'s effective level, so that the core builds
    no record the logger would drop (and builds DEBUG ones when it wants them)."""
    level = core_log.getEffectiveLevel()
    name = "trace"
    for threshold, candidate in _LEVEL_NAMES:
        if level >= threshold:
            name = candidate
    _core.set_log_level(name)


# Lines the default handler's thread has not written yet: past this, new ones are dropped.
MAX_PENDING_LINES = 1000


class _BackgroundStderr(logging.Handler):
    """Formats on the caller's thread, writes on a thread of its own: the event loop never
    waits for stderr. A full queue drops the line; a closed stderr loses the lines, quietly.
    The thread lives while there is something to write for a worker that serves
    (:meth:`finish` ends it), so a worker that stopped leaves no thread."""

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.Lock()
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue(MAX_PENDING_LINES)
        self._thread: Optional[threading.Thread] = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._write, args=(self._lines,), name="vyx-log", daemon=True
                )
                self._thread.start()
            try:
                self._lines.put_nowait(line)
            except queue.Full:
                pass

    @staticmethod
    def _write(lines: "queue.Queue[Optional[str]]") -> None:
        import sys

        while True:
            line = lines.get()
            if line is None:
                return
            try:
                stream = sys.stderr
                if stream is not None:
                    stream.write(line)
                    stream.flush()
            except (OSError, ValueError):
                pass  # closed or broken: nobody can read it anyway

    def finish(self, timeout: float) -> None:
        """Writes what is queued, for at most ``timeout`` seconds, and ends the thread (a
        stderr that stays full leaves it behind, a daemon)."""
        with self._guard:
            thread, lines = self._thread, self._lines
            self._thread, self._lines = None, queue.Queue(MAX_PENDING_LINES)
        if thread is None:
            return
        try:
            lines.put(None, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)


_default_handler: Optional[_BackgroundStderr] = None

# How long a stopping worker waits for the default handler's last lines.
FINISH_TIMEOUT = 1.0


def default_log_handler() -> None:
    """A stderr handler for the ``vyx`` loggers at INFO when the program configured no
    logging (as uvicorn shows "Application startup complete"): the worker's connects,
    reconnects and drain show without any configuration. One configured is left as it is."""
    global _default_handler
    if _default_handler is not None or logging.getLogger().handlers or log.handlers:
        return
    handler = _default_handler = _BackgroundStderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


def finish_default_handler() -> None:
    """A worker stopped: the default handler's lines are written and its thread ends."""
    if _default_handler is not None:
        _default_handler.finish(FINISH_TIMEOUT)
