'use strict';
const { EventEmitter } = require('node:events');
const { fromNative } = require('./errors');

const EMPTY = Buffer.alloc(0);
const NONE = Object.freeze([]);

function toBuffer(chunk, encoding) {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, encoding || 'utf8');
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (chunk instanceof ArrayBuffer) return Buffer.from(chunk);
  if (ArrayBuffer.isView(chunk)) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError('a body chunk must be a string, Buffer, Uint8Array or ArrayBuffer');
}

/**
 * The answer to one request: a whole response with `send()`/`json()` (one call into the
 * core), or a streamed one with `write()`/`end()`, where `write()` returns `false` when the
 * flow-control window is full and `'drain'` (or `await res.drained()`) says when to go on.
 * After the client went away every call is a no-op and `write()` returns `false`.
 */
class VyxResponse extends EventEmitter {
  #ex;
  #headers = [];
  #phase = 'head'; // head → body (streaming) → ended
  #bodyWanted = true;
  #waiting = false;
  // NONE until used: most responses never stream, wait or carry trailers.
  #queue = NONE;
  #endQueued = false;
  #drainWaiters = NONE;
  #trailers = NONE;

  /** @internal */
  constructor(exchange) {
    super();
    this.#ex = exchange;
    /** The status to send (200 unless set). */
    this.statusCode = 200;
  }

  /** Whether the head has gone to the core. */
  get headersSent() {
    return this.#phase !== 'head';
  }

  /** Whether the response has ended (or the stream was reset). */
  get writableEnded() {
    return this.#phase === 'ended';
  }

  /** Whether `write()` would buffer (the window is full). */
  get writableNeedDrain() {
    return this.#waiting;
  }

  /** Sets the status; chainable. */
  status(code) {
    this.statusCode = code;
    return this;
  }

  /** Adds a header (an array value adds one per element); chainable. */
  header(name, value) {
    if (Array.isArray(value)) for (const v of value) this.#headers.push(String(name), String(v));
    else this.#headers.push(String(name), String(value));
    return this;
  }

  /** Sets a header, replacing any of the same name; chainable. */
  setHeader(name, value) {
    this.removeHeader(name);
    return this.header(name, value);
  }

  /** The first value of a header set so far. */
  getHeader(name) {
    const n = String(name).toLowerCase();
    for (let i = 0; i < this.#headers.length; i += 2) {
      if (this.#headers[i].toLowerCase() === n) return this.#headers[i + 1];
    }
    return undefined;
  }

  /** Removes every header of that name. */
  removeHeader(name) {
    const n = String(name).toLowerCase();
    const kept = [];
    for (let i = 0; i < this.#headers.length; i += 2) {
      if (this.#headers[i].toLowerCase() !== n) kept.push(this.#headers[i], this.#headers[i + 1]);
    }
    this.#headers = kept;
  }

  /**
   * Adds trailer fields, sent after the body as `node:http` sends them: `headers` an object
   * or `[name, value]` pairs. Name them in a `Trailer` header first (HTTP/1.1 clients get
   * only the ones named there). Dropped where the client or gateway does not take them.
   *
   * @example
   * res.header('trailer', 'x-checksum');
   * res.write(data);
   * res.addTrailers({ 'x-checksum': sum });
   * res.end();
   */
  addTrailers(headers) {
    const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
    if (this.#trailers === NONE) this.#trailers = [];
    for (const [name, value] of pairs) this.#trailers.push(String(name), String(value));
    return this;
  }

  /**
   * Sends an interim (1xx) response now, ahead of this one's head: 103 Early Hints, or any
   * 1xx but 101 (PROTOCOL.md §3.11). `headers` an object (an array value is one field per
   * element) or `[name, value]` pairs. Returns `false` when it was dropped, as an interim
   * response may be: the gateway does not forward them, or 8 were sent already. The gateway
   * forwards them to HTTP/1.1 clients (not HTTP/1.0 or HTTP/2, and never a 100).
   *
   * @example
   * res.sendInformational(103, { link: '</app.css>; rel=preload; as=style' });
   * res.send(page);
   */
  sendInformational(status, headers = {}) {
    if (this.#phase !== 'head') {
      if (this.#ex.aborted) return false;
      throw codedState('an interim response after the head');
    }
    const flat = [];
    for (const [name, value] of Array.isArray(headers) ? headers : Object.entries(headers)) {
      if (Array.isArray(value)) for (const v of value) flat.push(String(name), String(v));
      else flat.push(String(name), String(value));
    }
    const ex = this.#ex;
    try {
      return ex.native.sendInformational(ex.slot, status, flat);
    } catch (e) {
      throw fromNative(e);
    }
  }

  /** Answers JSON (`content-type: application/json` unless set). */
  json(value) {
    if (this.#phase !== 'head') return this.send(value); // its error, or nothing once aborted
    if (this.getHeader('content-type') === undefined) this.#headers.push('content-type', 'application/json');
    const text = JSON.stringify(value);
    return this._respond(text === undefined ? 'null' : text);
  }

  /**
   * Answers with a whole body: a string (UTF-8, `text/plain; charset=utf-8` unless a
   * content-type is set), bytes (`application/octet-stream` unless set), or nothing. An
   * object or array is answered as JSON.
   */
  send(body) {
    if (this.#phase !== 'head') {
      if (this.#ex.aborted) return this;
      throw codedState('the response has been sent already');
    }
    let bytes;
    if (body === undefined || body === null) bytes = EMPTY;
    else if (typeof body === 'string') {
      if (this.getHeader('content-type') === undefined) this.#headers.push('content-type', 'text/plain; charset=utf-8');
      bytes = body; // encoded by the binding: no Buffer of its own
    } else if (typeof body === 'object' && !ArrayBuffer.isView(body) && !(body instanceof ArrayBuffer)) {
      return this.json(body);
    } else {
      if (this.getHeader('content-type') === undefined) this.#headers.push('content-type', 'application/octet-stream');
      bytes = toBuffer(body);
    }
    return this._respond(bytes);
  }

  /**
   * @internal The whole response as set, with `bytes` (or a string, sent as UTF-8) as its
   * body: no content-type added.
   */
  _respond(bytes) {
    if (this.#phase !== 'head') {
      if (this.#ex.aborted) return this;
      throw codedState('the response has been sent already');
    }
    // Trailers follow a streamed body only.
    if (this.#trailers.length > 0) {
      this.flushHeaders();
      return this.end(bytes);
    }
    this.#phase = 'ended';
    const ex = this.#ex;
    ex.finish();
    wakeAfterTurn(ex.native);
    try {
      if (typeof bytes === 'string') ex.native.respondText(ex.slot, this.statusCode, this.#headers, bytes);
      else ex.native.respond(ex.slot, this.statusCode, this.#headers, bytes);
    } catch (e) {
      throw fromNative(e);
    }
    this.emit('finish');
    return this;
  }

  /** Sends the head now (a streamed response). */
  flushHeaders() {
    if (this.#phase !== 'head' || this.#ex.aborted) return;
    this.#phase = 'body';
    const ex = this.#ex;
    try {
      this.#bodyWanted = ex.native.sendHead(ex.slot, this.statusCode, this.#headers, false);
    } catch (e) {
      this.#phase = 'ended';
      ex.finish();
      throw fromNative(e);
    }
    if (!this.#bodyWanted) {
      // HEAD, 204, 304: the head ended the stream; writes are accepted and dropped.
      ex.finish();
    }
  }

  /**
   * Streams a chunk. Returns `false` when the window is full (the chunk is kept and goes
   * out as credit comes): wait for `'drain'` or `await res.drained()` before writing more.
   */
  write(chunk, encoding) {
    if (this.#ex.aborted) return false;
    if (this.#phase === 'ended') throw codedState('write after end');
    if (this.#phase === 'head') this.flushHeaders();
    if (!this.#bodyWanted) return true;
    const bytes = toBuffer(chunk, encoding);
    if (bytes.length === 0) return !this.#waiting;
    if (this.#waiting) {
      if (this.#queue === NONE) this.#queue = [];
      this.#queue.push(bytes);
      return false;
    }
    return this.#send(bytes, false);
  }

  /** Ends the response, after `chunk` if given. Without a prior `write()`, this is `send()`. */
  end(chunk, encoding) {
    if (typeof chunk === 'function') chunk = undefined;
    if (typeof encoding === 'function') encoding = undefined;
    if (this.#ex.aborted || this.#phase === 'ended') return this;
    if (this.#phase === 'head') {
      return this.send(chunk === undefined || chunk === null ? EMPTY : toBuffer(chunk, encoding));
    }
    if (chunk !== undefined && chunk !== null) this.write(chunk, encoding);
    if (!this.#bodyWanted) {
      this.#phase = 'ended';
      this.emit('finish');
      return this;
    }
    if (this.#waiting) this.#endQueued = true;
    else this.#send(EMPTY, true);
    return this;
  }

  /** Resolves when a full window has room again (at once when it has); rejects on reset. */
  drained() {
    if (this.#ex.aborted) return Promise.reject(this.#ex.reason);
    if (!this.#waiting) return Promise.resolve();
    if (this.#drainWaiters === NONE) this.#drainWaiters = [];
    return new Promise((resolve, reject) => this.#drainWaiters.push({ resolve, reject }));
  }

  #send(bytes, end) {
    const ex = this.#ex;
    let accepted;
    try {
      accepted =
        end && this.#trailers.length > 0
          ? ex.native.endWithTrailers(ex.slot, bytes, this.#trailers)
          : ex.native.trySend(ex.slot, bytes, end);
    } catch (e) {
      const err = fromNative(e);
      ex.abort(err.code || 'ERR_VYX_INVALID_STATE', err.message);
      return false;
    }
    if (end) {
      this.#phase = 'ended';
      ex.finish();
      this.emit('finish');
      return accepted;
    }
    if (!accepted) this.#wait();
    return accepted;
  }

  #wait() {
    this.#waiting = true;
    const ex = this.#ex;
    ex.native.writable(ex.slot).then(
      () => {
        this.#waiting = false;
        while (this.#queue.length > 0) {
          if (!this.#send(this.#queue.shift(), false)) return; // waiting again
        }
        if (this.#endQueued) {
          this.#endQueued = false;
          this.#send(EMPTY, true);
        }
        const waiters = this.#drainWaiters;
        this.#drainWaiters = NONE;
        for (const w of waiters) w.resolve();
        this.emit('drain');
      },
      (e) => {
        const err = fromNative(e);
        ex.abort(err.code || 'ERR_VYX_RESET', err.message);
      },
    );
  }

  /** @internal The stream was reset. */
  _aborted(reason) {
    this.#phase = 'ended';
    this.#waiting = false;
    this.#queue = NONE;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = NONE;
    for (const w of waiters) w.reject(reason);
    this.emit('close');
  }

  /** @internal Headers as set, flat. */
  _headerList() {
    return this.#headers;
  }
}

// `respond` and `respondText` queue an answer without waking the core's writer (a thread
// switch each): one microtask after the turn wakes it once, and the turn's answers leave in
// one write. The pull wakes them too (`writersWoken`): the answers given while a batch is
// handed out need no call of their own.
let wakeQueued = false;
function wakeAfterTurn(native) {
  if (wakeQueued) return;
  wakeQueued = true;
  queueMicrotask(() => {
    if (!wakeQueued) return;
    wakeQueued = false;
    native.wakeWriters();
  });
}

/** @internal The writers are being woken (by the pull): a wake queued for the turn is not needed. */
function writersWoken() {
  wakeQueued = false;
}

function codedState(message) {
  const e = new Error(message);
  e.code = 'ERR_VYX_INVALID_STATE';
  return e;
}

module.exports = { VyxResponse, toBuffer, writersWoken };
