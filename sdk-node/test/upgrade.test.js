'use strict';
// Upgrades (PROTOCOL.md §4.5, HOSTS.md §7a) through a real gateway: `ws`'s own server and
// client, unchanged, on the `'upgrade'` socket of `worker.http` and on `worker.ws`; and the
// socket's limits: a message past the stream's window, a client that vanishes, the app
// destroying its socket, the gateway resetting the stream, `stop()` with a connection open.
const test = require('node:test');
const assert = require('node:assert/strict');
const { once } = require('node:events');
const fs = require('node:fs');
const http = require('node:http');
const http2 = require('node:http2');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { WebSocket, WebSocketServer } = require('ws');
const express = require('express');
const { Hono } = require('hono');
const { defineWebSocketHelper, WSContext } = require('hono/ws');
const { upgradeWebSocket } = require('..');
const { startGateway, request, startWorker, until, within, splitAddr } = require('./helpers');

let gw;
let worker;
let done;
/** Server-side WebSockets of `/echo`, in the order they were accepted. */
const accepted = [];

test.before(async () => {
  gw = await startGateway();
  const wss = new WebSocketServer({ noServer: true });
  const server = http.createServer((req, res) => res.end(`plain ${req.url}`));
  server.on('upgrade', (req, socket, head) => {
    if (req.url === '/node/destroy') {
      socket.destroy(); // the app refuses by dropping the connection
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      accepted.push(ws);
      ws.on('message', (data, isBinary) => {
        if (!isBinary && String(data) === 'close please') ws.close(4001, 'as asked');
        else if (!isBinary && String(data) === 'destroy please') ws._socket.destroy();
        else ws.send(data, { binary: isBinary });
      });
    });
  });
  // An Express app is an EventEmitter: its own 'upgrade' listeners take the upgrades.
  const app = express();
  app.get('/express/page', (req, res) => res.send('express page'));
  const appWss = new WebSocketServer({ noServer: true });
  app.on('upgrade', (req, socket, head) => appWss.handleUpgrade(req, socket, head, (ws) => ws.send(`express ${req.url}`)));
  // ws's own { server } option: it listens for the server's 'upgrade'.
  const attached = http.createServer();
  new WebSocketServer({ server: attached }).on('connection', (ws, req) => ws.send(`attached ${req.url}`));
  ({ worker, done } = await startWorker(gw, (w) => {
    w.http('/node/{*rest}', server);
    w.http('/express/{*rest}', app);
    w.http('/attached/{*rest}', attached);
    w.http('/plain/{*rest}', (req, res) => res.end(`plain upgrade=${req.upgrade} ${req.headers.upgrade}`));
    w.get('/route', (req) => ({ upgrade: req.upgrade }));
    w.fetch('/fetch/echo', (request) => {
      const { socket, response } = upgradeWebSocket(request);
      socket.onmessage = (e) => socket.send(e.data);
      return response;
    });
    w.fetch('/hono/{*rest}', honoApp().fetch);
    w.ws('/ws/{room}', (ws, req) => {
      ws.send(`room ${req.params.room}`);
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
  }));
});

test.after(async () => {
  if (worker) await worker.stop(1000);
  if (done) await done;
  if (gw) await gw.stop();
});

/** Hono's `upgradeWebSocket` for vyx: hono/deno's adapter over vyx's `upgradeWebSocket` (README). */
const honoUpgradeWebSocket = defineWebSocketHelper((c, events, options) => {
  if (c.req.header('upgrade') !== 'websocket') return undefined;
  const { socket, response } = upgradeWebSocket(c.req.raw, options);
  const ctx = new WSContext({
    send: (source) => socket.send(source),
    close: (code, reason) => socket.close(code, reason),
    raw: socket,
    get readyState() {
      return socket.readyState;
    },
    get protocol() {
      return socket.protocol;
    },
  });
  socket.onopen = (evt) => events.onOpen?.(evt, ctx);
  socket.onmessage = (evt) => events.onMessage?.(evt, ctx);
  socket.onclose = (evt) => events.onClose?.(evt, ctx);
  socket.onerror = (evt) => events.onError?.(evt, ctx);
  return response;
});

function honoApp() {
  const app = new Hono();
  app.get('/hono/page', (c) => c.text('page'));
  app.get(
    '/hono/ws',
    honoUpgradeWebSocket(() => ({
      onOpen: (evt, ws) => ws.send('hello from hono'),
      onMessage: (evt, ws) => ws.send(`echo ${evt.data}`),
    })),
  );
  return app;
}

/** A `ws` client through the gateway, opened. */
async function connect(target, options) {
  const ws = new WebSocket(`ws://${gw.addr}${target}`, options);
  await within(once(ws, 'open'), 10_000, `${target} open`);
  return ws;
}

/** The next message of `ws` as `[data, isBinary]`. */
function message(ws) {
  return within(once(ws, 'message'), 10_000, 'a message');
}

test('ws handleUpgrade on the http.Server given to worker.http: text, binary past the window, close both ways', async () => {
  const ws = await connect('/node/echo');
  ws.send('hello');
  const [text, textBinary] = await message(ws);
  assert.equal(String(text), 'hello');
  assert.equal(textBinary, false);

  // 1 MiB: four times the stream's initial window (256 KiB), each way.
  const big = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  ws.send(big);
  const [back, isBinary] = await message(ws);
  assert.equal(isBinary, true);
  assert.ok(Buffer.compare(back, big) === 0, 'the binary message came back intact');

  // The client closes: the server's WebSocket sees its code, the close handshake completes.
  const server = accepted.at(-1);
  const serverClosed = once(server, 'close');
  const clientClosed = once(ws, 'close');
  ws.close(4000, 'client done');
  const [code, reason] = await within(serverClosed, 10_000, 'the server side closed');
  assert.equal(code, 4000);
  assert.equal(String(reason), 'client done');
  const [clientCode] = await within(clientClosed, 10_000, 'the client side closed');
  assert.equal(clientCode, 4000);

  // The server closes.
  const ws2 = await connect('/node/echo');
  const closed2 = once(ws2, 'close');
  ws2.send('close please');
  const [code2, reason2] = await within(closed2, 10_000, 'the server closed');
  assert.equal(code2, 4001);
  assert.equal(String(reason2), 'as asked');
});

test("an Express app's 'upgrade' listeners, and ws's { server } option, take upgrades", async () => {
  for (const [target, expected] of [
    ['/express/chat', 'express /express/chat'],
    ['/attached/x', 'attached /attached/x'],
  ]) {
    const ws = new WebSocket(`ws://${gw.addr}${target}`);
    const first = message(ws);
    await within(once(ws, 'open'), 10_000, `${target} open`);
    assert.equal(String((await first)[0]), expected);
    ws.close();
    await within(once(ws, 'close'), 10_000, `${target} closed`);
  }
  assert.equal((await request(gw.addr, 'GET', '/express/page')).body.toString(), 'express page');
});

test('a client that vanishes closes the server side', async () => {
  const ws = await connect('/node/vanish');
  ws.send('hi');
  await message(ws);
  const server = accepted.at(-1);
  const closed = once(server, 'close');
  ws._socket.destroy(); // no close frame: the TCP connection just goes
  const [code] = await within(closed, 10_000, 'the server side closed');
  assert.equal(code, 1006, 'abnormal closure');
});

test('the app destroying its socket: before the switch 500, after it the client is cut', async () => {
  const r = await request(gw.addr, 'GET', '/node/destroy', {
    headers: { connection: 'upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' },
  });
  assert.equal(r.status, 500);

  const ws = await connect('/node/echo');
  const closed = once(ws, 'close');
  ws.send('destroy please');
  const [code] = await within(closed, 10_000, 'the client cut');
  assert.equal(code, 1006);
});

test('an upgrade request without an upgrade listener is an ordinary request, as node:http serves it', async () => {
  const headers = { connection: 'upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' };
  const plain = await request(gw.addr, 'GET', '/plain/x', { headers });
  assert.equal(plain.status, 200);
  assert.equal(plain.body.toString(), 'plain upgrade=false websocket');
  const route = await request(gw.addr, 'GET', '/route', { headers });
  assert.deepEqual(JSON.parse(route.body), { upgrade: true });
  // And the same routes without an upgrade.
  assert.equal((await request(gw.addr, 'GET', '/node/page')).body.toString(), 'plain /node/page');
});

test('a raw head that is not HTTP/1.1 is answered 500', async () => {
  const server = http.createServer();
  server.on('upgrade', (req, socket) => socket.write('nonsense\r\n\r\n'));
  const g = await startGateway();
  const { worker: w, done: d } = await startWorker(g, (x) => x.http('/bad', server), { logLevel: 'off' });
  try {
    const r = await request(g.addr, 'GET', '/bad', { headers: { connection: 'upgrade', upgrade: 'x' } });
    assert.equal(r.status, 500);
  } finally {
    await w.stop(1000);
    await d;
    await g.stop();
  }
});

test('worker.ws: a ws WebSocket per connection, the request beside it; 426 without an upgrade', async () => {
  const ws = new WebSocket(`ws://${gw.addr}/ws/lobby`);
  const first = message(ws); // the greeting may come with the 101
  await within(once(ws, 'open'), 10_000, 'open');
  const [greeting] = await first;
  assert.equal(String(greeting), 'room lobby');
  ws.send(Buffer.from([1, 2, 3]));
  const [echo, isBinary] = await message(ws);
  assert.deepEqual([...echo], [1, 2, 3]);
  assert.equal(isBinary, true);
  ws.close();
  await within(once(ws, 'close'), 10_000, 'closed');

  const r = await request(gw.addr, 'GET', '/ws/lobby');
  assert.equal(r.status, 426);
});

test('worker.fetch: upgradeWebSocket (Deno\'s convention) on a plain handler and under Hono', async () => {
  const ws = await connect('/fetch/echo');
  ws.send('plain fetch');
  const [data] = await message(ws);
  assert.equal(String(data), 'plain fetch');
  ws.close();

  const hono = new WebSocket(`ws://${gw.addr}/hono/ws`);
  const first = once(hono, 'message');
  await within(once(hono, 'open'), 10_000, 'hono open');
  assert.equal(String((await within(first, 10_000, 'greeting'))[0]), 'hello from hono');
  hono.send('hi');
  assert.equal(String((await message(hono))[0]), 'echo hi');
  hono.close();
  assert.equal((await request(gw.addr, 'GET', '/hono/page')).body.toString(), 'page');

  // Not a handshake: upgradeWebSocket throws, the handler failed.
  const r = await request(gw.addr, 'GET', '/fetch/echo');
  assert.equal(r.status, 500);
});

test("the app's end() is a half-close: the client's bytes still come, until its own end", async () => {
  const server = http.createServer();
  const got = [];
  let ended = null;
  const readEnd = new Promise((r) => (ended = r));
  server.on('upgrade', (req, socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: half\r\nconnection: upgrade\r\n\r\n');
    socket.end('bye');
    socket.on('data', (c) => got.push(c));
    socket.on('end', ended);
  });
  const g = await startGateway();
  const { worker: w, done: d } = await startWorker(g, (x) => x.http('/half', server));
  try {
    const [host, port] = splitAddr(g.addr);
    const client = net.connect({ port, host, allowHalfOpen: true });
    client.write(`GET /half HTTP/1.1\r\nhost: ${g.addr}\r\nconnection: upgrade\r\nupgrade: half\r\n\r\n`);
    const received = [];
    client.on('data', (c) => received.push(c));
    await within(once(client, 'end'), 10_000, "the app's half-close reaches the client");
    assert.match(String(Buffer.concat(received)), /^HTTP\/1.1 101[^]*\r\n\r\nbye$/);
    client.end('after'); // the client's last bytes, then its own half-close
    await within(readEnd, 10_000, 'the app read to the end');
    assert.equal(String(Buffer.concat(got)), 'after');
  } finally {
    await w.stop(1000);
    await d;
    await g.stop();
  }
});

test('an HTTP/2 client (extended CONNECT, RFC 8441) reaches worker.ws as a WebSocket', async () => {
  const session = http2.connect(`http://${gw.addr}`);
  session.on('error', () => {});
  try {
    const [settings] = await within(once(session, 'remoteSettings'), 10_000, 'the SETTINGS');
    assert.equal(settings.enableConnectProtocol, true);
    const stream = session.request(
      { ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/ws/h2', ':scheme': 'http', ':authority': gw.addr, 'sec-websocket-version': '13' },
      { endStream: false },
    );
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    const [headers] = await within(once(stream, 'response'), 10_000, 'the answer');
    assert.equal(headers[':status'], 200);
    // The greeting, a server's text frame: unmasked, FIN + text, its length, the bytes.
    const greeting = Buffer.concat([Buffer.from([0x81, 7]), Buffer.from('room h2')]);
    await until(() => Buffer.concat(chunks).length >= greeting.length, 10_000, 'the greeting');
    assert.deepEqual(Buffer.concat(chunks), greeting);
    // A client's text frame is masked; the echo comes back unmasked.
    const mask = Buffer.from([1, 2, 3, 4]);
    const payload = Buffer.from('over h2');
    const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
    chunks.length = 0;
    stream.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
    await until(() => Buffer.concat(chunks).length >= 2 + payload.length, 10_000, 'the echo');
    assert.deepEqual(Buffer.concat(chunks), Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
    stream.close();
  } finally {
    session.destroy();
  }
});

test('the gateway resetting the stream (upgrade_idle) closes the app side', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vyx-node-upgrade-'));
  const config = path.join(dir, 'vyx.yaml');
  fs.writeFileSync(config, 'accept_unknown_workers: true\ntimeouts: {upgrade_idle: 1s}\n');
  const g = await startGateway(['--config', config]);
  const sockets = [];
  const server = http.createServer();
  server.on('upgrade', (req, socket) => {
    sockets.push(socket);
    socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: idle\r\nconnection: upgrade\r\n\r\n');
  });
  const { worker: w, done: d } = await startWorker(g, (x) => x.http('/idle', server));
  try {
    const [host, port] = splitAddr(g.addr);
    const client = net.connect(port, host);
    client.write(`GET /idle HTTP/1.1\r\nhost: ${g.addr}\r\nconnection: upgrade\r\nupgrade: idle\r\n\r\n`);
    const [head] = await within(once(client, 'data'), 10_000, 'the 101');
    assert.match(String(head), /^HTTP\/1.1 101/);
    const socket = sockets[0];
    const errors = [];
    socket.on('error', (e) => errors.push(e));
    socket.resume();
    // Nothing moves either way: the gateway resets the stream and closes the client.
    await within(new Promise((r) => socket.once('close', r)), 15_000, "the app's socket closed by the reset");
    assert.equal(socket.destroyed, true);
    assert.deepEqual(errors.map((e) => e.code), ['ECONNRESET']);
    assert.match(errors[0].message, /timeout/);
    client.destroy();
  } finally {
    await w.stop(1000);
    await d;
    await g.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('stop() with an upgraded connection open ends it, and the worker stops', async () => {
  const g = await startGateway();
  let serverWs = null;
  const { worker: w, done: d } = await startWorker(g, (x) =>
    x.ws('/hold', (ws) => {
      serverWs = ws;
      ws.send('held');
    }),
  );
  const ws = new WebSocket(`ws://${g.addr}/hold`);
  ws.on('error', () => {});
  try {
    await within(once(ws, 'message'), 10_000, 'the greeting');
    const serverClosed = once(serverWs, 'close');
    const clientClosed = once(ws, 'close');
    await within(w.stop(200), 15_000, 'stop() resolved');
    await within(d, 15_000, 'start() resolved');
    await within(serverClosed, 10_000, 'the server side closed');
    await within(clientClosed, 10_000, 'the client side closed');
  } finally {
    ws.terminate();
    await g.stop();
  }
});
