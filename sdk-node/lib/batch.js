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
  // Method, target and header names are ASCII: latin1 is the cheapest exact decoding.
  const ascii = () => {
    const n = u32();
    const s = buf.latin1Slice(o, o + n);
    o += n;
    return s;
  };
  // Values are bytes; invalid UTF-8 becomes U+FFFD.
  const utf8 = () => {
    const n = u32();
    const s = buf.utf8Slice(o, o + n);
    o += n;
    return s;
  };

  const requests = new Array(u32());
  for (let i = 0; i < requests.length; i++) {
    const s = slot();
    const routeId = u32();
    const method = ascii();
    const target = ascii();
    const params = new Array(u32() * 2);
    for (let j = 0; j < params.length; j += 2) {
      params[j] = utf8();
      params[j + 1] = utf8();
    }
    const headers = new Array(u32() * 2);
    for (let j = 0; j < headers.length; j += 2) {
      headers[j] = ascii();
      headers[j + 1] = utf8();
    }
    requests[i] = { slot: s, routeId, method, target, params, headers };
  }
  const resets = new Array(u32());
  for (let i = 0; i < resets.length; i++) {
    resets[i] = { slot: slot(), code: ascii(), message: utf8() };
  }
  const states = new Array(u32());
  for (let i = 0; i < states.length; i++) {
    const kind = buf[o++];
    const state = { state: STATES[kind] };
    if (kind === 1) state.connectionId = utf8();
    if (kind === 2) {
      state.attempt = u32();
      state.delayMs = u32();
      state.cause = utf8();
    }
    if (kind === 5) state.cause = utf8();
    states[i] = state;
  }
  return { requests, resets, states };
}

module.exports = { decodeBatch };
