'use strict';
// Socket.IO through vyx, unchanged: its server attached to an http.Server given to
// worker.http (engine.io's 'request' and 'upgrade' listeners), its client pointed at the
// gateway: long-polling first, then the upgrade to engine.io's websocket transport.
const test = require('node:test');
const assert = require('node:assert/strict');
const { once } = require('node:events');
const http = require('node:http');
const { Server } = require('socket.io');
const { io } = require('socket.io-client');
const { startGateway, startWorker, until, within } = require('./helpers');

test('a Socket.IO server behind worker.http: events both ways, the websocket upgrade, disconnects', async () => {
  const gw = await startGateway();
  const server = http.createServer((req, res) => res.end('not socket.io'));
  const ioServer = new Server(server);
  const seen = [];
  ioServer.on('connection', (socket) => {
    socket.on('echo', (payload, ack) => ack({ back: payload, transport: socket.conn.transport.name }));
    socket.on('disconnect', (reason) => seen.push(reason));
  });
  const { worker, done } = await startWorker(gw, (w) => w.http('/socket.io/{*rest}', server));
  const client = io(`http://${gw.addr}`, { reconnection: false, forceNew: true });
  // engine.io upgrades the polling connection to a WebSocket by itself, and may do so before
  // 'connect': when the probe's pong comes before the poll that carries the namespace's
  // CONNECT, that poll's end emits 'upgrade' at once and 'connect' on the next tick. So the
  // upgrade is listened for from the start.
  const upgraded = once(client.io.engine, 'upgrade');
  try {
    await within(once(client, 'connect'), 10_000, 'connected');
    await within(upgraded, 10_000, 'upgraded to websocket');
    assert.equal(client.io.engine.transport.name, 'websocket');
    const big = 'x'.repeat(512 * 1024); // past the stream's window
    const reply = await within(client.timeout(10_000).emitWithAck('echo', big), 15_000, 'ack');
    assert.equal(reply.back.length, big.length);
    assert.equal(reply.transport, 'websocket');
    client.disconnect();
    await until(() => seen.length > 0, 10_000, 'the server saw the disconnect');
    assert.equal(seen[0], 'client namespace disconnect');
  } finally {
    client.close();
    ioServer.close();
    await worker.stop(1000);
    await done;
    await gw.stop();
  }
});
