'use strict';
const { EventEmitter } = require('node:events');
const { decodeBatch } = require('./batch');
const { call, fromNative, vyxError } = require('./errors');
const { Exchange } = require('./exchange');
const { VyxRequest } = require('./request');
const { VyxResponse, writersWoken } = require('./response');
const { fetchRoute } = require('./fetch');
const { httpRoute } = require('./http');
const { wsRoute } = require('./ws');
const { UpgradeSocket } = require('./upgrade');
const { logTo, logRecords } = require('./log');

let binding = null;
function native() {
  if (binding === null) {
    try {
      binding = require('../native.js');
    } catch (e) {
      const err = vyxError(
        'ERR_VYX_NO_ADDON',
        `the native addon of @vyx/worker cannot be loaded for ${process.platform}-${process.arch} ` +
          `(in a checkout: npm ci && npm run build in sdk-node): ${e.message}`,
      );
      err.cause = e;
      throw err;
    }
  }
  return binding;
}

/**
 * A vyx worker: declare routes, then `await start()`. Requests come from the Rust core in
 * batches through one pending pull; handlers run on the event loop. Emits `'state'` with
 * `{ kind, ... }` for every connection-state change, in order, and the state's own kind
 * (`'connecting'`, `'connected'`, `'reconnecting'`, `'draining'`, `'stopped'`, `'failed'`).
 */
class VyxWorker extends EventEmitter {
  #native;
  #routes = [];
  #live = new Map();
  #started = false;
  #stopped = null;
  #stopAsked = false;
  #drainTimeoutMs;
  #handleSignals;
  #onSignal = null;
  #sigints = 0;
  #onRejection = null;
  #log;
  #state = { kind: 'connecting' };

  /**
   * @param {object} [options]
   * @param {string|string[]} [options.connect]  gateway URL, or a list (`VYX_CONNECT`,
   *   comma-separated): a session to each gateway and each address of its host name
   * @param {string} [options.id]  worker id (`VYX_WORKER_ID`)
   * @param {string} [options.token]  registration token (`VYX_TOKEN`)
   * @param {number} [options.maxConcurrency]  streams served at once (`defaults().maxConcurrency`)
   * @param {Record<string,string>} [options.labels]
   * @param {string} [options.caFile]  extra CAs (PEM) for `wss://` (`VYX_CA_FILE`)
   * @param {string} [options.instance]
   * @param {number} [options.connectTimeoutMs]  one dial's bound (`defaults().connectTimeoutMs`)
   * @param {number} [options.drainTimeoutMs]  what in-flight requests get on stop
   *   (`defaults().drainTimeoutMs`)
   * @param {boolean} [options.handleSignals]  SIGTERM/SIGINT drain, a second SIGINT exits at
   *   once (default true)
   * @param {object} [options.logger]  where the worker's logs go, the core's included: any
   *   object with `debug/info/warn/error` (`console`, pino, winston); the core's go to
   *   stderr when this is not given
   * @param {string} [options.logLevel]  the core's log level: `off`, `error`, `warn`,
   *   `info` (the default), `debug` or `trace` (`VYX_LOG`)
   */
  constructor(options = {}) {
    super();
    const { NativeWorker } = native();
    const o = {};
    if (options.connect !== undefined && options.connect !== null) {
      o.connect = Array.isArray(options.connect) ? options.connect.map(String) : [String(options.connect)];
    }
    for (const k of ['id', 'token', 'caFile', 'instance']) {
      if (options[k] !== undefined && options[k] !== null) o[k] = String(options[k]);
    }
    // The binding would coerce or name a Rust type; the core checks the ranges it knows.
    if (options.maxConcurrency !== undefined) o.maxConcurrency = wholeNumber(options, 'maxConcurrency', 1);
    if (options.connectTimeoutMs !== undefined) o.connectTimeoutMs = wholeNumber(options, 'connectTimeoutMs', 1);
    if (options.labels !== undefined) o.labels = { ...options.labels };
    if (options.drainTimeoutMs !== undefined) wholeNumber(options, 'drainTimeoutMs');
    if (options.handleSignals !== undefined && typeof options.handleSignals !== 'boolean') {
      throw vyxError('ERR_VYX_CONFIG', `handleSignals must be true or false, not ${shown(options.handleSignals)}`);
    }
    if (options.logLevel !== undefined && options.logLevel !== null) o.logLevel = String(options.logLevel);
    o.hasLogger = options.logger !== undefined && options.logger !== null;
    this.#native = call(() => new NativeWorker(o));
    this.#drainTimeoutMs = options.drainTimeoutMs ?? defaults().drainTimeoutMs;
    this.#handleSignals = options.handleSignals ?? true;
    this.#log = logTo(options.logger ?? console);
  }

  /**
   * Sets the level of the core's logs, at once and for every worker of the process:
   * `off`, `error`, `warn`, `info`, `debug` or `trace` (`ERR_VYX_CONFIG` otherwise).
   *
   * @example
   * worker.setLogLevel('debug'); // reconnects and drains in detail
   */
  setLogLevel(level) {
    call(() => native().setLogLevel(String(level)));
    return this;
  }

  /**
   * Each session's latest state, `{ gateway, address, kind, connectionId?, cause? }`: one
   * per gateway, and per address of a gateway's host name. `state` is their aggregate:
   * `connected` while at least one session is.
   */
  gateways() {
    return this.#native.gateways().map((g) => {
      const s = { gateway: g.gateway, address: g.address ?? null, kind: g.kind };
      if (g.connectionId != null) s.connectionId = g.connectionId;
      if (g.cause != null) s.cause = g.cause;
      return s;
    });
  }

  /** The latest connection state emitted (`{ kind: 'connecting' }` before any). */
  get state() {
    return this.#state;
  }

  /** The worker id (from the options or `VYX_WORKER_ID`). */
  get id() {
    return this.#native.workerId;
  }

  /** Declares `handler(req, res)` for `method` (upper-case, or `*`) and `pattern`. */
  route(method, pattern, handler) {
    return this._route(method, pattern, 'plain', handler);
  }

  get(pattern, handler) {
    return this.route('GET', pattern, handler);
  }
  post(pattern, handler) {
    return this.route('POST', pattern, handler);
  }
  put(pattern, handler) {
    return this.route('PUT', pattern, handler);
  }
  patch(pattern, handler) {
    return this.route('PATCH', pattern, handler);
  }
  delete(pattern, handler) {
    return this.route('DELETE', pattern, handler);
  }
  head(pattern, handler) {
    return this.route('HEAD', pattern, handler);
  }
  /** Every method. */
  any(pattern, handler) {
    return this.route('*', pattern, handler);
  }
  /** Same as `any`: the name Express users know. */
  all(pattern, handler) {
    return this.any(pattern, handler);
  }

  /**
   * Serves a fetch-style handler, `(Request) => Response | Promise<Response>` (WHATWG), for
   * every method on `pattern`: `worker.fetch('/api/{*rest}', app.fetch)` serves a Hono app.
   */
  fetch(pattern, handler) {
    if (typeof handler !== 'function') throw new TypeError(`the fetch handler of ${pattern} is not a function`);
    return this._route('*', pattern, 'fetch', fetchRoute(handler));
  }

  /**
   * Serves a `node:http` listener, `(req, res)` with `IncomingMessage`/`ServerResponse`, for
   * every method on `pattern`: `worker.http('/{*path}', expressApp)` serves an Express app.
   * The listener sees the whole path, unless `mount` names a literal prefix of `pattern`:
   * then it sees the rest, as Express's `app.use(mount, app)` shows it
   * (`worker.http('/app/{*rest}', app, { mount: '/app' })`: `/app/users` is `req.url`
   * `/users`, `req.baseUrl` `/app`, `req.originalUrl` `/app/users`).
   *
   * The listener may be an `http.Server` instead (never listening): its `'request'`
   * listeners serve. Upgrade requests (WebSocket handshakes) are emitted as node:http emits
   * them, `'upgrade'` with `(req, socket, head)`, on the server or on the listener when it
   * is an EventEmitter (an Express app), so `ws`'s `handleUpgrade`, `new
   * WebSocketServer({ server })` and Socket.IO's `new Server(server)` work unchanged:
   *
   * @example
   * const wss = new WebSocketServer({ noServer: true });
   * const server = http.createServer(app);
   * server.on('upgrade', (req, socket, head) =>
   *   wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (m) => ws.send(m))));
   * worker.http('/{*path}', server);
   */
  http(pattern, listener, { mount } = {}) {
    if (typeof listener !== 'function' && !(listener instanceof EventEmitter)) {
      throw new TypeError(`the listener of ${pattern} is neither a function nor an http.Server`);
    }
    if (mount !== undefined) {
      const p = String(pattern);
      const literal = typeof mount === 'string' && /^\/[^{}]*[^/{}]$/.test(mount);
      if (!literal || !p.startsWith(mount) || (p.length > mount.length && p[mount.length] !== '/')) {
        throw vyxError('ERR_VYX_CONFIG', `mount ${shown(mount)} is not a literal prefix of ${pattern} (e.g. '/app' of '/app/{*rest}')`);
      }
    }
    return this._route('*', pattern, 'http', httpRoute(listener, mount));
  }

  /**
   * Serves WebSocket connections on `pattern` (a GET route) with the `ws` package:
   * `handler(ws, req)` gets each accepted connection as a `ws` `WebSocket` (`send`, `close`,
   * `on('message')`, ...) and the vyx request (`req.params`, `req.headers`). `options` are
   * `ws`'s `WebSocketServer` options (`maxPayload`, `perMessageDeflate`, `handleProtocols`,
   * ...). A request that is not a WebSocket handshake is answered 426.
   *
   * @example
   * worker.ws('/chat/{room}', (ws, req) => {
   *   ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
   * });
   */
  ws(pattern, handler, options = {}) {
    if (typeof handler !== 'function') throw new TypeError(`the WebSocket handler of ${pattern} is not a function`);
    return this._route('GET', pattern, 'ws', wsRoute(handler, options));
  }

  /**
   * Declares the route added just before idempotent: repeating one of its requests is safe,
   * so the gateway may retry it on another replica when the first is lost before answering,
   * whatever its method (GET, HEAD, OPTIONS, PUT, DELETE and TRACE are retried anyway).
   * `worker.post('/orders', createOrder).idempotent()`. Without a route before it, a TypeError.
   */
  idempotent() {
    const id = this.#routes.length - 1;
    if (id < 0) throw new TypeError('idempotent() follows the route it declares idempotent');
    call(() => this.#native.setIdempotent(id));
    return this;
  }

  /** @internal */
  _route(method, pattern, kind, handler) {
    if (typeof handler !== 'function') throw new TypeError(`the handler of ${method} ${pattern} is not a function`);
    const id = call(() => this.#native.addRoute(String(method).toUpperCase(), String(pattern)));
    this.#routes[id] = { kind, handler, method, pattern };
    return this;
  }

  /**
   * Connects and serves until stopped. Resolves after a drain (`stop()`, SIGTERM, SIGINT);
   * rejects with the gateway's reason when it refused the worker for good.
   */
  async start() {
    if (this.#started) throw vyxError('ERR_VYX_ALREADY_STARTED', 'the worker has started already');
    this.#started = true;
    let stoppedResolve;
    this.#stopped = new Promise((r) => (stoppedResolve = r));
    this.#install();
    try {
      // Each batch comes to `onBatch`, which asks for the next once it has handed this one
      // out (a callback, not a promise per pull: see `pull` in src/lib.rs).
      let pulled;
      const stopped = new Promise((resolve, reject) => (pulled = { resolve, reject }));
      const onBatch = (buf) => {
        if (buf === null) return pulled.resolve();
        try {
          this.#take(decodeBatch(buf));
        } catch (e) {
          this.#native.stopPulling(); // as an exception in a listener ends a server's loop
          return pulled.reject(e);
        }
        writersWoken();
        this.#native.pull();
      };
      call(() => this.#native.start(onBatch));
      // The engine begins in this state (unless stopped before the start); its later
      // changes all come through the pull.
      if (!this.#stopAsked) this.#emitState({ kind: 'connecting' });
      this.#native.pull();
      await stopped;
      await this.#native.wait().catch((e) => {
        throw fromNative(e);
      });
    } finally {
      this.#uninstall();
      stoppedResolve();
    }
  }

  /**
   * Drains: the gateway sends nothing new, in-flight requests get `drainTimeoutMs`, then
   * the worker closes. Resolves when it has stopped.
   */
  stop(drainTimeoutMs = this.#drainTimeoutMs) {
    this.#stopAsked = true;
    this.#native.drain(drainTimeoutMs);
    return this.#stopped ?? Promise.resolve();
  }

  #install() {
    if (this.#handleSignals) {
      this.#onSignal = (signal) => {
        if (signal === 'SIGINT' && this.#sigints++ > 0) {
          // A second Ctrl-C: stop waiting for the drain and die of it, as a node server
          // does (the signal raised again meets the default action, or the app's handlers).
          this.#uninstall();
          process.kill(process.pid, 'SIGINT');
          return;
        }
        this.stop();
      };
      process.on('SIGTERM', this.#onSignal);
      process.on('SIGINT', this.#onSignal);
    }
    // A handler's stray promise that rejects must not take the process down.
    this.#onRejection = (reason) => {
      this.#log('error', `vyx: unhandled rejection (the worker goes on serving): ${describe(reason)}`, { err: reason });
    };
    process.on('unhandledRejection', this.#onRejection);
  }

  #uninstall() {
    if (this.#onSignal !== null) {
      process.removeListener('SIGTERM', this.#onSignal);
      process.removeListener('SIGINT', this.#onSignal);
      this.#onSignal = null;
    }
    process.removeListener('unhandledRejection', this.#onRejection);
  }

  #take(batch) {
    if (batch.logs.length > 0) logRecords(this.#log, batch.logs);
    const nat = this.#native;
    const onDone = (ex) => this.#live.delete(ex.slot);
    for (const head of batch.requests) {
      const ex = new Exchange(nat, head.slot, onDone);
      this.#live.set(head.slot, ex);
      this.#dispatch(ex, head);
    }
    for (const r of batch.resets) {
      const ex = this.#live.get(r.slot);
      if (ex !== undefined) ex.abort(r.code, r.message);
    }
    for (const s of batch.states) this.#emitState(s);
  }

  #emitState(s) {
    this.#state = s;
    this.emit('state', s);
    this.emit(s.kind, s);
  }

  #dispatch(ex, head) {
    const route = this.#routes[head.routeId];
    const req = new VyxRequest(ex, head, route.pattern);
    const res = new VyxResponse(ex);
    ex.res = res;
    let ret;
    try {
      ret = route.handler(req, res);
    } catch (e) {
      this.#failed(route, req, ex, e);
      return;
    }
    if (ret !== null && typeof ret === 'object' && typeof ret.then === 'function') {
      ret.then(
        (v) => this.#returned(route, req, ex, res, v),
        (e) => this.#failed(route, req, ex, e),
      );
    } else this.#returned(route, req, ex, res, ret);
  }

  /**
   * A handler that did not answer: a string as text, bytes as they are, another value as
   * JSON (what the other SDKs do with the same return), nothing as the status set so far
   * (200 unless set) and no body.
   */
  #returned(route, req, ex, res, value) {
    if (route.kind !== 'plain' || ex.done || res.headersSent) return;
    try {
      if (value === undefined) res.end();
      else if (typeof value === 'string' || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) res.send(value);
      else res.json(value);
    } catch (e) {
      this.#failed(route, req, ex, e);
    }
  }

  #failed(route, req, ex, e) {
    if (ex.aborted) return; // nobody is waiting for this answer
    this.#log('error', `vyx: handler of ${route.method} ${route.pattern} failed: ${describe(e)}`, {
      err: e,
      method: req.method,
      route: route.pattern,
      request_id: req.header('x-request-id'),
    });
    if (ex.res instanceof UpgradeSocket) ex.res.destroy(); // aborts the connection it took
    else if (!ex.done) {
      ex.finish();
      ex.native.fail(ex.slot, String(e && e.message ? e.message : e));
    }
  }
}

/** `options[name]` if it is a whole number from `min` to 2^32 - 1, else `ERR_VYX_CONFIG`. */
function wholeNumber(options, name, min = 0) {
  const n = options[name];
  if (!Number.isInteger(n) || n < min || n > 0xffff_ffff) {
    throw vyxError('ERR_VYX_CONFIG', `${name} must be a whole number from ${min} to 4294967295, not ${shown(n)}`);
  }
  return n;
}

/** An option's value as an error message quotes it. */
function shown(v) {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** An error's code and message (`[ERR_VYX_INVALID_HEAD] ...`), or the value as text. */
function describe(e) {
  if (e instanceof Error) return e.code ? `[${e.code}] ${e.message}` : e.message;
  return String(e);
}

/** vyx-core's defaults: `{ maxConcurrency, connectTimeoutMs, drainTimeoutMs }`. */
function defaults() {
  return native().defaults();
}

module.exports = { VyxWorker, defaults };
