'use strict';
// `worker.ws(pattern, handler)`: WebSocket connections served by the `ws` package over the
// upgrade socket (lib/upgrade.js), the framing and its limits (maxPayload, pings, close
// handshake) all `ws`'s own.

const { upgradeRequest } = require('./http');
const { wsPackage } = require('./ws_package');

const EMPTY = Buffer.alloc(0);

/**
 * The route handler accepting WebSockets with a `ws` `WebSocketServer({ noServer: true,
 * ...options })` and calling `handler(ws, req)` for each; a request that is not a WebSocket
 * handshake is answered 426.
 */
function wsRoute(handler, options) {
  // Loaded on the first ws() only: workers without WebSockets never load it.
  const { WebSocketServer } = wsPackage('worker.ws');
  const wss = new WebSocketServer({ ...options, noServer: true });
  return (req, res) => {
    if (!req.upgrade) {
      res.status(426).send('this route takes WebSocket connections only\n');
      return undefined;
    }
    const { msg, socket } = upgradeRequest(req);
    // Settles when the handler has taken the connection (a rejection is the handler's
    // failure, which aborts it), or when `ws` refused the handshake and closed the socket.
    return new Promise((resolve) => {
      socket.once('close', resolve);
      wss.handleUpgrade(msg, socket, EMPTY, (ws) => resolve(handler(ws, req)));
    });
  };
}

module.exports = { wsRoute };
