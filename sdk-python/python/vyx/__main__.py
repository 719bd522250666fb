"""``python -m vyx module:app``: serve an ASGI or WSGI app behind a vyx gateway.

    python -m vyx myapp:app --connect ws://127.0.0.1:9000 --id py:myapp
    python -m vyx myapp:app --route /api/{*rest}      # claim these paths only
    python -m vyx 'myapp:create_app()'                # an app factory, called
    python -m vyx myapp:create_app --factory          # the same, as uvicorn spells it
    python -m vyx flaskapp:app --threads 16           # WSGI requests served at once

Connection settings default to VYX_CONNECT, VYX_WORKER_ID, VYX_TOKEN and VYX_CA_FILE, as
in local mode. ASGI or WSGI is told from the app (an ``async`` callable is ASGI), or forced
with ``--asgi``/``--wsgi``. Routes default to the app's own route table (Starlette, FastAPI,
Flask), else ``/{*rest}``. ``--threads`` sizes the pool that runs WSGI apps and plain ``def``
handlers (default Python's ``min(32, os.cpu_count() + 4)``).
"""

import argparse
import ast
import importlib
import inspect
import logging
import os
import sys
from typing import Any

from ._asgi import ASGIWorker
from ._errors import VyxError
from ._worker import DEFAULT_DRAIN_TIMEOUT, Worker
from ._wsgi import WSGIWorker


def load(spec: str, factory: bool = False):
    """The app ``module:attribute`` names; ``module:create_app()`` (literal arguments
    allowed, as gunicorn takes them) or ``factory`` (uvicorn's ``--factory``) call it."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"error: {spec!r} is not module:attribute")
    try:
        expr = ast.parse(attr, mode="eval").body
    except SyntaxError:
        raise SystemExit(f"error: {attr!r} is not an attribute or a call") from None
    args: list = []
    kwargs: dict = {}
    if isinstance(expr, ast.Call):
        try:
            args = [ast.literal_eval(a) for a in expr.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in expr.keywords if k.arg}
        except ValueError:
            raise SystemExit(f"error: the arguments of {attr!r} must be literals") from None
        factory, expr = True, expr.func
    names = []
    while isinstance(expr, ast.Attribute):
        names.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        raise SystemExit(f"error: {attr!r} is not an attribute or a call")
    names.append(expr.id)
    sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in reversed(names):
        obj = getattr(obj, part)
    return obj(*args, **kwargs) if factory else obj


def is_asgi(app) -> bool:
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(
        getattr(app, "__call__", None)
    )


def build(argv=None) -> Worker:
    """The worker ``python -m vyx ARGV`` runs, logging configured."""
    p = argparse.ArgumentParser(prog="python -m vyx", description=__doc__.split("\n")[0])
    p.add_argument("app", help="the app, as module:attribute or module:factory()")
    p.add_argument("--factory", action="store_true",
                   help="the attribute is a factory: call it (no arguments) for the app")
    p.add_argument("--route", action="append", dest="routes", metavar="PATTERN",
                   help="a path pattern to claim (repeatable); default: the app's routes")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--asgi", action="store_true", help="the app is ASGI")
    kind.add_argument("--wsgi", action="store_true", help="the app is WSGI")
    p.add_argument("--connect", help="gateway URL, or a comma-separated list (default $VYX_CONNECT)")
    p.add_argument("--id", help="worker id (default $VYX_WORKER_ID)")
    p.add_argument("--token", help="worker token (default $VYX_TOKEN)")
    p.add_argument("--ca-file", help="extra CAs for wss:// (default $VYX_CA_FILE)")
    p.add_argument("--max-concurrency", type=int)
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads running WSGI requests and plain def handlers "
                        "(default min(32, CPUs + 4))")
    p.add_argument("--drain-timeout", type=float, default=DEFAULT_DRAIN_TIMEOUT)
    p.add_argument("--lifespan", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = load(args.app, args.factory)
    connect = args.connect.split(",") if args.connect else None
    options = dict(connect=connect, id=args.id, token=args.token, ca_file=args.ca_file,
                   max_concurrency=args.max_concurrency, drain_timeout=args.drain_timeout,
                   max_threads=args.threads)
    if args.asgi or (not args.wsgi and is_asgi(app)):
        return ASGIWorker(app, args.routes, lifespan=args.lifespan, **options)
    return WSGIWorker(app, args.routes, **options)


def main(argv=None) -> int:
    try:
        build(argv).start()
    except VyxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
