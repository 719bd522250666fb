'use strict';
// Decodes the packed batch of one pull (the layout is documented in src/batch.rs). One
// buffer per pull instead of one JS object per string built by the binding.

const STATES = ['connecting', 'connected', 'reconnecting', 'draining', 'stopped', 'failed'];

/** @param {Buffer} buf */
function decodeBatch(buf) {
  let o = 0;
  const u32 = () => {
    const n = buf.readUInt32LE(o);
    o += 4;
    return n;
  };
  const slot = () => {
    const n = buf.readDoubleLE(o);
    o += 8;
    return n;
  };
  // Strings: the length's top bit says "not ASCII". ASCII ones (method, target, names,
  // most values) are slices of one latin1 string of the whole batch, the cheapest way V8
  // makes many short strings; the others are decoded as UTF-8 (invalid bytes → U+FFFD).
  const whole = buf.latin1Slice(0, buf.length);
  const str = () => {
    let n = u32();
    let s;
    if (n >= 0x80000000) {
      n -= 0x80000000;
      s = buf.utf8Slice(o, o + n);
    } else s = whole.slice(o, o + n);
    o += n;
    return s;
  };

  const requests = new Array(u32());
  for (let i = 0; i < requests.length; i++) {
    const s = slot();
    const routeId = u32();
    const method = str();
    const target = str();
    const params = new Array(u32() * 2);
    for (let j = 0; j < params.length; j += 2) {
      params[j] = str();
      params[j + 1] = str();
    }
    // The header block is skipped here and decoded when first read: most handlers read a
    // header or none, and a request carries a dozen strings' worth.
    const headersAt = o;
    const headerCount = u32();
    for (let j = 0; j < 2 * headerCount; j++) {
      const n = u32() & 0x7fffffff;
      o += n;
    }
    const clientIp = str() || undefined;
    const scheme = str();
    const hasBody = buf[o++] === 1;
    const httpVersion = [buf[o], buf[o + 1]];
    const upgrade = buf[o + 2] === 1;
    o += 3;
    requests[i] = new Head(s, routeId, method, target, params, buf, whole, headersAt, clientIp, scheme, hasBody, httpVersion, upgrade);
  }
  const resets = new Array(u32());
  for (let i = 0; i < resets.length; i++) {
    resets[i] = { slot: slot(), code: str(), message: str() };
  }
  const states = new Array(u32());
  for (let i = 0; i < states.length; i++) {
    const kind = buf[o++];
    const state = { kind: STATES[kind] };
    if (kind === 1) state.connectionId = str();
    if (kind === 2) {
      state.attempt = u32();
      state.delayMs = u32();
      state.cause = str();
    }
    if (kind === 5) state.cause = str();
    states[i] = state;
  }
  const logs = new Array(u32());
  for (let i = 0; i < logs.length; i++) {
    const level = buf[o++];
    const target = str();
    const message = str();
    const fields = {};
    for (let n = u32(); n > 0; n--) {
      const name = str();
      const kind = buf[o++];
      if (kind === 0) fields[name] = str();
      else if (kind === 1) {
        fields[name] = buf.readDoubleLE(o);
        o += 8;
      } else fields[name] = buf[o++] === 1;
    }
    logs[i] = { level, target, message, fields };
  }
  return { requests, resets, states, logs };
}

/** One request's head; `headers` (flat `[name, value, ...]`) is decoded on first read. */
class Head {
  #buf;
  #whole;
  #headersAt;
  #headers = null;

  constructor(slot, routeId, method, target, params, buf, whole, headersAt, clientIp, scheme, hasBody, httpVersion, upgrade) {
    this.slot = slot;
    this.routeId = routeId;
    this.method = method;
    this.target = target;
    this.params = params;
    this.#buf = buf;
    this.#whole = whole;
    this.#headersAt = headersAt;
    this.clientIp = clientIp;
    this.scheme = scheme;
    this.hasBody = hasBody;
    this.httpVersion = httpVersion;
    this.upgrade = upgrade;
  }

  get headers() {
    if (this.#headers === null) {
      const buf = this.#buf;
      let o = this.#headersAt;
      const headers = new Array(buf.readUInt32LE(o) * 2);
      o += 4;
      for (let j = 0; j < headers.length; j++) {
        let n = buf.readUInt32LE(o);
        o += 4;
        if (n >= 0x80000000) {
          n -= 0x80000000;
          headers[j] = buf.utf8Slice(o, o + n);
        } else headers[j] = this.#whole.slice(o, o + n);
        o += n;
      }
      this.#headers = headers;
      this.#buf = this.#whole = null; // the batch is no longer needed
    }
    return this.#headers;
  }
}

module.exports = { decodeBatch };
