"""The errors the SDK raises: every one is a :class:`VyxError`.

``ConfigError``
    the worker's settings are invalid (raised by ``Worker(...)`` or a decorator).
``RefusedError``
    the gateway refused the worker for good (bad token, route conflict); raised by
    ``start()``/``serve()``.
``AlreadyStartedError``
    ``start()``/``serve()`` called a second time: a worker runs once.
``StreamError``
    a request cannot do what was asked; ``StreamResetError`` (the client went away),
    ``ConnectionLostError`` and ``InvalidResponseError`` (a head the core answered 500
    instead) are its kinds.
"""

from ._core import (
    AlreadyStartedError,
    ConfigError,
    ConnectionLostError,
    InvalidResponseError,
    RefusedError,
    StreamError,
    StreamResetError,
    VyxError,
)

__all__ = [
    "VyxError",
    "ConfigError",
    "RefusedError",
    "AlreadyStartedError",
    "StreamError",
    "StreamResetError",
    "ConnectionLostError",
    "InvalidResponseError",
]
