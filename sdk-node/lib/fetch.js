'use strict';
// Fetch-style handlers, `(Request) => Response` (WHATWG), as Hono's `app.fetch` is: the vyx
// request becomes a `Request` whose body streams from the core, and the `Response` goes
// back whole in one call when its body is already complete, streamed with backpressure
// otherwise.

const { FORWARDED } = require('./request');
const { wsPackage } = require('./ws_package');
const { upgradeRequest } = require('./http');

/** The vyx request behind each `Request` of an upgrade, for `upgradeWebSocket`. */
const UPGRADES = new WeakMap();
/** The answers `upgradeWebSocket` made, and the switch each stands for. */
const SWITCHES = new WeakMap();

const PENDING = Symbol('pending');

/** Resolves `PENDING` after the microtasks queued so far (a body already there wins). */
function soon() {
  return new Promise((resolve) => queueMicrotask(() => queueMicrotask(() => resolve(PENDING))));
}

function toRequest(req) {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i], raw[i + 1]);
  const host = req.header('host') || 'localhost';
  // HEAD reaches the handler as GET, as Hono itself runs HEAD: its body tells the head's
  // content-length, and the core drops it.
  const init = { method: req.method === 'HEAD' ? 'GET' : req.method, headers, signal: req.signal };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const chunks = req[Symbol.asyncIterator]();
    init.body = new ReadableStream({
      async pull(controller) {
        const { value, done } = await chunks.next();
        if (done) controller.close();
        else controller.enqueue(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
      },
      cancel() {
        return chunks.return();
      },
    });
    init.duplex = 'half';
  }
  const request = new Request(`${req[FORWARDED].scheme}://${host}${req.url}`, init);
  if (req.upgrade) UPGRADES.set(request, req);
  return request;
}

/**
 * Accepts the WebSocket a fetch route's `request` asks for, as `Deno.upgradeWebSocket` does:
 * returns the `socket` (a `ws` WebSocket, with `onopen`/`onmessage`/`onclose`/`onerror`
 * and `send`/`close`, open once the handler has returned `response`) and the `response` the
 * handler must return for the switch to happen (a `Response` marked for it: Node's
 * `Response` cannot carry a 101). `options.protocol` picks the subprotocol (else the
 * client's first); the other options are `ws`'s (`maxPayload`, ...). A request that is not
 * a WebSocket handshake of a vyx fetch route is a `TypeError`.
 *
 * @example
 * worker.fetch('/echo', (request) => {
 *   const { socket, response } = upgradeWebSocket(request);
 *   socket.onmessage = (e) => socket.send(e.data);
 *   return response;
 * });
 */
function upgradeWebSocket(request, options = {}) {
  const req = UPGRADES.get(request);
  if (req === undefined || String(req.header('upgrade')).toLowerCase() !== 'websocket') {
    throw new TypeError('upgradeWebSocket takes the Request of a WebSocket handshake on a vyx fetch route');
  }
  UPGRADES.delete(request);
  const { WebSocket, WebSocketServer } = wsPackage('upgradeWebSocket');
  const { protocol, ...wsOptions } = options;
  const wss = new WebSocketServer({
    ...wsOptions,
    noServer: true,
    clientTracking: false,
    // The handshake completes on the socket already handed out.
    WebSocket: function accepted() {
      return socket;
    },
    handleProtocols: (offered) => (protocol !== undefined ? protocol : (offered.values().next().value ?? false)),
  });
  // A server-side WebSocket with the server's settled options, as the server makes its own.
  const socket = new WebSocket(null, undefined, wss.options);
  const response = new Response(null);
  SWITCHES.set(response, (vreq) => {
    const { msg, socket: raw } = upgradeRequest(vreq);
    wss.handleUpgrade(msg, raw, Buffer.alloc(0), () => {});
  });
  return { socket, response };
}

async function answer(req, res, response) {
  if (!(response instanceof Response)) throw new TypeError('the fetch handler did not return a Response');
  const upgrade = SWITCHES.get(response);
  if (upgrade !== undefined) return upgrade(req);
  res.status(response.status);
  for (const [name, value] of response.headers) if (name !== 'set-cookie') res.header(name, value);
  for (const cookie of response.headers.getSetCookie()) res.header('set-cookie', cookie);
  if (response.body === null) return res.send();
  const reader = response.body.getReader();
  try {
    const first = await reader.read();
    if (first.done) return res.send();
    const reading = reader.read();
    const second = await Promise.race([reading, soon()]);
    if (second !== PENDING && second.done) return res.send(first.value);
    // A body still being produced: stream it as it comes.
    res.flushHeaders();
    if (req.method === 'HEAD') return res.end(); // the head is all a HEAD gets
    if (!res.write(first.value)) await res.drained();
    let next = reading;
    for (;;) {
      const { value, done } = await next;
      next = null;
      if (done) break;
      if (req.signal.aborted) break;
      if (!res.write(value)) await res.drained();
      next = reader.read();
    }
    res.end();
  } finally {
    if (req.signal.aborted) reader.cancel(req.signal.reason).catch(() => {});
    else if (req.method === 'HEAD') reader.cancel().catch(() => {});
  }
}

/** The route handler serving `handler(Request)`. */
function fetchRoute(handler) {
  return async (req, res) => {
    const response = await handler(toRequest(req));
    await answer(req, res, response);
  };
}

module.exports = { fetchRoute, upgradeWebSocket };
