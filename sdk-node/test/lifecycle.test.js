'use strict';
// A worker in a child process: it drains and exits by itself, survives stray rejections,
// and reports every state in order.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { createInterface } = require('node:readline');
const path = require('node:path');
const { startGateway, request, within } = require('./helpers');

const CHILD = path.join(__dirname, 'fixtures', 'child-worker.js');

function startChild(gw, extraEnv = {}) {
  const child = spawn(process.execPath, [CHILD], {
    env: { ...process.env, VYX_CONNECT: gw.url, VYX_WORKER_ID: 'node:child', VYX_LOG: 'warn', ...extraEnv },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const waitLine = (line, ms) =>
    within(
      (async () => {
        while (!lines.includes(line)) await new Promise((r) => waiters.push(r));
      })(),
      ms,
      `child printing '${line}'`,
    );
  return { child, lines, waitLine, exited, stderr: () => stderr };
}

/** Resolves once the gateway counts one request in flight (the worker has it). */
function slowInFlight(gw) {
  return within(
    (async () => {
      for (;;) {
        const w = JSON.parse((await request(gw.addr, 'GET', '/_vyx/workers')).body);
        if (JSON.stringify(w).includes('"in_flight":1')) return;
        await new Promise((r) => setTimeout(r, 10));
      }
    })(),
    10_000,
    'the slow request in flight',
  );
}

test('stop() drains and the process exits by itself; states come in order', async (t) => {
  const gw = await startGateway();
  t.after(() => gw.stop());
  const c = startChild(gw);
  t.after(() => c.child.kill('SIGKILL'));
  await c.waitLine('state connected', 15_000);
  assert.equal((await request(gw.addr, 'GET', '/ok')).status, 200);
  c.child.stdin.write('stop\n');
  const { code, signal } = await within(c.exited, 15_000, 'the child exiting by itself after stop()');
  assert.equal(signal, null);
  assert.equal(code, 0, c.stderr());
  assert.deepEqual(c.lines, ['state connecting', 'state connected', 'state draining', 'state stopped', 'start resolved']);
});

test('SIGTERM drains: the request in flight finishes, then the process exits 0', async (t) => {
  const gw = await startGateway();
  t.after(() => gw.stop());
  const c = startChild(gw);
  t.after(() => c.child.kill('SIGKILL'));
  await c.waitLine('state connected', 15_000);
  const slow = request(gw.addr, 'GET', '/slow/800');
  // The request is in flight once the worker has it; the gateway's count tells.
  await slowInFlight(gw);
  c.child.kill('SIGTERM');
  const r = await slow;
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { slept: 800 });
  const { code } = await within(c.exited, 15_000, 'the child exiting after SIGTERM');
  assert.equal(code, 0, c.stderr());
  assert.ok(c.lines.includes('state draining'));
});

test('a stray rejected promise in a handler does not kill the process', async (t) => {
  const gw = await startGateway();
  t.after(() => gw.stop());
  const c = startChild(gw);
  t.after(() => c.child.kill('SIGKILL'));
  await c.waitLine('state connected', 15_000);
  for (let i = 0; i < 3; i++) assert.equal((await request(gw.addr, 'GET', '/stray')).status, 200);
  assert.equal((await request(gw.addr, 'GET', '/ok')).status, 200);
  assert.equal(c.child.exitCode, null, 'still running');
  assert.match(c.stderr(), /stray rejection nobody handles/);
  c.child.stdin.write('stop\n');
  assert.equal((await within(c.exited, 15_000, 'exit')).code, 0);
});

test('a refused worker: start() rejects with a coded Error and the process exits non-zero', async (t) => {
  const gw = await startGateway();
  t.after(() => gw.stop());
  const first = startChild(gw);
  t.after(() => first.child.kill('SIGKILL'));
  await first.waitLine('state connected', 15_000);
  // Another worker id claiming the same routes is a conflict (close 4003): permanent.
  const c = startChild(gw, { VYX_WORKER_ID: 'node:other' });
  t.after(() => c.child.kill('SIGKILL'));
  const { code } = await within(c.exited, 15_000, 'the refused child exiting');
  assert.notEqual(code, 0);
  assert.match(c.stderr(), /error: ERR_VYX_\w+: .*4003/);
  assert.ok(c.lines.includes('state failed'), c.lines.join('|'));
  first.child.stdin.write('stop\n');
  assert.equal((await within(first.exited, 15_000, 'exit')).code, 0);
});

test('a second SIGINT ends the process at once, as it does a node server, while the drain waits', async (t) => {
  const gw = await startGateway();
  t.after(() => gw.stop());
  const c = startChild(gw);
  t.after(() => c.child.kill('SIGKILL'));
  await c.waitLine('state connected', 15_000);
  // A request the drain would wait for (drainTimeoutMs is 5000 in the child).
  const slow = request(gw.addr, 'GET', '/slow/60000').catch(() => null);
  await slowInFlight(gw);
  c.child.kill('SIGINT');
  await c.waitLine('state draining', 15_000);
  c.child.kill('SIGINT');
  const { code, signal } = await within(c.exited, 15_000, 'the child ending on the second SIGINT');
  assert.equal(signal, 'SIGINT', `exit code ${code}: ${c.stderr()}`);
  assert.ok(!c.lines.includes('start resolved'), 'it did not wait for the drain');
  await slow;
});

test('a state listener that throws rejects start(), and nothing then keeps the process alive', async (t) => {
  const gw = await startGateway();
  t.after(() => gw.stop());
  const script = `
    const { VyxWorker } = require(${JSON.stringify(path.join(__dirname, '..'))});
    const worker = new VyxWorker({ handleSignals: false });
    worker.get('/ok', () => ({ ok: true }));
    worker.on('connected', () => { throw new Error('listener failed'); });
    worker.start().catch((e) => console.log('rejected ' + e.message));`;
  const child = spawn(process.execPath, ['-e', script], {
    env: { ...process.env, VYX_CONNECT: gw.url, VYX_WORKER_ID: 'node:throws', VYX_LOG: 'off' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise((r) => child.once('exit', (code) => r(code)));
  assert.equal(await within(exited, 15_000, 'the child exiting by itself'), 0);
  assert.match(out, /rejected listener failed/);
});
