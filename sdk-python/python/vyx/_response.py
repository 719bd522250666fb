"""``vyx.Response``, and how a handler's return value becomes one."""

from __future__ import annotations

import json as _json
from typing import Any, AsyncIterable, Iterable, List, Mapping, Sequence, Tuple, Union

HeaderPairs = List[Tuple[Union[str, bytes], Union[str, bytes]]]
# Sequence, not List: a list of (bytes, bytes) is accepted too (List is invariant).
HeadersArg = Union[
    Mapping[str, str], Sequence[Tuple[Union[str, bytes], Union[str, bytes]]], None
]
Body = Union[bytes, bytearray, memoryview, str, None, Iterable[Any], AsyncIterable[Any]]

def dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8 (no spaces, non-ASCII kept), as the other SDKs write it."""
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


_JSON = [(b"content-type", b"application/json")]
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_BYTES = [(b"content-type", b"application/octet-stream")]


class Response:
    """A response: ``status``, ``headers`` (a mapping or ``(name, value)`` pairs, repeats
    allowed) and ``body``: ``bytes``/``str`` for a whole body, or a plain or async iterator of
    ``bytes``/``str`` chunks, streamed with backpressure (each chunk is written when the
    gateway's window has room). The core adds ``content-length`` to a whole body and drops
    hop-by-hop headers and the body of HEAD/204/304 answers.

    ``trailers`` (a mapping or pairs, as ``headers``) follow the body (PROTOCOL.md §3.10);
    name them in a ``trailer`` header, as HTTP/1.1 clients get only the ones named there.
    They are read once the body has ended, so a streamed body may fill them in as it goes::

        sums = {}
        async def chunks():
            yield data
            sums["x-checksum"] = digest(data)
        return vyx.Response(200, {"trailer": "x-checksum"}, chunks(), trailers=sums)

    They are dropped where the client or the gateway does not take trailers."""

    __slots__ = ("status", "headers", "body", "trailers")

    def __init__(
        self,
        status: int = 200,
        headers: HeadersArg = None,
        body: Body = b"",
        trailers: HeadersArg = None,
    ):
        self.status = status
        self.headers: HeaderPairs = _pairs(headers)
        self.body = body
        # Kept as given (not copied): a streamed body may fill it in.
        self.trailers = trailers

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: HeadersArg = None) -> "Response":
        """``value`` as JSON (``content-type: application/json``); ``headers`` as in the
        constructor, e.g. ``Response.json({"ok": True}, headers={"x-a": "1"})``."""
        return cls(status, _JSON + _pairs(headers), dumps(value))

    @classmethod
    def text(cls, value: str, status: int = 200, headers: HeadersArg = None) -> "Response":
        """``value`` as ``text/plain; charset=utf-8``; ``headers`` as in the constructor."""
        return cls(status, _TEXT + _pairs(headers), value.encode())

    def __repr__(self) -> str:
        return f"<vyx.Response {self.status}>"


def _pairs(headers: HeadersArg) -> HeaderPairs:
    """Headers given as a mapping or as pairs, as pairs."""
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def to_response(result: Any) -> Response:
    """A handler's return value as a Response: dict/list → JSON, str → text, bytes →
    octet-stream, None → 200 with no body (as in every vyx SDK: "no content" is an explicit
    ``Response(204)``), a Response as it is."""
    if isinstance(result, Response):
        return result
    if isinstance(result, (dict, list)):
        return Response(200, _JSON, dumps(result))
    if isinstance(result, str):
        return Response(200, _TEXT, result.encode())
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(200, _BYTES, bytes(result))
    if result is None:
        return Response(200)
    raise TypeError(
        f"a handler returned {type(result).__name__}: return a dict, list, str, bytes, "
        "None or vyx.Response"
    )
