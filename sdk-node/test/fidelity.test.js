'use strict';
// worker.http and worker.fetch behave as node:http does for the apps people mount: the same
// Express app (body parsers, multer, cookie-session, response-time, morgan) served directly
// by node:http and through vyx answers the same, and so does a Hono app's HEAD.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const express = require('express');
const multer = require('multer');
const cookieSession = require('cookie-session');
const responseTime = require('response-time');
const morgan = require('morgan');
const { Hono } = require('hono');
const { VyxWorker } = require('..');
const { startGateway, request, startWorker, until } = require('./helpers');

/** The Express app under test; `logs` gets morgan's lines. */
function expressApp(logs) {
  const app = express();
  app.use(responseTime());
  app.use(morgan(':method :url :status :response-time', { stream: { write: (l) => logs.push(l.trim()) } }));
  app.use(cookieSession({ name: 'sess', keys: ['k1'] }));
  app.post('/app/json', express.json(), (req, res) => res.json({ body: req.body ?? null }));
  app.post('/app/form', express.urlencoded(), (req, res) => res.json({ body: req.body ?? null }));
  app.post('/app/text', express.text(), (req, res) => res.json({ body: req.body ?? null }));
  app.post('/app/raw', express.raw(), (req, res) => res.json({ body: Buffer.isBuffer(req.body) ? req.body.toString() : null }));
  app.post('/app/upload', multer().single('file'), (req, res) =>
    res.json({ file: req.file ? req.file.buffer.toString() : null, fields: { ...req.body } }),
  );
  app.get('/app/session', (req, res) => {
    req.session.visits = (req.session.visits || 0) + 1;
    res.end(String(req.session.visits));
  });
  app.get('/app/write-head', (req, res) => {
    res.writeHead(201, { 'x-from': 'writeHead' });
    let thrown = null;
    try {
      res.setHeader('x-late', '1');
    } catch (e) {
      thrown = e.code;
    }
    res.end(JSON.stringify({ headersSent: res.headersSent, thrown }));
  });
  app.get('/app/streamed', (req, res) => {
    res.write('a');
    res.end('b');
  });
  app.get('/app/flushed', (req, res) => {
    res.flushHeaders();
    res.end('c');
  });
  app.get('/app/untyped', (req, res) => res.end('no type'));
  app.get('/app/chunked', (req, res) => res.set('transfer-encoding', 'chunked').send('framed by the app'));
  app.get('/app/send-after-abort', (req, res) => {
    aborted.push(req);
    req.once('close', () => res.sendFile(__filename, (err) => (sendFileError = err ? err.code : 'none')));
  });
  app.get('/app/where', (req, res) => res.json({ url: req.url, baseUrl: req.baseUrl, originalUrl: req.originalUrl }));
  return app;
}

const BOUNDARY = 'vyxboundary';
const MULTIPART =
  `--${BOUNDARY}\r\ncontent-disposition: form-data; name="file"; filename="a.txt"\r\ncontent-type: text/plain\r\n\r\nhello\r\n` +
  `--${BOUNDARY}\r\ncontent-disposition: form-data; name="kind"\r\n\r\ngreeting\r\n--${BOUNDARY}--\r\n`;

/** A request body sent chunked: no content-length, as a client streaming an upload sends it. */
async function* chunked(text) {
  yield Buffer.from(text);
}

/** Requests of /app/send-after-abort, and what its sendFile's callback got. */
const aborted = [];
let sendFileError = null;

const hono = new Hono();
hono.get('/h/nine', (c) => c.text('123456789'));

let gw;
let worker;
let done;
let direct;
const logs = { direct: [], vyx: [] };

test.before(async () => {
  direct = http.createServer(expressApp(logs.direct));
  await new Promise((r) => direct.listen(0, '127.0.0.1', r));
  gw = await startGateway();
  ({ worker, done } = await startWorker(gw, (w) => {
    w.http('/app/{*rest}', expressApp(logs.vyx));
    w.http('/mounted/{*rest}', expressApp([]), { mount: '/mounted' });
    w.fetch('/h/{*rest}', hono.fetch);
  }));
});

test.after(async () => {
  if (worker) await worker.stop(1000);
  if (done) await done;
  if (gw) await gw.stop();
  if (direct) direct.close();
});

/** The same request to node:http and through vyx: `[direct, vyx]`. */
async function both(method, target, opts = {}) {
  const send = (addr) => request(addr, method, target, { ...opts, body: opts.text === undefined ? undefined : chunked(opts.text) });
  return [await send(`127.0.0.1:${direct.address().port}`), await send(gw.addr)];
}

for (const [path, type, text, want] of [
  ['/app/json', 'application/json', '{"a":1}', { a: 1 }],
  ['/app/form', 'application/x-www-form-urlencoded', 'a=1&b=two', { a: '1', b: 'two' }],
  ['/app/text', 'text/plain', 'plain words', 'plain words'],
  ['/app/raw', 'application/octet-stream', 'raw bytes', 'raw bytes'],
]) {
  test(`express: a chunked ${type} body reaches ${path}'s parser`, async () => {
    for (const r of await both('POST', path, { headers: { 'content-type': type }, text })) {
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body), { body: want });
    }
  });
}

for (const [path, type, want] of [
  ['/app/json', 'application/json', {}],
  ['/app/text', 'text/plain', ''],
  ['/app/raw', 'application/octet-stream', ''],
]) {
  // The client's head and its last chunk leave in one write, so the body's end reaches the
  // worker in the same batch as the request: still a body, as node:http shows it.
  test(`express: an empty chunked ${type} body reaches ${path}'s parser as an empty body`, async () => {
    const headers = { 'content-type': type, 'transfer-encoding': 'chunked' };
    for (const r of await both('POST', path, { headers })) {
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body), { body: want });
    }
  });
}

test('multer: a chunked multipart upload is read', async () => {
  const headers = { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };
  for (const r of await both('POST', '/app/upload', { headers, text: MULTIPART })) {
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { file: 'hello', fields: { kind: 'greeting' } });
  }
});

test('on-headers hooks run whatever writes the head: cookie-session, response-time, morgan', async () => {
  for (const path of ['/app/session', '/app/streamed', '/app/flushed', '/app/write-head']) {
    const [d, v] = await both('GET', path);
    assert.equal(v.status, d.status, path);
    assert.equal(v.body.toString(), d.body.toString(), path);
    assert.match(v.headers['x-response-time'], /^\d+\.\d+ms$/, path);
  }
  const [d, v] = await both('GET', '/app/session');
  assert.match(d.headers['set-cookie'][0], /^sess=/);
  assert.match(v.headers['set-cookie'][0], /^sess=/);
  // morgan's response time comes from on-headers too ('-' without it).
  assert.ok(logs.vyx.length >= 5, logs.vyx.join('\n'));
  for (const line of logs.vyx) assert.match(line, /^(GET|POST) \/app\/\S+ \d{3} \d+\.\d+$/, line);
});

test('after writeHead: headersSent, setHeader throws ERR_HTTP_HEADERS_SENT, status and headers kept', async () => {
  for (const r of await both('GET', '/app/write-head')) {
    assert.equal(r.status, 201);
    assert.equal(r.headers['x-from'], 'writeHead');
    assert.equal(r.headers['x-late'], undefined);
    assert.deepEqual(JSON.parse(r.body), { headersSent: true, thrown: 'ERR_HTTP_HEADERS_SENT' });
  }
});

test('the head is what the app set: no content-type added, chunked framing when it asks for it', async () => {
  for (const r of await both('GET', '/app/untyped')) {
    assert.equal(r.headers['content-type'], undefined);
    assert.equal(r.body.toString(), 'no type');
  }
  for (const r of await both('GET', '/app/chunked')) {
    assert.equal(r.headers['content-length'], undefined);
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    assert.equal(r.body.toString(), 'framed by the app');
  }
});

test('sendFile after the client went away calls back ECONNABORTED (on-finished sees the socket)', async () => {
  const [host, port] = gw.addr.split(':');
  const req = http.get({ host, port, path: '/app/send-after-abort', agent: false });
  req.on('error', () => {});
  await until(() => aborted.length === 1, 10_000, 'the request at the app');
  req.destroy();
  await until(() => sendFileError !== null, 10_000, "sendFile's callback");
  assert.equal(sendFileError, 'ECONNABORTED');
});

test('mount: the listener sees the path after the prefix, as app.use(prefix, app) shows it', async () => {
  const r = await request(gw.addr, 'GET', '/mounted/app/where?x=1');
  assert.deepEqual(JSON.parse(r.body), { url: '/app/where?x=1', baseUrl: '/mounted', originalUrl: '/mounted/app/where?x=1' });
  const whole = await request(gw.addr, 'GET', '/app/where');
  assert.deepEqual(JSON.parse(whole.body), { url: '/app/where', baseUrl: '', originalUrl: '/app/where' });
  assert.throws(() => new VyxWorker({ connect: gw.url, id: 'node:m' }).http('/a/{*rest}', () => {}, { mount: '/b' }), {
    code: 'ERR_VYX_CONFIG',
  });
});

test("hono: HEAD answers the GET's content-length and no body", async () => {
  const get = await request(gw.addr, 'GET', '/h/nine');
  const head = await request(gw.addr, 'HEAD', '/h/nine');
  assert.equal(get.headers['content-length'], '9');
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '9');
  assert.equal(head.body.length, 0);
});

test('bad options are ERR_VYX_CONFIG naming the option, from the constructor', () => {
  for (const [options, name] of [
    [{ maxConcurrency: 'many' }, 'maxConcurrency'],
    [{ maxConcurrency: 0 }, 'maxConcurrency'],
    [{ connectTimeoutMs: -1 }, 'connectTimeoutMs'],
    [{ connectTimeoutMs: 1.5 }, 'connectTimeoutMs'],
    [{ drainTimeoutMs: '5s' }, 'drainTimeoutMs'],
    [{ handleSignals: 'yes' }, 'handleSignals'],
  ]) {
    assert.throws(
      () => new VyxWorker({ connect: 'ws://127.0.0.1:1', id: 'node:cfg', ...options }),
      (e) => e.code === 'ERR_VYX_CONFIG' && e.message.startsWith(`${name} `),
      JSON.stringify(options),
    );
  }
});
