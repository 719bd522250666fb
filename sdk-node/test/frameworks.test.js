'use strict';
// The apps people already have, unchanged: a Hono app through worker.fetch and an Express 5
// app through worker.http, both behind the real gateway.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Hono } = require('hono');
const { stream } = require('hono/streaming');
const express = require('express');
const { startGateway, request, within, startWorker, splitAddr } = require('./helpers');

/** A promise with its resolve, to hold a streamed body until the client has seen a chunk. */
function gate() {
  let open;
  const opened = new Promise((r) => (open = r));
  return { open, opened };
}
let honoGate = gate();
let expressGate = gate();

const hono = new Hono();
hono.get('/api/hello/:name', (c) => c.json({ hello: c.req.param('name'), q: c.req.query('q') ?? null }));
hono.post('/api/echo', async (c) => c.text((await c.req.text()).toUpperCase(), 201, { 'x-echo': 'yes' }));
hono.post('/api/json', async (c) => c.json({ got: await c.req.json() }));
hono.get('/api/cookies', (c) => {
  c.header('set-cookie', 'a=1', { append: true });
  c.header('set-cookie', 'b=2', { append: true });
  return c.body(null, 204);
});
hono.get('/api/stream', (c) =>
  stream(c, async (s) => {
    await s.write('first;');
    await honoGate.opened;
    await s.write('second;');
    await s.write('last');
  }),
);

const app = express();
app.set('env', 'test'); // finalhandler: no stack printed for the route that fails on purpose
app.use(express.json());
app.get('/app/users/:id', (req, res) => res.json({ id: req.params.id, q: req.query.q, ua: req.get('user-agent') }));
app.post('/app/users', (req, res) => res.status(201).json({ created: req.body }));
app.get('/app/stream', async (req, res) => {
  res.setHeader('content-type', 'text/plain');
  res.write('first;');
  await expressGate.opened;
  res.write('second;');
  res.end('last');
});
app.get('/app/boom', () => {
  throw new Error('express route fails on purpose');
});

let gw;
let worker;
let done;

test.before(async () => {
  gw = await startGateway();
  ({ worker, done } = await startWorker(gw, (w) => {
    w.fetch('/api/{*rest}', hono.fetch);
    w.http('/app/{*rest}', app);
  }, { logger: { error() {} } }));
});

test.after(async () => {
  if (worker) await worker.stop(1000);
  if (done) await done;
  if (gw) await gw.stop();
});

/** GETs `target`, returns the first chunk, opens `g`, and resolves the whole body. */
async function streamedThroughGate(target, g) {
  const [host, port] = splitAddr(gw.addr);
  const res = await new Promise((resolve, reject) => http.get({ host, port, path: target, agent: false }, resolve).on('error', reject));
  const chunks = [];
  const first = await within(new Promise((r) => res.once('data', (c) => (chunks.push(c), r(c.toString())))), 10_000, 'first chunk');
  g.open();
  res.on('data', (c) => chunks.push(c));
  await within(new Promise((r) => res.on('end', r)), 10_000, 'end of body');
  return { res, first, body: Buffer.concat(chunks).toString() };
}

test('hono: routing, params, query, JSON', async () => {
  const r = await request(gw.addr, 'GET', '/api/hello/w%C3%B6rld?q=1');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^application\/json/);
  assert.deepEqual(JSON.parse(r.body), { hello: 'wörld', q: '1' });
  const nf = await request(gw.addr, 'GET', '/api/nope');
  assert.equal(nf.status, 404);
  assert.equal(nf.body.toString(), '404 Not Found');
});

test('hono: request bodies, status and headers', async () => {
  let r = await request(gw.addr, 'POST', '/api/echo', { body: 'shout' });
  assert.equal(r.status, 201);
  assert.equal(r.headers['x-echo'], 'yes');
  assert.equal(r.body.toString(), 'SHOUT');
  r = await request(gw.addr, 'POST', '/api/json', { body: '{"n":[1,2,3]}', headers: { 'content-type': 'application/json' } });
  assert.deepEqual(JSON.parse(r.body), { got: { n: [1, 2, 3] } });
  r = await request(gw.addr, 'GET', '/api/cookies');
  assert.equal(r.status, 204);
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
});

test('hono: a streamed body reaches the client while it is being produced', async () => {
  honoGate = gate();
  const { first, body } = await streamedThroughGate('/api/stream', honoGate);
  assert.equal(first, 'first;');
  assert.equal(body, 'first;second;last');
});

test('express: routing, res.json, req.query, express.json() bodies, res.status', async () => {
  let r = await request(gw.addr, 'GET', '/app/users/42?q=x', { headers: { 'user-agent': 'ua/1' } });
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^application\/json/);
  assert.deepEqual(JSON.parse(r.body), { id: '42', q: 'x', ua: 'ua/1' });
  r = await request(gw.addr, 'POST', '/app/users', { body: '{"name":"ada"}', headers: { 'content-type': 'application/json' } });
  assert.equal(r.status, 201);
  assert.deepEqual(JSON.parse(r.body), { created: { name: 'ada' } });
  r = await request(gw.addr, 'HEAD', '/app/users/7');
  assert.equal(r.status, 200);
  assert.equal(r.body.length, 0);
  r = await request(gw.addr, 'GET', '/app/nope');
  assert.equal(r.status, 404);
  assert.match(r.body.toString(), /Cannot GET \/app\/nope/);
  r = await request(gw.addr, 'GET', '/app/boom');
  assert.equal(r.status, 500);
  r = await request(gw.addr, 'GET', '/app/users/1');
  assert.equal(r.status, 200);
});

test('express: a streamed res.write reaches the client before res.end', async () => {
  expressGate = gate();
  const { res, first, body } = await streamedThroughGate('/app/stream', expressGate);
  assert.equal(res.headers['content-type'], 'text/plain');
  assert.equal(first, 'first;');
  assert.equal(body, 'first;second;last');
});
