'use strict';
const { fromNative } = require('./errors');
const { UpgradeSocket } = require('./upgrade');

/**
 * Where the client's IP, scheme and HTTP version (`[major, minor]`), whether a body
 * follows the head, and whether it asks to upgrade, are kept for `http` and `fetch` routes
 * (from the core).
 */
const FORWARDED = Symbol('vyx.forwarded');

/**
 * One request: the head as plain data, the body pulled from the core chunk by chunk
 * (reading grants the gateway credit, so an unread body stays where it is).
 */
class VyxRequest {
  #exchange;
  #headers = null;
  #query = null;
  #params = null;
  #bodyUsed = false;
  #rawParams;
  #head;
  #rawHeaders = null;

  /** @internal */
  constructor(exchange, head, route) {
    this.#exchange = exchange;
    /** The route pattern that matched, e.g. `/users/{id}`. */
    this.route = route;
    /** The method, upper-case (`HEAD` also for a `GET` route serving it). */
    this.method = head.method;
    /** Path and query exactly as the client sent them. */
    this.url = head.target;
    const q = head.target.indexOf('?');
    /** The raw path (not decoded), without the query. */
    this.path = q < 0 ? head.target : head.target.slice(0, q);
    /** The raw query without `?`, `null` when the target has none. */
    this.rawQuery = q < 0 ? null : head.target.slice(q + 1);
    this.#head = head;
    this.#rawParams = head.params;
    /**
     * Trailer names (lower-case) and values, flat: filled when the body has been read to its
     * end, as `node:http` fills them (empty before, and when the client sent none).
     */
    this.rawTrailers = [];
    // The decoded head itself (one object less per request): its clientIp, scheme,
    // httpVersion and hasBody.
    head.hasBody = head.hasBody && !head.upgrade;
    this[FORWARDED] = head;
    /**
     * Whether the client asked to switch protocols (`connection: upgrade`, e.g. a WebSocket
     * handshake, or an HTTP/2 extended CONNECT in its HTTP/1.1 form): such a request has no
     * body, and its answer is an ordinary response unless it is taken as a socket
     * (`worker.http`'s `'upgrade'` event, `worker.ws`).
     */
    this.upgrade = head.upgrade;
  }

  /**
   * @internal The upgrade request's connection as a `Duplex` (lib/upgrade.js): the answer's
   * head is written to it, then bytes both ways.
   */
  _socket() {
    return new UpgradeSocket(this.#exchange, this.clientIp);
  }

  /**
   * The client's IP address as the gateway saw it (the last `x-forwarded-for` element, read
   * by the core); `undefined` when there is none.
   */
  get clientIp() {
    return this[FORWARDED].clientIp;
  }

  /** Header names (lower-case) and values, flat and in order: `[name, value, ...]`. */
  get rawHeaders() {
    return (this.#rawHeaders ??= this.#head.headers);
  }

  set rawHeaders(v) {
    this.#rawHeaders = v;
  }

  /** Path parameters by name, percent-decoded (invalid UTF-8 replaced by U+FFFD). */
  get params() {
    if (this.#params === null) {
      const p = new Params();
      const flat = this.#rawParams;
      for (let i = 0; i < flat.length; i += 2) p[flat[i]] = flat[i + 1];
      this.#params = p;
    }
    return this.#params;
  }

  /** The query decoded as `application/x-www-form-urlencoded`. */
  get query() {
    if (this.#query === null) this.#query = new URLSearchParams(this.rawQuery ?? '');
    return this.#query;
  }

  /**
   * Headers by lower-case name, as `node:http` gives them: repeats joined with `, `, and
   * `set-cookie` always an array.
   */
  get headers() {
    if (this.#headers === null) this.#headers = byName(this.rawHeaders);
    return this.#headers;
  }

  /**
   * Trailers by lower-case name, as `headers` (repeats joined with `, `): filled when the
   * body has been read to its end, `{}` before.
   */
  get trailers() {
    return byName(this.rawTrailers);
  }

  /** One header's value (repeats joined with `, `), or `undefined`. */
  header(name) {
    const v = this.headers[name.toLowerCase()];
    return Array.isArray(v) ? v.join(', ') : v;
  }

  /** Aborted when the client goes away or the connection is lost (the stream was reset). */
  get signal() {
    return this.#exchange.signal();
  }

  /** Whether the body has been (or is being) read. */
  get bodyUsed() {
    return this.#bodyUsed;
  }

  /** The body chunk by chunk (`Buffer`s), read only as fast as it is consumed. */
  async *[Symbol.asyncIterator]() {
    if (this.#bodyUsed) throw new TypeError('the request body has been read already');
    this.#bodyUsed = true;
    // An upgrade request has no body: after a 101 its stream carries the new protocol.
    if (this.upgrade) return;
    const ex = this.#exchange;
    for (;;) {
      if (ex.aborted) throw ex.reason;
      let chunk;
      try {
        chunk = ex.native.tryChunk(ex.slot);
      } catch (e) {
        throw fromNative(e);
      }
      if (chunk === null) {
        await ex.native.readable(ex.slot);
        continue;
      }
      if (chunk.length === 0) {
        if (ex.aborted) throw ex.reason;
        this.rawTrailers = ex.native.trailers(ex.slot) ?? [];
        return;
      }
      yield chunk;
    }
  }

  /** The whole body as one `Buffer`. */
  async buffer() {
    const chunks = [];
    for await (const c of this) chunks.push(c);
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  }

  /** The whole body as an `ArrayBuffer`. */
  async arrayBuffer() {
    const b = await this.buffer();
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  }

  /** The whole body decoded as UTF-8. */
  async text() {
    return (await this.buffer()).toString('utf8');
  }

  /** The whole body parsed as JSON (a `SyntaxError` when it is not). */
  async json() {
    return JSON.parse(await this.text());
  }
}

/**
 * The object of `req.params`: no inherited names (a parameter named `constructor` or
 * `__proto__` is an own property like any other), yet not made by `Object.create(null)`,
 * whose objects V8 keeps as dictionaries: filling one cost more than the rest of a small
 * request's JS (profiled under the benchmark's load).
 */
function Params() {}
Params.prototype = Object.create(null);

/** Flat `[name, value, ...]` by name, as `node:http` joins them (`set-cookie` an array). */
function byName(flat) {
  const h = Object.create(null);
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i];
    const value = flat[i + 1];
    if (name === 'set-cookie') (h[name] ??= []).push(value);
    else h[name] = name in h ? `${h[name]}, ${value}` : value;
  }
  return h;
}

module.exports = { VyxRequest, FORWARDED };
