"""``vyx.Request``: what a handler receives, and ``vyx.Headers``."""

from __future__ import annotations

import json as _json
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, Iterator, List, Mapping, Optional, Tuple
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from ._response import HeadersArg
    from ._worker import Worker


def parse_query(query: str) -> List[Tuple[str, str]]:
    """Decodes a raw query as ``application/x-www-form-urlencoded`` (as WHATWG does, held to
    ``spec/vectors/query.json``): pairs in order, repeats and blank values kept, ``+`` is a
    space, invalid UTF-8 becomes U+FFFD."""
    return parse_qsl(query, keep_blank_values=True, errors="replace")


class Headers(Mapping[str, str]):
    """Request headers in arrival order: names lower-case, values decoded as UTF-8 (U+FFFD
    for invalid bytes). ``headers["x"]`` and ``get`` give the first value of a name,
    ``getall`` every one; ``items()`` keeps repeats in order; ``raw`` has the bytes."""

    __slots__ = ("raw", "_items")

    def __init__(self, raw: List[Tuple[bytes, bytes]]):
        self.raw = raw
        self._items: Optional[List[Tuple[str, str]]] = None

    def _decoded(self) -> List[Tuple[str, str]]:
        if self._items is None:
            self._items = [
                (n.decode("latin-1"), v.decode("utf-8", "replace")) for n, v in self.raw
            ]
        return self._items

    def __getitem__(self, name: str) -> str:
        name = name.lower()
        for n, v in self._decoded():
            if n == name:
                return v
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for n, _ in self._decoded():
            if n not in seen:
                seen.add(n)
                yield n

    def __len__(self) -> int:
        return len({n for n, _ in self._decoded()})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n == name.lower() for n, _ in self._decoded())

    def raw_value(self, name: str) -> Optional[bytes]:
        """The first value of ``name`` as the bytes that arrived, else ``None``."""
        key = name.lower().encode("latin-1")
        for n, v in self.raw:
            if n == key:
                return v
        return None

    def getall(self, name: str) -> List[str]:
        """Every value of ``name``, in order."""
        name = name.lower()
        return [v for n, v in self._decoded() if n == name]

    def items(self) -> List[Tuple[str, str]]:  # type: ignore[override]
        """Every ``(name, value)``, repeats kept, in arrival order."""
        return list(self._decoded())

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


class Request:
    """One request the gateway sent. The worker matched nothing itself: ``route`` is the
    pattern the gateway matched and ``params`` its decoded parameters.

    The body is read at most once: ``await body()`` (also ``text()``, ``json()``) or
    ``async for chunk in stream()``. Reading grants the gateway credit, so an upload flows
    only as fast as the handler reads it. Plain ``def`` handlers get the body read before
    they run: use ``content``.
    """

    __slots__ = (
        "method",
        "target",
        "params",
        "route",
        "headers",
        "_worker",
        "_slot",
        "client_ip",
        "_scheme",
        "http_version",
        "_body",
        "_streaming",
        "_query",
        "_trailers",
        "upgrade",
    )

    def __init__(
        self,
        worker: "Worker",
        slot: int,
        method: str,
        target: str,
        params: List[Tuple[str, str]],
        headers: List[Tuple[bytes, bytes]],
        route: str,
        client_ip: Optional[str] = None,
        scheme: str = "http",
        http_version: Tuple[int, int] = (1, 1),
        upgrade: bool = False,
    ):
        self._worker = worker
        self._slot = slot
        #: The request method, upper-case (``HEAD`` on a ``GET`` route too).
        self.method = method
        #: Path and query exactly as the client sent them.
        self.target = target
        #: Path parameters, percent-decoded, by name.
        self.params: Dict[str, str] = dict(params)
        #: The route pattern that matched, e.g. ``/users/{id}``.
        self.route = route
        self.headers = Headers(headers)
        #: The client's IP address as the gateway saw it (the last ``x-forwarded-for``
        #: element, by the core's rule: spec/HOSTS.md §5); ``None`` when there is none.
        self.client_ip = client_ip
        # The scheme by the same rule, for the ASGI and WSGI adapters.
        self._scheme = scheme
        #: The client's HTTP version as ASGI spells it (``"1.0"``, ``"1.1"``, ``"2"``), from
        #: the gateway's ``via`` element by the core's rule (spec/HOSTS.md §5).
        major, minor = http_version
        self.http_version = f"{major}.{minor}" if major == 1 else str(major)
        #: The client asked to switch protocols (``connection: upgrade``, e.g. a WebSocket
        #: handshake): a ``@worker.ws`` route takes it; any other handler may answer it as
        #: an ordinary request, whose body is empty (the client's bytes come after a switch).
        self.upgrade = upgrade
        self._body: Optional[bytes] = b"" if upgrade else None
        self._streaming = False
        self._query: Optional[List[Tuple[str, str]]] = None
        self._trailers: Optional[Headers] = None

    @property
    def path(self) -> str:
        """The path as the client sent it (not decoded), without the query."""
        return self.target.split("?", 1)[0]

    @property
    def raw_query(self) -> Optional[str]:
        """The query after ``?`` as sent, not decoded; ``None`` when the target has no
        ``?``. :attr:`query` decodes it."""
        parts = self.target.split("?", 1)
        return parts[1] if len(parts) == 2 else None

    @property
    def query(self) -> List[Tuple[str, str]]:
        """The decoded query: ``(name, value)`` pairs in order, repeats and blanks kept."""
        if self._query is None:
            self._query = parse_query(self.raw_query or "")
        return self._query

    def query_param(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The first value of query parameter ``name``, else ``default``."""
        for n, v in self.query:
            if n == name:
                return v
        return default

    async def stream(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk, as it arrives."""
        if self._body is not None:
            if self._body:
                yield self._body
            return
        if self._streaming:
            raise RuntimeError("the request body is being read already")
        self._streaming = True
        engine = self._worker._engine
        slot = self._slot
        while True:
            chunk = engine.try_chunk(slot)
            if chunk is None:
                trailers = engine.trailers(slot)
                if trailers:
                    self._trailers = Headers(trailers)
                return
            if chunk:
                yield chunk
            else:
                await self._worker._wait(slot, False)

    @property
    def trailers(self) -> Headers:
        """The trailer fields that ended the body (PROTOCOL.md §3.10), as :attr:`headers`:
        filled once the body has been read to its end, empty before and when the client
        sent none."""
        if self._trailers is None:
            return Headers([])
        return self._trailers

    async def body(self) -> bytes:
        """The whole body."""
        if self._body is None:
            self._body = b"".join([c async for c in self.stream()])
        return self._body

    async def text(self, encoding: str = "utf-8") -> str:
        """The whole body, decoded."""
        return (await self.body()).decode(encoding)

    async def json(self) -> Any:
        """The whole body, parsed as JSON."""
        return _json.loads(await self.body())

    def send_informational(self, status: int, headers: "HeadersArg" = None) -> bool:
        """Sends an interim (1xx) response before the handler's answer (PROTOCOL.md §3.11),
        e.g. 103 Early Hints so that a browser starts fetching what the page will need::

            req.send_informational(103, [("link", "</app.css>; rel=preload; as=style")])
            return vyx.Response(200, {"content-type": "text/html"}, page)

        ``headers`` as in :class:`vyx.Response`. ``False`` when it was dropped, as an interim
        response may be: the gateway did not grant them, 8 were sent already, or the
        request is gone. HTTP/1.1 clients get it; the gateway drops it for HTTP/1.0 and
        HTTP/2 clients. Raises :class:`vyx.StreamError` after the answer's head, for a status
        outside 100..199 or 101, or a field a head cannot carry."""
        from ._response import _pairs

        return self._worker._engine.send_informational(self._slot, status, _pairs(headers))

    @property
    def content(self) -> bytes:
        """The body once read (always, in a plain ``def`` handler)."""
        if self._body is None:
            raise RuntimeError("the body has not been read: await req.body() first")
        return self._body

    def __repr__(self) -> str:
        return f"<vyx.Request {self.method} {self.target}>"
