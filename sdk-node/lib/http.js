'use strict';
// `node:http`-style listeners, `(req, res)` as Express apps are: the request is a real
// `http.IncomingMessage` whose body streams from the core, the response a real
// `http.ServerResponse` whose head, writes and end go to the core instead of a socket.
const http = require('node:http');
const { Duplex } = require('node:stream');
const { FORWARDED } = require('./request');
const { toBuffer } = require('./response');

/** What listeners look at on `req.socket`: there is no socket of the client's here. */
class GatewaySocket extends Duplex {
  constructor(remoteAddress) {
    super();
    this.remoteAddress = remoteAddress;
    this.remotePort = 0;
    this.encrypted = false;
  }
  _read() {}
  _write(chunk, encoding, cb) {
    cb();
  }
  setTimeout() {
    return this;
  }
  setNoDelay() {
    return this;
  }
  setKeepAlive() {
    return this;
  }
  address() {
    return {};
  }
}

function incoming(req, socket) {
  const msg = new http.IncomingMessage(socket);
  msg.method = req.method;
  msg.url = req.url;
  msg.httpVersion = '1.1';
  msg.httpVersionMajor = 1;
  msg.httpVersionMinor = 1;
  msg.headers = { ...req.headers };
  msg.rawHeaders = req.rawHeaders.slice();
  const chunks = req[Symbol.asyncIterator]();
  msg._read = () => {
    // What IncomingMessage's own _read does first: from here on, reading is pull-driven
    // (each push lets the stream ask for the next chunk), not socket-driven.
    msg._consuming = true;
    msg._readableState.readingMore = false;
    chunks.next().then(
      ({ value, done }) => {
        if (done) {
          // As node:http does at the body's end.
          msg.rawTrailers = req.rawTrailers;
          msg.trailers = req.trailers;
          msg.complete = true;
          msg.push(null);
        } else msg.push(value);
      },
      () => msg.destroy(),
    );
  };
  return msg;
}

function headList(out, res) {
  res.status(out.statusCode);
  const headers = out.getHeaders();
  for (const name of Object.keys(headers)) res.header(name, headers[name]);
}

function outgoing(msg, res) {
  const out = new http.ServerResponse(msg);
  const finish = () => {
    out.finished = true;
    out.emit('prefinish');
    out.emit('finish');
    process.nextTick(() => out.emit('close'));
  };
  out.writeHead = function writeHead(status, reason, headers) {
    if (this._header) throw Object.assign(new Error('Cannot write headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' });
    if (typeof reason !== 'string') headers = reason;
    else this.statusMessage = reason;
    this.statusCode = status;
    if (Array.isArray(headers)) {
      for (let i = 0; i < headers.length; i += 2) this.appendHeader(headers[i], headers[i + 1]);
    } else if (headers) for (const k of Object.keys(headers)) this.setHeader(k, headers[k]);
    return this;
  };
  out.flushHeaders = function flushHeaders() {
    if (this._header) return;
    headList(this, res);
    res.flushHeaders();
    this._header = 'sent to vyx';
  };
  out.write = function write(chunk, encoding, cb) {
    if (typeof encoding === 'function') [cb, encoding] = [encoding, undefined];
    this.flushHeaders();
    const ok = chunk === undefined || chunk === null ? true : res.write(toBuffer(chunk, encoding));
    if (cb) process.nextTick(cb);
    return ok;
  };
  out.end = function end(chunk, encoding, cb) {
    if (typeof chunk === 'function') [cb, chunk] = [chunk, undefined];
    if (typeof encoding === 'function') [cb, encoding] = [encoding, undefined];
    if (this.finished) return this;
    if (!this._header) {
      // The whole response at once: one call into the core.
      headList(this, res);
      this._header = 'sent to vyx';
      res.send(chunk === undefined || chunk === null ? null : toBuffer(chunk, encoding));
    } else res.end(chunk === undefined || chunk === null ? undefined : toBuffer(chunk, encoding));
    finish();
    if (cb) process.nextTick(cb);
    return this;
  };
  out.addTrailers = function addTrailers(headers) {
    res.addTrailers(headers);
  };
  res.on('drain', () => out.emit('drain'));
  res.on('close', () => {
    // The client went away: as node:http says it.
    msg.destroy();
    if (!out.finished) out.emit('close');
  });
  return out;
}

/** The route handler serving `listener(req, res)`. */
function httpRoute(listener) {
  return (req, res) => {
    const socket = new GatewaySocket(req[FORWARDED].clientIp);
    const msg = incoming(req, socket);
    const out = outgoing(msg, res);
    msg.res = out;
    listener(msg, out);
  };
}

module.exports = { httpRoute };
