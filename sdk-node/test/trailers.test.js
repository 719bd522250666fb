'use strict';
// Trailers both ways (PROTOCOL.md §3.10) through the real gateway: an HTTP/2 client's reach
// `req.trailers`, `res.addTrailers` reaches HTTP/2 clients and HTTP/1.1 ones that sent
// `TE: trailers`, on vyx-native routes and `node:http` listeners.
const test = require('node:test');
const assert = require('node:assert/strict');
const http2 = require('node:http2');
const net = require('node:net');
const { startGateway, startWorker, splitAddr, within } = require('./helpers');

let gw;
let worker;
let done;

test.before(async () => {
  gw = await startGateway();
  ({ worker, done } = await startWorker(gw, (w) => {
    // A whole body: the trailers make it a streamed one.
    w.post('/native', async (req, res) => {
      const body = await req.buffer();
      res.header('trailer', 'x-echo, x-length');
      res.addTrailers({ 'x-echo': req.trailers['x-echo'] ?? 'none', 'x-length': body.length });
      res.send(body);
    });
    // A streamed body, the trailers added after the last write.
    w.post('/streamed', async (req, res) => {
      res.header('trailer', 'x-echo');
      for await (const chunk of req) res.write(chunk);
      res.addTrailers([['x-echo', `${req.rawTrailers.join('=')}`]]);
      res.end();
    });
    w.http('/app/{*rest}', (req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        res.setHeader('Trailer', 'X-Echo');
        res.write(Buffer.concat(chunks));
        res.addTrailers({ 'X-Echo': req.trailers['x-echo'] ?? 'none' });
        res.end();
      });
    });
  }));
});

test.after(async () => {
  await worker.stop(1000);
  await done;
  await gw.stop();
});

/** POSTs `body` then `trailers` over HTTP/2; resolves `{ status, body, trailers }`. */
function h2post(path, body, trailers) {
  return new Promise((resolve, reject) => {
    const session = http2.connect(gw.http);
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': path }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers(trailers));
    let status = 0;
    let got = {};
    const chunks = [];
    stream.on('response', (h) => (status = h[':status']));
    stream.on('trailers', (t) => (got = t));
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      session.close();
      resolve({ status, body: Buffer.concat(chunks).toString(), trailers: got });
    });
    stream.on('error', reject);
    stream.end(body);
  });
}

/** One raw HTTP/1.1 exchange (the client closes after it); resolves the answer's text. */
function raw1(text) {
  const [host, port] = splitAddr(gw.addr);
  return new Promise((resolve, reject) => {
    // Not end(): the gateway takes a half-closed connection for a client gone.
    const s = net.connect({ host, port }, () => s.write(text));
    const chunks = [];
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks).toString()));
    s.on('error', reject);
  });
}

const chunkedWithTrailer = (path) =>
  `POST ${path} HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nConnection: close\r\n` +
  'Transfer-Encoding: chunked\r\nTrailer: x-echo\r\n\r\n2\r\nhi\r\n0\r\nx-echo: 7\r\n\r\n';

const bodyOf = (answer) => answer.slice(answer.indexOf('\r\n\r\n') + 4);

test('an HTTP/2 client trailer reaches req.trailers and res.addTrailers answers it', async () => {
  const r = await within(h2post('/native', 'abc', { 'x-echo': '42' }), 10_000, 'HTTP/2 answer');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'abc');
  assert.equal(r.trailers['x-echo'], '42');
  assert.equal(r.trailers['x-length'], '3');

  const s = await within(h2post('/streamed', 'xyz', { 'x-echo': 'a' }), 10_000, 'HTTP/2 answer');
  assert.equal(s.body, 'xyz');
  assert.equal(s.trailers['x-echo'], 'x-echo=a', 'rawTrailers, flat and lower-case');
});

test('an HTTP/1.1 client with TE: trailers gets them in the chunked trailer section', async () => {
  const native = await within(raw1(chunkedWithTrailer('/native')), 10_000, 'HTTP/1.1 answer');
  assert.match(native, /^HTTP\/1\.1 200/);
  assert.equal(bodyOf(native), '2\r\nhi\r\n0\r\nx-echo: 7\r\nx-length: 2\r\n\r\n');
});

test('a node:http listener reads req.trailers at the end and sends res.addTrailers', async () => {
  const r = await within(h2post('/app/x', 'abc', { 'x-echo': '9' }), 10_000, 'HTTP/2 answer');
  assert.equal(r.body, 'abc');
  assert.equal(r.trailers['x-echo'], '9');
  const one = await within(raw1(chunkedWithTrailer('/app/x')), 10_000, 'HTTP/1.1 answer');
  assert.equal(bodyOf(one), '2\r\nhi\r\n0\r\nx-echo: 7\r\n\r\n');
});
