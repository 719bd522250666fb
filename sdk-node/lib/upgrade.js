'use strict';
// The socket of an upgrade request (PROTOCOL.md §4.5, HOSTS.md §7a), as node:http hands one
// to an `'upgrade'` listener: a Duplex over the request's stream. The first bytes written to
// it are the answer's HTTP/1.1 head (`ws` writes its 101 so), which the binding parses into
// the stream's head; after a 101 the stream is a byte pipe under its windows: reads take
// the client's bytes (and grant it credit only as they are taken), writes wait for credit,
// `end()` half-closes, `destroy()` aborts (RESET) unless both sides had ended.
const { Duplex } = require('node:stream');
const { fromNative } = require('./errors');

const EMPTY = Buffer.alloc(0);

/** How much of a response head may be written before its blank line (as Go's hijack). */
const MAX_RAW_HEAD = 64 * 1024;

const HEAD_END = Buffer.from('\r\n\r\n');

/** A reset or lost stream, as net.Socket reports a peer's reset. */
function connReset(e) {
  const err = new Error(e && e.message ? e.message : 'the upgraded connection was reset');
  err.code = 'ECONNRESET';
  err.cause = e;
  return err;
}

/**
 * The client's connection after an upgrade request, as `net.Socket` shows it to the
 * libraries that take one from node:http's `'upgrade'` event (`ws`, engine.io).
 * `remotePort` is 0: the gateway does not forward the client's port (HOSTS.md §5).
 */
class UpgradeSocket extends Duplex {
  #ex;
  #raw = null; // the head written so far, up to its blank line
  #headSent = false;
  #body = true; // bytes after the head go out (false: the head ended the stream)
  #ended = false; // our END_STREAM (the half-close) is out
  #reading = false;
  #idleMs = 0;
  #idle = null;

  /** @internal */
  constructor(exchange, remoteAddress) {
    // node:http's sockets allow half-open connections: the client's end does not end ours.
    super({ allowHalfOpen: true });
    this.#ex = exchange;
    exchange.res = this;
    this.remoteAddress = remoteAddress;
    this.remotePort = 0;
    this.remoteFamily = remoteAddress && remoteAddress.includes(':') ? 'IPv6' : 'IPv4';
    this.encrypted = false;
    this.bytesRead = 0;
    this.bytesWritten = 0;
  }

  /** As `net.Socket`'s: emits `'timeout'` after `ms` without a byte either way (0: never). */
  setTimeout(ms, callback) {
    this.#idleMs = ms;
    if (callback) this.once('timeout', callback);
    this.#touch();
    return this;
  }

  /** Nothing to set: the gateway's sockets have TCP_NODELAY. */
  setNoDelay() {
    return this;
  }

  setKeepAlive() {
    return this;
  }

  ref() {
    return this;
  }

  unref() {
    return this;
  }

  address() {
    return {};
  }

  #touch() {
    if (this.#idle !== null) clearTimeout(this.#idle);
    this.#idle = null;
    if (this.#idleMs > 0 && !this.destroyed) {
      this.#idle = setTimeout(() => this.emit('timeout'), this.#idleMs);
      this.#idle.unref();
    }
  }

  _read() {
    if (this.#reading) return;
    this.#reading = true;
    this.#pull();
  }

  /** Pushes the client's bytes while the reader wants them; waits only when none are there. */
  #pull() {
    const ex = this.#ex;
    for (;;) {
      if (this.destroyed) return;
      let chunk;
      try {
        chunk = ex.native.tryChunk(ex.slot);
      } catch (e) {
        this.#reading = false;
        this.#fail(connReset(fromNative(e)));
        return;
      }
      if (chunk === null) {
        ex.native.readable(ex.slot).then(() => this.#pull());
        return;
      }
      this.#reading = chunk.length > 0;
      if (chunk.length === 0) {
        this.push(null); // the client half-closed
        return;
      }
      this.bytesRead += chunk.length;
      this.#touch();
      if (!this.push(chunk)) {
        this.#reading = false;
        return;
      }
    }
  }

  _write(chunk, encoding, cb) {
    this.#write(chunk, cb);
  }

  // `ws` corks a frame's header and payload: one crossing and one DATA frame for both.
  _writev(chunks, cb) {
    this.#write(chunks.length === 1 ? chunks[0].chunk : Buffer.concat(chunks.map((c) => c.chunk)), cb);
  }

  #write(buf, cb) {
    const ex = this.#ex;
    this.bytesWritten += buf.length;
    this.#touch();
    if (!this.#headSent) {
      this.#raw = this.#raw === null ? buf : Buffer.concat([this.#raw, buf]);
      const end = this.#raw.indexOf(HEAD_END);
      if (end < 0) {
        if (this.#raw.length > MAX_RAW_HEAD) this.#refuse('a response head larger than 64 KiB was written to the upgrade socket');
        return cb();
      }
      const head = this.#raw.subarray(0, end + HEAD_END.length);
      buf = this.#raw.subarray(end + HEAD_END.length);
      this.#raw = null;
      let sent;
      try {
        sent = ex.native.sendRawHead(ex.slot, head);
      } catch {
        // The binding answered 500: the client has its answer, as the bytes of a socket
        // would have reached it, and the app gets no error.
        this.#refuse(null);
        return cb();
      }
      this.#headSent = true;
      this.#body = sent.body;
      if (!sent.body) this.#ended = true;
    }
    if (!this.#body || buf.length === 0) return cb();
    let accepted;
    try {
      accepted = ex.native.trySend(ex.slot, buf, false);
    } catch (e) {
      return cb(connReset(fromNative(e)));
    }
    if (accepted) return cb();
    ex.native.writable(ex.slot).then(
      () => cb(),
      (e) => cb(connReset(fromNative(e))),
    );
  }

  // end(): the half-close, END_STREAM after what was written.
  _final(cb) {
    const ex = this.#ex;
    if (!this.#headSent) {
      ex.native.fail(ex.slot, 'the upgrade socket ended before a response head was written to it');
      this.#ended = true;
      return cb();
    }
    if (this.#ended) return cb();
    let accepted;
    try {
      accepted = ex.native.trySend(ex.slot, EMPTY, true);
    } catch (e) {
      return cb(connReset(fromNative(e)));
    }
    this.#ended = true;
    if (accepted) return cb();
    ex.native.writable(ex.slot).then(
      () => cb(),
      (e) => cb(connReset(fromNative(e))),
    );
  }

  _destroy(err, cb) {
    const ex = this.#ex;
    if (this.#idle !== null) clearTimeout(this.#idle);
    if (!ex.aborted) {
      // Before our half-close a destroy aborts both ways (RESET, as a TCP reset would; 500
      // before any head); after it, the client's side still open is refused.
      if (this.#ended) ex.native.release(ex.slot);
      else ex.native.fail(ex.slot, err ? String(err.message || err) : 'the upgraded connection was destroyed');
    }
    ex.finish();
    cb(err);
  }

  /** An answer that cannot be sent: 500 (`why` given: answered here), and the socket goes. */
  #refuse(why) {
    const ex = this.#ex;
    if (why !== null) ex.native.fail(ex.slot, why);
    this.#headSent = true;
    this.#body = false;
    this.#ended = true;
    process.nextTick(() => this.destroy());
  }

  /** A reset stream: reported as `'error'` only to a socket someone listens to for it. */
  #fail(err) {
    this.destroy(this.listenerCount('error') > 0 ? err : undefined);
  }

  /** @internal The gateway reset the stream (the client went away, a drain deadline). */
  _aborted(reason) {
    this.#fail(connReset(reason));
  }
}

module.exports = { UpgradeSocket };
