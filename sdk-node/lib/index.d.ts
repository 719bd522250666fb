// Types of @vyx/worker. They name Node's types (Buffer, node:http), so they load them
// themselves: an app need not list `node` in `types` (TypeScript 6+ lists none by default).
/// <reference types="node" />
import { EventEmitter } from 'node:events';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

export interface VyxWorkerOptions {
  /**
   * Gateway URL, `ws://host:port` or `wss://...`, or a list of them (default: `VYX_CONNECT`,
   * comma-separated). The worker holds a session to each gateway and to each address of
   * its host name; to one address, as many as its gateway asks for (one per gateway shard,
   * so that a request is served on the core that took it).
   */
  connect?: string | string[];
  /** Worker id (default: `VYX_WORKER_ID`). */
  id?: string;
  /** Registration token (default: `VYX_TOKEN`). */
  token?: string;
  /** Streams served at once, 1..=65535 (default `defaults().maxConcurrency`, 1024). */
  maxConcurrency?: number;
  labels?: Record<string, string>;
  /** Extra CAs (PEM) trusted for `wss://` (default: `VYX_CA_FILE`). */
  caFile?: string;
  /** Distinguishes this process among replicas of the same id. */
  instance?: string;
  /** How long one dial may take (default `defaults().connectTimeoutMs`, 10 000). */
  connectTimeoutMs?: number;
  /** What in-flight requests get to finish on `stop()` (default `defaults().drainTimeoutMs`, 30 000). */
  drainTimeoutMs?: number;
  /** SIGTERM and SIGINT drain the worker, a second SIGINT exits at once (default true). */
  handleSignals?: boolean;
  /**
   * Where the worker's logs go: the core's (registered, reconnecting, draining, ...) and
   * handler failures. Without it, the core's go to stderr and failures to `console`.
   */
  logger?: Logger;
  /** The core's log level (default: `VYX_LOG`, else `'info'`); see `setLogLevel`. */
  logLevel?: LogLevel;
}

/** The levels of the core's logs, least to most. */
export type LogLevel = 'off' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * Any logger with these methods: `console`, pino, winston. pino is called as
 * `info(fields, message)`, others as `info(message, fields)`; the core's trace level comes
 * as `debug`. A missing method or one that throws loses that record, never the worker.
 *
 * @example
 * new VyxWorker({ logger: pino() }); // {"msg":"vyx: registered","gateway":"ws://...",...}
 */
export interface Logger {
  error(...args: unknown[]): void;
  warn?(...args: unknown[]): void;
  info?(...args: unknown[]): void;
  debug?(...args: unknown[]): void;
}

/** One session's state (`worker.gateways()`). */
export interface GatewayState {
  /** The registration URL dialled. */
  gateway: string;
  /** The address dialled, `null` while the host name resolves to nothing. */
  address: string | null;
  kind: 'connecting' | 'connected' | 'reconnecting' | 'draining' | 'stopped' | 'failed';
  connectionId?: string;
  cause?: string;
}

export type StateEvent =
  | { kind: 'connecting' }
  | { kind: 'connected'; connectionId: string }
  | { kind: 'reconnecting'; attempt: number; delayMs: number; cause: string }
  | { kind: 'draining' }
  | { kind: 'stopped' }
  | { kind: 'failed'; cause: string };

/** The defaults every vyx SDK uses for what its user leaves unset (vyx-core's). */
export interface Defaults {
  maxConcurrency: number;
  connectTimeoutMs: number;
  drainTimeoutMs: number;
}

/** vyx-core's defaults, read from the native addon. */
export declare function defaults(): Defaults;

/** An `Error` from the core; `code` is one of the `ERR_VYX_*` codes. */
export interface VyxError extends Error {
  code:
    | 'ERR_VYX_CONFIG'
    | 'ERR_VYX_NO_ADDON'
    | 'ERR_VYX_REFUSED'
    | 'ERR_VYX_CLOSED'
    | 'ERR_VYX_NO_RUNTIME'
    | 'ERR_VYX_ALREADY_STARTED'
    | 'ERR_VYX_RESET'
    | 'ERR_VYX_CONNECTION_LOST'
    | 'ERR_VYX_INVALID_STATE'
    | 'ERR_VYX_INVALID_HEAD'
    | 'ERR_VYX_WS_MISSING';
}

export declare class VyxRequest implements AsyncIterable<Buffer> {
  /** Upper-case method (`HEAD` also reaches a `GET` route). */
  readonly method: string;
  /** Path and query as the client sent them. */
  readonly url: string;
  /** The route pattern that matched, e.g. `/users/{id}`. */
  readonly route: string;
  /** The raw path, without the query. */
  readonly path: string;
  /** The raw query without `?`; `null` when there is none. */
  readonly rawQuery: string | null;
  /** The client's IP as the gateway saw it (the last `x-forwarded-for` element); `undefined` without one. */
  readonly clientIp: string | undefined;
  /** Path parameters, percent-decoded. */
  readonly params: Record<string, string>;
  /** The query, decoded as `application/x-www-form-urlencoded`. */
  readonly query: URLSearchParams;
  /** By lower-case name; repeats joined with `, `, `set-cookie` an array (as `node:http`). */
  readonly headers: Record<string, string | string[]>;
  /** `[name, value, name, value, ...]` in order, names lower-case. */
  readonly rawHeaders: string[];
  /** Trailers by lower-case name, as `headers`: filled once the body has been read to its end. */
  readonly trailers: Record<string, string | string[]>;
  /** `[name, value, ...]` of the trailers, names lower-case: filled once the body has been read to its end. */
  readonly rawTrailers: string[];
  /** Aborted (reason: a `VyxError`) when the client goes away. */
  readonly signal: AbortSignal;
  /**
   * The client asked to switch protocols (a WebSocket handshake): the request has no body;
   * `worker.http`'s `'upgrade'` event, `worker.ws` and `upgradeWebSocket` take it.
   */
  readonly upgrade: boolean;
  readonly bodyUsed: boolean;
  header(name: string): string | undefined;
  [Symbol.asyncIterator](): AsyncIterator<Buffer>;
  buffer(): Promise<Buffer>;
  arrayBuffer(): Promise<ArrayBuffer>;
  text(): Promise<string>;
  json<T = unknown>(): Promise<T>;
}

export type Body = string | Buffer | Uint8Array | ArrayBuffer | null | undefined;

export declare class VyxResponse extends EventEmitter {
  statusCode: number;
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
  readonly writableNeedDrain: boolean;
  status(code: number): this;
  header(name: string, value: string | number | readonly (string | number)[]): this;
  setHeader(name: string, value: string | number | readonly (string | number)[]): this;
  getHeader(name: string): string | undefined;
  removeHeader(name: string): void;
  /**
   * Trailer fields sent after the body (name them in a `Trailer` header first); dropped where
   * the client or gateway does not take them.
   */
  addTrailers(headers: Record<string, string | number> | readonly (readonly [string, string | number])[]): this;
  /**
   * Sends an interim (1xx) response ahead of this one's head (103 Early Hints, any 1xx but
   * 101); `false` when it was dropped (the gateway does not forward them, or 8 were sent).
   * Forwarded to HTTP/1.1 clients only.
   *
   * @example
   * res.sendInformational(103, { link: '</app.css>; rel=preload; as=style' });
   */
  sendInformational(
    status: number,
    headers?: Record<string, string | number | readonly (string | number)[]> | readonly (readonly [string, string | number])[],
  ): boolean;
  json(value: unknown): this;
  send(body?: Body | object): this;
  flushHeaders(): void;
  /** `false` when the window is full: wait for `'drain'` or `await drained()`. */
  write(chunk: Body, encoding?: BufferEncoding): boolean;
  end(chunk?: Body, encoding?: BufferEncoding): this;
  drained(): Promise<void>;
}

/**
 * Answers itself through `res`, or returns a value: a string as text, bytes as
 * `application/octet-stream`, another value as JSON, nothing as 200 (or the status set) and
 * no body.
 */
export type Handler = (req: VyxRequest, res: VyxResponse) => unknown | Promise<unknown>;
export type FetchHandler = (request: Request) => Response | Promise<Response>;
export type HttpListener = (req: IncomingMessage, res: ServerResponse) => void;
/**
 * A connection `worker.ws` and `upgradeWebSocket` hand out: a `ws` `WebSocket` (server
 * side). The members most apps use are typed here; `@types/ws` has the rest.
 */
export interface VyxWebSocket extends EventEmitter {
  readonly readyState: 0 | 1 | 2 | 3;
  readonly protocol: string;
  readonly bufferedAmount: number;
  binaryType: 'nodebuffer' | 'arraybuffer' | 'fragments' | 'blob';
  send(data: string | Buffer | ArrayBuffer | ArrayBufferView, cb?: (err?: Error) => void): void;
  send(data: string | Buffer | ArrayBuffer | ArrayBufferView, options: { binary?: boolean; compress?: boolean; fin?: boolean }, cb?: (err?: Error) => void): void;
  close(code?: number, reason?: string | Buffer): void;
  terminate(): void;
  ping(data?: unknown, mask?: boolean, cb?: (err: Error) => void): void;
  onopen: ((event: { type: string; target: VyxWebSocket }) => void) | null;
  /** `data` is a string for a text message, else as `binaryType` says (a `Buffer` by default). */
  onmessage: ((event: { type: string; data: string | Buffer; target: VyxWebSocket }) => void) | null;
  onclose: ((event: { type: string; code: number; reason: string; wasClean: boolean; target: VyxWebSocket }) => void) | null;
  onerror: ((event: { type: string; error: unknown; message: string; target: VyxWebSocket }) => void) | null;
  /** `data` as `binaryType` says: a `Buffer` by default (text too, `isBinary` false). */
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this;
  on(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'open' | 'ping' | 'pong', listener: (...args: any[]) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** `ws`'s `WebSocketServer` options that apply to one route (`noServer` is implied). */
export interface WsOptions {
  maxPayload?: number;
  perMessageDeflate?: boolean | object;
  handleProtocols?: (protocols: Set<string>, req: IncomingMessage) => string | false;
  skipUTF8Validation?: boolean;
  autoPong?: boolean;
  [option: string]: unknown;
}

export type WsHandler = (ws: VyxWebSocket, req: VyxRequest) => unknown | Promise<unknown>;

/**
 * Accepts the WebSocket a fetch route's request asks for (`Deno.upgradeWebSocket`'s
 * shape): return `response` from the handler, use `socket` once it opens. `protocol` picks
 * the subprotocol. A `TypeError` for any other request.
 *
 * ```ts
 * worker.fetch('/echo', (request) => {
 *   const { socket, response } = upgradeWebSocket(request);
 *   socket.onmessage = (e) => socket.send(e.data);
 *   return response;
 * });
 * ```
 */
export declare function upgradeWebSocket(
  request: Request,
  options?: WsOptions & { protocol?: string },
): { socket: VyxWebSocket; response: Response };

export interface HttpOptions {
  /** A literal prefix of the pattern the listener does not see in `req.url` (Express's mount path). */
  mount?: string;
}

export declare class VyxWorker extends EventEmitter {
  constructor(options?: VyxWorkerOptions);
  readonly id: string;
  /**
   * Each session's latest state (an address a gateway asked several connections to has one
   * entry per connection); `state` is their aggregate (`connected` while one is).
   */
  gateways(): GatewayState[];
  /** The latest connection state emitted (`{ kind: 'connecting' }` before any). */
  readonly state: StateEvent;
  route(method: string, pattern: string, handler: Handler): this;
  get(pattern: string, handler: Handler): this;
  post(pattern: string, handler: Handler): this;
  put(pattern: string, handler: Handler): this;
  patch(pattern: string, handler: Handler): this;
  delete(pattern: string, handler: Handler): this;
  head(pattern: string, handler: Handler): this;
  /** Every method (`*`). */
  any(pattern: string, handler: Handler): this;
  /**
   * Declares the route added just before idempotent: the gateway may retry its requests on
   * another replica whatever their method. `worker.post('/orders', h).idempotent()`.
   */
  idempotent(): this;
  /** Same as `any` (Express's name). */
  all(pattern: string, handler: Handler): this;
  /** Serves a WHATWG fetch handler (Hono's `app.fetch`) for every method on `pattern`. */
  fetch(pattern: string, handler: FetchHandler): this;
  /**
   * Serves a `node:http` listener (an Express app) for every method on `pattern`. It sees
   * the whole path unless `mount`, a literal prefix of `pattern`, moves into `req.baseUrl`
   * as Express's `app.use(mount, app)` does. An `http.Server` (never listening) serves
   * through its `'request'` listeners. Upgrade requests are emitted as `'upgrade'`,
   * `(req, socket, head)` as node:http emits them, on the server or on a listener that is an
   * EventEmitter (an Express app), when it has `'upgrade'` listeners.
   *
   * ```ts
   * worker.http('/app/{*rest}', expressApp, { mount: '/app' }); // GET /app/users: req.url '/users'
   * worker.http('/socket.io/{*rest}', server); // new SocketIoServer(server), ws's { server }
   * ```
   */
  http(pattern: string, listener: HttpListener | Server, options?: HttpOptions): this;
  /**
   * Serves WebSockets on `pattern` (a GET route) with the `ws` package: `handler(ws, req)`
   * for each connection; a request that is not a handshake gets 426.
   *
   * ```ts
   * worker.ws('/chat/{room}', (ws, req) => ws.on('message', (m, isBinary) => ws.send(m, { binary: isBinary })));
   * ```
   */
  ws(pattern: string, handler: WsHandler, options?: WsOptions): this;
  /** Serves until stopped; rejects with a `VyxError` when the gateway refuses the worker. */
  start(): Promise<void>;
  /** Drains; resolves once stopped. */
  stop(drainTimeoutMs?: number): Promise<void>;
  /**
   * Sets the core's log level now, for every worker of the process; throws
   * `ERR_VYX_CONFIG` for a name that is not a level.
   *
   * @example
   * worker.setLogLevel('debug');
   */
  setLogLevel(level: LogLevel): this;

  on(event: 'state', listener: (s: StateEvent) => void): this;
  on(event: 'connecting' | 'draining' | 'stopped', listener: (s: StateEvent) => void): this;
  on(event: 'connected', listener: (s: { kind: 'connected'; connectionId: string }) => void): this;
  on(event: 'reconnecting', listener: (s: { kind: 'reconnecting'; attempt: number; delayMs: number; cause: string }) => void): this;
  on(event: 'failed', listener: (s: { kind: 'failed'; cause: string }) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}
