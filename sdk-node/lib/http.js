'use strict';
// `node:http`-style listeners, `(req, res)` as Express apps are: the request is a real
// `http.IncomingMessage` whose body streams from the core, the response a real
// `http.ServerResponse` whose head, writes and end go to the core instead of a socket.
const http = require('node:http');
const { Duplex } = require('node:stream');
const { FORWARDED } = require('./request');
const { toBuffer } = require('./response');

const EMPTY = Buffer.alloc(0);

/**
 * What listeners look at on `req.socket`: there is no socket of the client's here.
 * `remotePort` is 0: the gateway does not forward the client's port (spec/HOSTS.md §5).
 */
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

function incoming(req, socket, mount) {
  const msg = new http.IncomingMessage(socket);
  // As node:http's parser sets it: true only for a request an 'upgrade' listener takes.
  msg.upgrade = false;
  msg.method = req.method;
  msg.url = req.url;
  if (mount !== undefined && req.url.startsWith(mount)) {
    // As Express's app.use(mount, sub) hands `sub` the request.
    msg.originalUrl = req.url;
    msg.baseUrl = mount;
    msg.url = req.url.slice(mount.length) || '/';
    if (msg.url[0] !== '/') msg.url = `/${msg.url}`;
  }
  // The client's, from the gateway's via element (HOSTS.md §5), as node:http spells it.
  const [major, minor] = req[FORWARDED].httpVersion;
  msg.httpVersion = `${major}.${minor}`;
  msg.httpVersionMajor = major;
  msg.httpVersionMinor = minor;
  msg.headers = { ...req.headers };
  msg.rawHeaders = req.rawHeaders.slice();
  if (req[FORWARDED].hasBody && msg.headers['content-length'] === undefined) {
    // The gateway forwards a body of unknown length without `transfer-encoding` (hop by
    // hop); node:http shows such a body as chunked, and body parsers (type-is's hasBody)
    // look for exactly that.
    msg.headers['transfer-encoding'] = 'chunked';
    msg.rawHeaders.push('transfer-encoding', 'chunked');
  }
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
  // Where on-finished (send, sendFile, morgan) looks for a client that went away; writes do
  // not go to it.
  out.socket = msg.socket;
  let sent = false; // whether the head has gone to the core (`_header` says it is final)
  const finish = () => {
    out.finished = true;
    out.emit('prefinish');
    out.emit('finish');
    process.nextTick(() => out.emit('close'));
  };
  // What node:http's writeHead does, without a socket: the head becomes final (headersSent,
  // and setHeader throws ERR_HTTP_HEADERS_SENT) and goes out with the first write or end.
  // The reason phrase is kept on `statusMessage` only: the protocol does not carry it.
  out.writeHead = function writeHead(status, reason, headers) {
    if (this._header) throw Object.assign(new Error('Cannot write headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' });
    if (typeof reason !== 'string') headers = reason;
    else this.statusMessage = reason;
    this.statusCode = status;
    if (Array.isArray(headers)) {
      for (let i = 0; i < headers.length; i += 2) this.appendHeader(headers[i], headers[i + 1]);
    } else if (headers) for (const k of Object.keys(headers)) this.setHeader(k, headers[k]);
    this._header = 'sent to vyx';
    return this;
  };
  // Called as node:http calls it, through `this.writeHead`, so that hooks wrapping it
  // (on-headers: cookie-session, response-time, morgan) run.
  out._implicitHeader = function _implicitHeader() {
    this.writeHead(this.statusCode);
  };
  out.flushHeaders = function flushHeaders() {
    if (!this._header) this._implicitHeader();
    if (sent) return;
    sent = true;
    headList(this, res);
    res.flushHeaders();
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
    if (!this._header) this._implicitHeader();
    const body = chunk === undefined || chunk === null ? undefined : toBuffer(chunk, encoding);
    // The whole response at once is one call into the core, which adds its content-length;
    // an app that asked for chunked framing gets a streamed head, which has none.
    if (!sent && this.hasHeader('transfer-encoding')) this.flushHeaders();
    if (!sent) {
      sent = true;
      headList(this, res);
      res._respond(body ?? EMPTY);
    } else res.end(body);
    finish();
    if (cb) process.nextTick(cb);
    return this;
  };
  out.addTrailers = function addTrailers(headers) {
    res.addTrailers(headers);
  };
  // node:http's 1xx senders. As node:http writes them, an array of `link` values is one
  // field, joined with ", " (Node 20); other fields are sent as given.
  out.writeEarlyHints = function writeEarlyHints(hints, cb) {
    const fields = [];
    for (const name of Object.keys(hints)) {
      const value = hints[name];
      const link = name.toLowerCase() === 'link' && Array.isArray(value);
      fields.push([name, link ? value.join(', ') : value]);
    }
    res.sendInformational(103, fields);
    if (cb) process.nextTick(cb);
  };
  out.writeProcessing = function writeProcessing(cb) {
    res.sendInformational(102);
    if (cb) process.nextTick(cb);
  };
  res.on('drain', () => out.emit('drain'));
  res.on('close', () => {
    // The client went away: as node:http says it.
    msg.destroy();
    if (!out.finished) out.emit('close');
  });
  return out;
}

/**
 * An upgrade request as node:http's `'upgrade'` event gives it: the `IncomingMessage`
 * (`upgrade` true, no body) and its connection's socket (lib/upgrade.js).
 */
function upgradeRequest(req, mount) {
  const socket = req._socket();
  const msg = incoming(req, socket, mount);
  msg.upgrade = true;
  return { msg, socket };
}

/**
 * The route handler serving `target`: a listener `(req, res)`, or an `http.Server` (any
 * EventEmitter) whose `'request'` listeners serve. With `mount`, the listener sees the path
 * after it in `req.url` (the whole one in `req.originalUrl`, `mount` in `req.baseUrl`).
 * An upgrade request goes to the target's `'upgrade'` listeners, `(req, socket, head)`, as
 * node:http's server emits it, when it has any (an Express app is an EventEmitter too);
 * without one it is an ordinary request, as node:http serves it.
 */
function httpRoute(target, mount) {
  const server = typeof target === 'function' ? null : target;
  return (req, res) => {
    if (req.upgrade && typeof target.listenerCount === 'function' && target.listenerCount('upgrade') > 0) {
      const { msg, socket } = upgradeRequest(req, mount);
      target.emit('upgrade', msg, socket, EMPTY);
      return;
    }
    const socket = new GatewaySocket(req[FORWARDED].clientIp);
    const msg = incoming(req, socket, mount);
    const out = outgoing(msg, res);
    msg.res = out;
    if (server === null) target(msg, out);
    else server.emit('request', msg, out);
  };
}

module.exports = { httpRoute, upgradeRequest };
