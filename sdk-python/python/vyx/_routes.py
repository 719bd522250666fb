"""The routes an app already declares, as vyx patterns: Starlette's and FastAPI's route
tables, Flask's URL map. A worker hosting the app claims those paths only, so several apps
can share one gateway."""

from __future__ import annotations

import re
from typing import Any, Iterable, List, Optional

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


def _starlette_routes(routes: Iterable[Any], prefix: str = "") -> Iterable[str]:
    for route in routes:
        kind = type(route).__name__
        path = getattr(route, "path", None)
        if kind == "WebSocketRoute" or path is None:
            continue
        if kind == "Mount" or (getattr(route, "routes", None) is not None and kind != "Route"):
            # A mounted app or router: everything under its prefix is its.
            yield prefix + path.rstrip("/") + "/{*rest}"
        else:
            yield starlette_pattern(prefix + path)


def asgi_routes(app: Any) -> Optional[List[str]]:
    """The app's route patterns when it is a Starlette or FastAPI app (or a Starlette
    router), else ``None``."""
    if not _is_starlette(app):
        return None
    router = getattr(app, "router", app)
    return _unique(_starlette_routes(getattr(router, "routes", [])))


def _is_starlette(app: Any) -> bool:
    return any(c.__module__.split(".")[0] in ("starlette", "fastapi") for c in type(app).__mro__)


def wsgi_routes(app: Any) -> Optional[List[str]]:
    """The app's route patterns when it is a Flask (Werkzeug URL map) app, else ``None``."""
    url_map = getattr(app, "url_map", None)
    iter_rules = getattr(url_map, "iter_rules", None)
    if iter_rules is None:
        return None
    return _unique(werkzeug_pattern(r.rule) for r in iter_rules())
