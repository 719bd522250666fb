'use strict';
// Logs never stop a worker (a closed or full stderr, a logger that throws), and the core's
// reach the app's logger with their fields, at a level set in code.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { createInterface } = require('node:readline');
const { Writable } = require('node:stream');
const pino = require('pino');
const { startGateway, request, within, until, startWorker, splitAddr } = require('./helpers');
const { VyxWorker } = require('..');

const CHILD = path.join(__dirname, 'fixtures', 'child-worker.js');
const WAIT = 15_000;

/** A loopback port nothing listens on (bound, then closed). */
async function deadPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** fixtures/child-worker.js (no logger: the core's lines go to stderr), its stdout lines kept. */
function child(env) {
  const c = spawn(process.execPath, [CHILD], {
    env: { ...process.env, VYX_WORKER_ID: 'node:logs', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines = [];
  createInterface({ input: c.stdout }).on('line', (l) => lines.push(l));
  const exited = new Promise((r) => c.once('exit', (code, signal) => r({ code, signal })));
  return { c, lines, exited, count: (line) => lines.filter((l) => l === line).length };
}

test('a closed stderr stops nothing: states go on and SIGTERM drains', async (t) => {
  const w = child({ VYX_CONNECT: `ws://127.0.0.1:${await deadPort()}`, VYX_LOG: 'info' });
  t.after(() => w.c.kill('SIGKILL'));
  // As `node worker.js 2>&1 | head -2`: two lines read, then nobody reads the pipe again.
  await within(
    new Promise((resolve) => {
      let n = 0;
      createInterface({ input: w.c.stderr }).on('line', () => ++n === 2 && resolve());
    }),
    WAIT,
    'two reconnect lines on stderr',
  );
  w.c.stderr.destroy();
  const before = w.count('state reconnecting');
  await until(() => w.count('state reconnecting') >= before + 2, WAIT, 'reconnects after stderr closed');
  w.c.kill('SIGTERM');
  assert.deepEqual(await within(w.exited, WAIT, 'exit after SIGTERM'), { code: 0, signal: null });
  assert.equal(w.lines.at(-1), 'start resolved');
});

test('a full stderr stops nothing: requests are served, lines are dropped and counted', async (t) => {
  const gw = await startGateway();
  t.after(() => gw.stop());
  const w = child({ VYX_CONNECT: gw.url, VYX_LOG: 'debug' });
  t.after(() => w.c.kill('SIGKILL'));
  w.c.stderr.pause(); // nobody reads stderr until the end: the pipe fills up
  await until(() => w.lines.includes('state connected'), WAIT, 'connected');
  // Each client that leaves a /hang request makes the core log a debug line (the gateway's
  // RESET): 2000 of them are far more than the pipe and the core's queue hold together.
  const [host, port] = splitAddr(gw.addr);
  for (let round = 0; round < 20; round++) {
    const target = w.count('hang') + 100;
    const left = [];
    for (let i = 0; i < 100; i++) {
      const ac = new AbortController();
      http.get({ host, port, path: '/hang', signal: ac.signal, agent: false }).on('error', () => {});
      left.push(ac);
    }
    await until(() => w.count('hang') >= target, WAIT, `round ${round}: the worker taking requests with stderr full`);
    for (const ac of left) ac.abort();
  }
  assert.equal((await within(request(gw.addr, 'GET', '/ok'), WAIT, 'a request after')).status, 200);
  let stderr = '';
  w.c.stderr.setEncoding('utf8');
  w.c.stderr.on('data', (d) => (stderr += d));
  w.c.stderr.resume();
  await until(() => /vyx: \d+ log lines dropped/.test(stderr), WAIT, 'the count of dropped lines once stderr is read');
  w.c.kill('SIGTERM');
  assert.deepEqual(await within(w.exited, WAIT, 'exit after SIGTERM'), { code: 0, signal: null });
  // The last lines are out before the process exits.
  assert.match(stderr, /drained and disconnected[^\n]*\n$/);
});

test('a logger that throws loses its lines, not the worker', async (t) => {
  const gw = await startGateway();
  t.after(() => gw.stop());
  let calls = 0;
  const boom = () => {
    calls++;
    throw new Error('logger down');
  };
  const logger = { debug: boom, info: boom, warn: boom, error: boom };
  const { worker, done } = await startWorker(
    gw,
    (w) => {
      w.get('/ok', () => ({ ok: true }));
      w.get('/throw', () => {
        throw new Error('handler down');
      });
    },
    { logger, logLevel: 'info' },
  );
  assert.equal((await request(gw.addr, 'GET', '/throw')).status, 500);
  assert.equal((await request(gw.addr, 'GET', '/ok')).status, 200);
  // The handler's failure and the core's "registered" both went to the logger.
  await until(() => calls >= 2, WAIT, 'the logger being called');
  await within(worker.stop(), WAIT, 'stop()');
  await done;
});

test("the core's logs reach pino with their fields, at the level set in code", async (t) => {
  const gw = await startGateway();
  t.after(() => gw.stop());
  const records = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) records.push(JSON.parse(line));
      cb();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const { worker, done } = await startWorker(
    gw,
    (w) =>
      w.get('/throw', () => {
        throw new Error('on purpose');
      }),
    { id: 'node:pino', logger, logLevel: 'info' },
  );
  await until(() => records.some((r) => r.msg === 'vyx: registered'), WAIT, 'registered via pino');
  const reg = records.find((r) => r.msg === 'vyx: registered');
  assert.equal(reg.level, 30);
  assert.equal(reg.worker_id, 'node:pino');
  assert.equal(reg.gateway, `${gw.url}/_vyx/register`);
  assert.equal(reg.module, 'vyx_core::session::supervise');

  const failing = (r) => r.msg === 'vyx: request failed; answering 500';
  assert.equal((await request(gw.addr, 'GET', '/throw', { headers: { 'x-request-id': 'req-1' } })).status, 500);
  const failure = records.find((r) => r.msg.startsWith('vyx: handler of GET /throw failed'));
  assert.equal(failure.level, 50);
  assert.equal(failure.err.message, 'on purpose');
  assert.equal(failure.request_id, 'req-1');
  assert.ok(!records.some(failing), 'a debug line at info');

  worker.setLogLevel('debug');
  assert.equal((await request(gw.addr, 'GET', '/throw')).status, 500);
  await until(() => records.some(failing), WAIT, "the core's debug line after setLogLevel('debug')");
  assert.equal(records.find(failing).level, 20);
  worker.setLogLevel('info');
  await within(worker.stop(), WAIT, 'stop()');
  await done;
});

test('a log level that is not one is an error naming where it came from', (t) => {
  const saved = process.env.VYX_LOG;
  t.after(() => (process.env.VYX_LOG = saved));
  const opts = { connect: 'ws://127.0.0.1:9000', id: 'node:levels', handleSignals: false };
  process.env.VYX_LOG = 'verbose';
  assert.throws(() => new VyxWorker(opts), { code: 'ERR_VYX_CONFIG', message: /^VYX_LOG: "verbose" is not a log level/ });
  assert.throws(() => new VyxWorker({ ...opts, logLevel: 'loud' }), { code: 'ERR_VYX_CONFIG', message: /^logLevel: "loud"/ });
  const w = new VyxWorker({ ...opts, logLevel: 'WARN' });
  assert.throws(() => w.setLogLevel('chatty'), { code: 'ERR_VYX_CONFIG', message: /"chatty" is not a log level/ });
  assert.equal(w.setLogLevel('off'), w);
});
