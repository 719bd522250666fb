'use strict';
// The client's address, scheme and HTTP version in `http` and `fetch` routes come from the
// core's rule (spec/HOSTS.md §5): the last x-forwarded-for, x-forwarded-proto and via
// elements, as in every SDK, here behind a gateway that trusts the loopback client as a proxy.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http2 = require('node:http2');
const os = require('node:os');
const path = require('node:path');
const { startGateway, request, startWorker } = require('./helpers');

let gw;
let worker;
let done;
let dir;

test.before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vyx-node-forwarded-'));
  const config = path.join(dir, 'vyx.yaml');
  fs.writeFileSync(config, 'accept_unknown_workers: true\ntrusted_proxies: [127.0.0.1]\n');
  gw = await startGateway(['--config', config]);
  ({ worker, done } = await startWorker(gw, (w) => {
    w.http('/who', (req, res) => res.end(String(req.socket.remoteAddress)));
    w.fetch('/scheme', (req) => new Response(new URL(req.url).protocol));
    w.http('/version', (req, res) => res.end(`${req.httpVersion} ${req.httpVersionMajor} ${req.httpVersionMinor}`));
  }));
});

test.after(async () => {
  if (worker) await worker.stop(1000);
  if (done) await done;
  if (gw) await gw.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('the client address is the last x-forwarded-for element: the peer the gateway accepted', async () => {
  // The trusted peer's list is kept and extended: "198.51.100.7, 127.0.0.1".
  const r = await request(gw.addr, 'GET', '/who', { headers: { 'x-forwarded-for': '198.51.100.7' } });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), '127.0.0.1');
});

test('the scheme is the last x-forwarded-proto element', async () => {
  const r = await request(gw.addr, 'GET', '/scheme', { headers: { 'x-forwarded-proto': 'http, HTTPS' } });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'https:');
});

test("req.httpVersion is the client's, from the gateway's via element", async () => {
  const r = await request(gw.addr, 'GET', '/version', { headers: { via: '2 client-proxy' } });
  assert.equal(r.body.toString(), '1.1 1 1');
  const session = http2.connect(`http://${gw.addr}`);
  try {
    const body = await new Promise((resolve, reject) => {
      const req = session.request({ ':path': '/version' });
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks).toString()));
      req.on('error', reject);
      req.end();
    });
    assert.equal(body, '2.0 2 0');
  } finally {
    session.close();
  }
});
