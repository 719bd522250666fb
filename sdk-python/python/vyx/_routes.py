"""The routes an app already declares, as vyx patterns: Starlette's and FastAPI's route
tables, Flask's URL map. A worker hosting the app claims those paths only, so several apps
can share one gateway."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Sequence

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._worker import Worker

log = logging.getLogger("vyx")

#: What an app whose framework exposes no route table claims.
DEFAULT_ROUTES = ["/{*rest}"]

_STARLETTE_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_][A-Za-z0-9_]*))?\}")
_WERKZEUG_PARAM = re.compile(r"<(?:([A-Za-z_][A-Za-z0-9_]*)(?:\([^)]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>")


def _catch_all_last(pattern: str, catch_all: Optional[str]) -> str:
    """A path-converter parameter becomes the trailing catch-all ``{*name}`` when it ends the
    pattern; elsewhere the gateway has no such parameter, so it stays one segment."""
    if catch_all and pattern.endswith("{" + catch_all + "}"):
        return pattern[: -len(catch_all) - 2] + "{*" + catch_all + "}"
    return pattern


def starlette_pattern(path: str) -> str:
    """``/items/{id:int}`` → ``/items/{id}``; ``/files/{p:path}`` → ``/files/{*p}``."""
    catch_all = None

    def repl(m: "re.Match[str]") -> str:
        nonlocal catch_all
        if m.group(2) == "path":
            catch_all = m.group(1)
        return "{" + m.group(1) + "}"

    return _catch_all_last(_STARLETTE_PARAM.sub(repl, path), catch_all)


def werkzeug_pattern(rule: str) -> str:
    """``/users/<int:uid>`` → ``/users/{uid}``; ``/static/<path:filename>`` →
    ``/static/{*filename}``."""
    catch_all = None

    def repl(m: "re.Match[str]") -> str:
        nonlocal catch_all
        if m.group(1) == "path":
            catch_all = m.group(2)
        return "{" + m.group(2) + "}"

    return _catch_all_last(_WERKZEUG_PARAM.sub(repl, rule), catch_all)


def _shape(pattern: str) -> str:
    return re.sub(r"\{\*?[^}]*\}", lambda m: "{*}" if m.group(0).startswith("{*") else "{}", pattern)


def _unique(patterns: Iterable[str]) -> List[str]:
    """One pattern per shape (``/a/{x}`` and ``/a/{y}`` are one route to the gateway)."""
    seen = set()
    out = []
    for p in patterns:
        if not p.startswith("/"):
            continue
        key = _shape(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _slash_twin(pattern: str) -> Optional[str]:
    """The pattern with its trailing slash toggled (``/a/{x}`` ↔ ``/a/{x}/``; ``/f/{*p}`` →
    ``/f``): the path a framework that redirects slashes answers with a redirect."""
    head, _, last = pattern.rpartition("/")
    if last.startswith("{*"):
        return head or None
    if pattern == "/":
        return None
    return head if last == "" else pattern + "/"


def _with_slash_twins(patterns: List[str]) -> List[str]:
    return patterns + [t for t in map(_slash_twin, patterns) if t]


_WHOLE_PARAM = re.compile(r"\{[^{}/*]+\}")


def covering(pattern: str) -> str:
    """The smallest pattern the gateway can route that covers ``pattern``: its segments up to
    the first that is neither a literal nor a whole ``{name}``, then ``{*rest}``
    (``/report/{name}.txt`` → ``/report/{*rest}``)."""
    kept = []
    for segment in pattern.split("/")[1:]:
        if ("{" in segment or "}" in segment) and not _WHOLE_PARAM.fullmatch(segment):
            break
        kept.append(segment)
    return "/".join([""] + kept + ["{*rest}"])


def claim(worker: "Worker", handler: Callable[..., Any], given: Optional[Sequence[str]],
          declared: Optional[List[str]], websockets: Sequence[str] = ()) -> None:
    """Registers an app's routes: ``given`` as they are; else the ones it ``declared`` (a
    pattern the gateway cannot route becomes the smallest one covering it, with a warning),
    else ``DEFAULT_ROUTES``; and its ``websockets`` as ``GET`` routes of their own (a path
    with both kinds is both routes, to the one handler: the scope tells them apart)."""
    if given:
        for path in given:
            worker._add("*", path, handler, True)
        return
    shapes = set()
    for path in websockets:
        if _shape(path) in shapes:
            continue
        shapes.add(_shape(path))
        try:
            worker._add("GET", path, handler, True)
        except ConfigError as e:
            log.warning("the app's WebSocket route %s is not a vyx pattern (%s): skipped", path, e)
    shapes = set()
    warned = set()
    for path in declared or ([] if websockets else DEFAULT_ROUTES):
        try:
            if _shape(path) not in shapes:
                worker._add("*", path, handler, True)
                shapes.add(_shape(path))
        except ConfigError as e:
            wider = covering(path)
            if path.rstrip("/") not in warned:  # once for a route and its slash twin
                warned.add(path.rstrip("/"))
                log.warning("the app's route %s is not a vyx pattern (%s): claiming %s "
                            "instead", path, e, wider)
            if _shape(wider) not in shapes:
                worker._add("*", wider, handler, True)
                shapes.add(_shape(wider))


def _starlette_routes(routes: Iterable[Any], prefix: str = "") -> Iterable[str]:
    for route in routes:
        kind = type(route).__name__
        path = getattr(route, "path", None)
        if path is None:
            continue
        if _is_websocket_route(route):
            continue  # asgi_websocket_routes: a GET route of its own
        if kind == "Mount" or (getattr(route, "routes", None) is not None and kind != "Route"):
            # A mounted app or router: everything under its prefix is its.
            yield prefix + path.rstrip("/") + "/{*rest}"
        else:
            yield starlette_pattern(prefix + path)


def _is_websocket_route(route: Any) -> bool:
    # FastAPI's @app.websocket too (a subclass).
    return any(c.__name__ == "WebSocketRoute" for c in type(route).__mro__)


def asgi_websocket_routes(app: Any) -> List[str]:
    """The patterns of a Starlette or FastAPI app's WebSocket routes (``@app.websocket``),
    which the worker claims as ``GET`` routes; empty for any other app."""
    if not _is_starlette(app):
        return []
    router = getattr(app, "router", app)
    return _unique(
        starlette_pattern(r.path) for r in getattr(router, "routes", []) if _is_websocket_route(r)
    )


def asgi_routes(app: Any) -> Optional[List[str]]:
    """The app's route patterns when it is a Starlette or FastAPI app (or a Starlette
    router), else ``None``."""
    if not _is_starlette(app):
        return None
    router = getattr(app, "router", app)
    patterns = list(_starlette_routes(getattr(router, "routes", [])))
    if getattr(router, "redirect_slashes", False):
        # The app answers the other form with a redirect (FastAPI: /items/5/ → 307).
        patterns = _with_slash_twins(patterns)
    return _unique(patterns)


def _is_starlette(app: Any) -> bool:
    return any(c.__module__.split(".")[0] in ("starlette", "fastapi") for c in type(app).__mro__)


def wsgi_routes(app: Any) -> Optional[List[str]]:
    """The app's route patterns when it is a Flask (Werkzeug URL map) app, else ``None``."""
    url_map = getattr(app, "url_map", None)
    iter_rules = getattr(url_map, "iter_rules", None)
    if iter_rules is None:
        return None
    patterns = [werkzeug_pattern(r.rule) for r in iter_rules()]
    # Werkzeug redirects /a to a rule /a/ (308), never the other way.
    return _unique(patterns + [p[:-1] for p in patterns if len(p) > 1 and p.endswith("/")])
