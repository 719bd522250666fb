'use strict';
// The worker's logs, the core's and the JS layer's, handed to the app's logger: any object
// with debug/info/warn/error (console, pino, winston). A logger that throws or lacks a
// level loses that record, never the worker.

const LEVELS = ['error', 'warn', 'info', 'debug', 'debug']; // the core's trace is debug here

/**
 * pino (like bunyan) takes the fields first, `log.info({ attempt }, 'reconnecting')`;
 * console and winston take the message first, `log.info('reconnecting', { attempt })`.
 */
function fieldsFirst(logger) {
  return typeof logger.levelVal === 'number' && typeof logger.bindings === 'function';
}

/** `log(level, message, fields)` onto `logger`; it never throws. */
function logTo(logger) {
  const first = fieldsFirst(logger);
  return (level, message, fields) => {
    try {
      const fn = logger[level];
      if (typeof fn !== 'function') return;
      if (first) fn.call(logger, fields, message);
      else fn.call(logger, message, fields);
    } catch {
      // Nowhere safe to say so: stderr may be what failed. The record is lost.
    }
  };
}

/** Logs the core's records of one batch (decoded by batch.js). */
function logRecords(log, records) {
  for (const r of records) log(LEVELS[r.level], `vyx: ${r.message}`, { ...r.fields, module: r.target });
}

module.exports = { logTo, logRecords };
