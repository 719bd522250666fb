'use strict';
// The worker API against the real gateway over loopback.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { startGateway, request, until, within, startWorker, splitAddr, REPO } = require('./helpers');
const { VyxWorker, defaults } = require('..');

let gw;
let worker;
let done;
const seen = { sawFull: false, fulls: 0, drains: 0, aborted: null };
const logged = [];
const logger = { error: (...args) => logged.push(args.map(String).join(' ')) };

test.before(async () => {
  gw = await startGateway();
  ({ worker, done } = await startWorker(
    gw,
    (w) => {
      w.get('/greet/{name}', async (req) => ({ hello: req.params.name }));
      w.get('/files/{*rest}', (req, res) => res.json({ rest: req.params.rest, path: req.path, route: req.route }));
      w.any('/any/{x}', (req) => ({ method: req.method, x: req.params.x }));
      w.all('/all', (req) => req.method);
      w.head('/status', (req, res) => res.status(203).header('x-head', 'own').end());
      w.get('/returns/text', () => 'plain');
      w.get('/client-ip', (req) => ({ ip: req.clientIp }));
      w.get('/returns/bytes', () => Buffer.from([0, 1]));
      w.put('/returns/nothing', () => {});
      w.put('/put', () => ({ verb: 'put' }));
      w.patch('/patch', () => ({ verb: 'patch' }));
      w.delete('/delete', () => ({ verb: 'delete' }));
      w.get('/query', (req) => ({ raw: req.rawQuery, pairs: [...req.query] }));
      w.get('/headers', (req) => ({ headers: req.headers, raw: req.rawHeaders, one: req.header('X-Multi') }));
      w.get('/status', (req, res) => res.status(201).header('x-a', '1').header('set-cookie', ['a=1', 'b=2']).send('made'));
      w.get('/nothing', (req, res) => {
        res.status(204);
      });
      w.post('/orders', () => 'ordered').idempotent();
      w.post('/echo', async (req, res) => {
        res.header('content-type', req.header('content-type') || 'application/octet-stream');
        for await (const chunk of req) if (!res.write(chunk)) await res.drained();
        res.end();
      });
      w.post('/hash', async (req) => {
        const h = crypto.createHash('sha256');
        let n = 0;
        for await (const c of req) {
          h.update(c);
          n += c.length;
        }
        return { length: n, sha256: h.digest('hex') };
      });
      w.post('/json', async (req) => ({ got: await req.json() }));
      w.post('/text', async (req, res) => res.send((await req.text()).toUpperCase()));
      w.post('/bytes', async (req, res) => res.send(Buffer.from(await req.arrayBuffer()).reverse()));
      w.get('/big/{mib}', async (req, res) => {
        const total = Number(req.params.mib) * 1024 * 1024;
        const chunk = Buffer.alloc(64 * 1024);
        res.on('drain', () => seen.drains++);
        for (let sent = 0; sent < total; sent += chunk.length) {
          chunk.fill(sent / chunk.length);
          if (!res.write(chunk)) {
            seen.sawFull = true;
            seen.fulls++;
            await res.drained();
          }
        }
        res.end();
      });
      w.get('/throw', () => {
        throw new Error('thrown on purpose');
      });
      w.get('/reject', async () => {
        throw new Error('rejected on purpose');
      });
      w.get('/bad-head', (req, res) => res.header('bad name', 'x').send('never'));
      w.get('/long', async (req, res) => {
        seen.aborted = new Promise((resolve) => req.signal.addEventListener('abort', () => resolve(req.signal.reason)));
        res.header('content-type', 'application/octet-stream');
        res.write(Buffer.alloc(1024, 1));
        await new Promise((resolve) => req.signal.addEventListener('abort', resolve));
      });
    },
    { logger, maxConcurrency: 77, instance: 'test-instance', labels: { zone: 'local' } },
  ));
});

test.after(async () => {
  if (worker) await worker.stop(1000);
  if (done) await done;
  if (gw) await gw.stop();
});

test('HELLO carries the options: sdk, instance, max_concurrency, the routes', async () => {
  const workers = JSON.parse((await request(gw.addr, 'GET', '/_vyx/workers')).body);
  // One process: a connection per gateway shard, each with the same HELLO.
  assert.ok(workers.length >= 1);
  for (const w of workers) {
    assert.equal(w.id, 'node:test');
    assert.equal(w.sdk, 'vyx-node/0.1.0');
    assert.equal(w.instance, 'test-instance');
    assert.equal(w.max_concurrency, 77);
    assert.ok(w.routes.includes('GET /greet/{name}'), w.routes.join(', '));
    assert.ok(w.routes.includes('* /any/{x}'), w.routes.join(', '));
    assert.deepEqual(w.idempotent_routes, ['POST /orders'], 'idempotent() marks the route before it');
  }
  assert.equal(worker.id, 'node:test');
});

test('routes by method and pattern, with decoded params and the raw path', async () => {
  let r = await request(gw.addr, 'GET', '/greet/caf%C3%A9');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(r.body), { hello: 'café' });
  r = await request(gw.addr, 'GET', '/files/a/b%2Fc/d.txt');
  assert.deepEqual(JSON.parse(r.body), { rest: 'a/b/c/d.txt', path: '/files/a/b%2Fc/d.txt', route: '/files/{*rest}' });
  for (const m of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
    r = await request(gw.addr, m, '/any/1');
    assert.deepEqual(JSON.parse(r.body), { method: m, x: '1' }, m);
  }
  // `all` is `any` under Express's name; a returned string is text, as in the other SDKs.
  r = await request(gw.addr, 'PROPFIND', '/all');
  assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(r.body.toString(), 'PROPFIND');
  for (const v of ['put', 'patch', 'delete']) {
    r = await request(gw.addr, v.toUpperCase(), `/${v}`);
    assert.deepEqual(JSON.parse(r.body), { verb: v });
  }
  assert.equal((await request(gw.addr, 'GET', '/nope')).status, 404);
  // A path served for other methods only: the gateway's 405, naming them.
  const wrong = await request(gw.addr, 'POST', '/greet/x');
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.allow, 'GET, HEAD');
});

test('the query decodes as spec/vectors/query.json says', async () => {
  const vectors = JSON.parse(fs.readFileSync(path.join(REPO, 'spec/vectors/query.json'), 'utf8')).vectors;
  assert.ok(vectors.length > 20);
  for (const v of vectors) {
    const r = await request(gw.addr, 'GET', `/query?${v.query}`);
    assert.equal(r.status, 200, v.name);
    assert.deepEqual(JSON.parse(r.body), { raw: v.query, pairs: v.pairs }, v.name);
  }
  const r = await request(gw.addr, 'GET', '/query');
  assert.deepEqual(JSON.parse(r.body), { raw: null, pairs: [] });
});

test('headers arrive lower-case, repeats in order, as node:http joins them', async () => {
  const r = await request(gw.addr, 'GET', '/headers', { headers: { 'X-Multi': ['1', '2'], 'X-Utf8': 'é' } });
  const body = JSON.parse(r.body);
  assert.equal(body.headers['x-multi'], '1, 2');
  assert.equal(body.one, '1, 2');
  const raw = body.raw;
  const multi = raw.filter((_, i) => i % 2 === 1 && raw[i - 1] === 'x-multi');
  assert.deepEqual(multi, ['1', '2']);
  assert.ok(raw.includes('host'));
});

test('status, repeated response headers, and the status-only answer', async () => {
  let r = await request(gw.addr, 'GET', '/status');
  assert.equal(r.status, 201);
  assert.equal(r.headers['x-a'], '1');
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(r.body.toString(), 'made');
  // A HEAD route of its own takes HEAD from the GET route of the same path.
  r = await request(gw.addr, 'HEAD', '/status');
  assert.equal(r.status, 203);
  assert.equal(r.headers['x-head'], 'own');
  assert.equal(r.body.length, 0);
  r = await request(gw.addr, 'GET', '/nothing');
  assert.equal(r.status, 204);
  assert.equal(r.body.length, 0);
});

test('what a handler returns: text, bytes, and nothing (200, empty) as in every SDK', async () => {
  let r = await request(gw.addr, 'GET', '/returns/text');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(r.body.toString(), 'plain');
  r = await request(gw.addr, 'GET', '/returns/bytes');
  assert.equal(r.headers['content-type'], 'application/octet-stream');
  assert.deepEqual([...r.body], [0, 1]);
  r = await request(gw.addr, 'PUT', '/returns/nothing');
  assert.equal(r.status, 200);
  assert.equal(r.body.length, 0);
});

test("req.clientIp is the core's: the last x-forwarded-for element, the gateway's peer", async () => {
  const r = await request(gw.addr, 'GET', '/client-ip', { headers: { 'x-forwarded-for': '203.0.113.9' } });
  assert.deepEqual(JSON.parse(r.body), { ip: '127.0.0.1' });
});

test("the defaults are vyx-core's (spec/vectors/defaults.json)", () => {
  const spec = JSON.parse(fs.readFileSync(path.join(REPO, 'spec/vectors/defaults.json'), 'utf8'));
  assert.deepEqual(defaults(), {
    maxConcurrency: spec.max_concurrency,
    connectTimeoutMs: spec.connect_timeout_ms,
    drainTimeoutMs: spec.drain_timeout_ms,
  });
});

test('bodies both ways: JSON, text, bytes, streamed echo and hash of 8 MiB', async () => {
  let r = await request(gw.addr, 'POST', '/json', { body: '{"a":[1,2]}', headers: { 'content-type': 'application/json' } });
  assert.deepEqual(JSON.parse(r.body), { got: { a: [1, 2] } });
  r = await request(gw.addr, 'POST', '/text', { body: 'héllo' });
  assert.equal(r.body.toString(), 'HÉLLO');
  r = await request(gw.addr, 'POST', '/bytes', { body: Buffer.from([1, 2, 3]) });
  assert.deepEqual([...r.body], [3, 2, 1]);
  r = await request(gw.addr, 'POST', '/echo', { body: Buffer.alloc(0) });
  assert.equal(r.status, 200);
  assert.equal(r.body.length, 0);

  const big = crypto.randomBytes(8 * 1024 * 1024);
  const expected = crypto.createHash('sha256').update(big).digest('hex');
  async function* pieces() {
    for (let i = 0; i < big.length; i += 100_000) yield big.subarray(i, i + 100_000);
  }
  r = await request(gw.addr, 'POST', '/echo', { body: pieces(), headers: { 'content-type': 'x/y' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'x/y');
  assert.equal(crypto.createHash('sha256').update(r.body).digest('hex'), expected);
  r = await request(gw.addr, 'POST', '/hash', { body: pieces() });
  assert.deepEqual(JSON.parse(r.body), { length: big.length, sha256: expected });
});

test('a streamed response waits for the client: write() returns false until it reads', async () => {
  const [host, port] = splitAddr(gw.addr);
  seen.sawFull = false;
  seen.fulls = 0;
  seen.drains = 0;
  const res = await new Promise((resolve, reject) => {
    http.get({ host, port, path: '/big/32', agent: false }, resolve).on('error', reject);
  });
  res.pause();
  // The client reads nothing: the window and the socket buffers fill, then write() says so.
  await until(() => seen.sawFull, 20_000, 'write() returning false');
  const h = crypto.createHash('sha256');
  let n = 0;
  let ok = true;
  res.on('data', (c) => {
    for (let i = 0; i < c.length; i++) if (c[i] !== Math.floor((n + i) / 65536) % 256) ok = false;
    n += c.length;
    h.update(c);
  });
  res.resume();
  await within(new Promise((r) => res.on('end', r)), 30_000, 'the body');
  assert.equal(n, 32 * 1024 * 1024);
  assert.ok(ok, 'bytes in order');
  assert.ok(seen.fulls > 0);
  assert.equal(seen.drains, seen.fulls, "one 'drain' event per full window");
});

test('a handler that throws answers 500 and the worker goes on serving', async () => {
  let r = await request(gw.addr, 'GET', '/throw');
  assert.equal(r.status, 500);
  r = await request(gw.addr, 'GET', '/reject');
  assert.equal(r.status, 500);
  assert.ok(logged.some((l) => l.includes('thrown on purpose')));
  assert.ok(logged.some((l) => l.includes('rejected on purpose')));
  r = await request(gw.addr, 'GET', '/greet/again');
  assert.equal(r.status, 200);
});

test('a head the core cannot carry is answered 500', async () => {
  const r = await request(gw.addr, 'GET', '/bad-head');
  assert.equal(r.status, 500);
  assert.ok(logged.some((l) => l.includes('ERR_VYX_INVALID_HEAD') || l.includes('invalid response head')));
});

test('a client that goes away aborts req.signal', async () => {
  const [host, port] = splitAddr(gw.addr);
  seen.aborted = null;
  await new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: '/long', agent: false }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', () => {});
    setTimeout(() => reject(new Error('no first chunk within 10 s')), 10_000).unref();
  });
  await until(() => seen.aborted !== null, 5000, 'handler started');
  const reason = await within(seen.aborted, 10_000, 'req.signal aborted');
  assert.equal(reason.code, 'ERR_VYX_RESET');
  const r = await request(gw.addr, 'GET', '/greet/after');
  assert.equal(r.status, 200);
});

test('bad options throw an Error with a code', () => {
  assert.throws(() => new VyxWorker({ connect: 'http://127.0.0.1:1', id: 'x:y' }), (e) => e.code === 'ERR_VYX_CONFIG');
  const w = new VyxWorker({ connect: 'ws://127.0.0.1:1', id: 'x:y', handleSignals: false });
  assert.throws(() => w.get('/a/{', () => {}), (e) => e.code === 'ERR_VYX_CONFIG');
});

test('stop() before start(): start() resolves at once with only the stopped state', async () => {
  const w = new VyxWorker({ connect: 'ws://127.0.0.1:1', id: 'x:y', handleSignals: false });
  const states = [];
  w.on('state', (s) => states.push(s.kind));
  await w.stop();
  await within(w.start(), 5000, 'start() after stop()');
  assert.deepEqual(states, ['stopped']);
  assert.equal(w.state.kind, 'stopped');
  await assert.rejects(w.start(), (e) => e.code === 'ERR_VYX_ALREADY_STARTED');
});
