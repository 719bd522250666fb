'use strict';
// The binding's errors say their code as a `[ERR_VYX_...]` prefix; here it becomes `code`.

const CODED = /^\[(ERR_VYX_[A-Z_]+)\] ([\s\S]*)$/;

/** An `Error` with a `code`. */
function vyxError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

/** The binding's error as an `Error` with its `code` (others pass unchanged). */
function fromNative(e) {
  const m = e && typeof e.message === 'string' ? CODED.exec(e.message) : null;
  return m ? vyxError(m[1], m[2]) : e;
}

/** Calls `fn`, rethrowing the binding's errors with their code. */
function call(fn) {
  try {
    return fn();
  } catch (e) {
    throw fromNative(e);
  }
}

module.exports = { vyxError, fromNative, call };
