'use strict';
const { vyxError } = require('./errors');

/**
 * What a request and its response share: the slot naming the stream in the binding,
 * whether the gateway reset it, and the lazily made AbortController behind `req.signal`.
 * @internal
 */
class Exchange {
  constructor(native, slot, onDone) {
    this.native = native;
    this.slot = slot;
    this.aborted = false;
    this.reason = null;
    this.done = false;
    this.res = null;
    this._ctl = null;
    this._onDone = onDone;
  }

  signal() {
    if (this._ctl === null) {
      this._ctl = new AbortController();
      if (this.aborted) this._ctl.abort(this.reason);
    }
    return this._ctl.signal;
  }

  /** The stream was reset: nobody will receive the answer. */
  abort(code, message) {
    if (this.aborted || this.done) return;
    this.aborted = true;
    this.reason = vyxError(code, message);
    this.finish();
    if (this._ctl !== null) this._ctl.abort(this.reason);
    if (this.res !== null) this.res._aborted(this.reason);
  }

  /** The response has ended (or can no longer be sent). */
  finish() {
    if (this.done) return;
    this.done = true;
    this._onDone(this);
  }
}

module.exports = { Exchange };
