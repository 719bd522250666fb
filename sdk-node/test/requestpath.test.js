'use strict';
// What a small request costs the Node worker, counted rather than timed (issue 21 item 4):
// its calls into the addon, and the shape V8 gives what the handler reads.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const v8 = require('node:v8');
const async_hooks = require('node:async_hooks');
const { startGateway, request, startWorker } = require('./helpers');

v8.setFlagsFromString('--allow-natives-syntax');
const hasFastProperties = new Function('o', 'return %HasFastProperties(o)');

// Every call into the addon, by method (this file runs in a process of its own).
const calls = {};
const { NativeWorker } = require(path.join(__dirname, '..', 'native.js'));
for (const name of Object.getOwnPropertyNames(NativeWorker.prototype)) {
  const fn = Object.getOwnPropertyDescriptor(NativeWorker.prototype, name).value; // not getters
  if (name === 'constructor' || typeof fn !== 'function') continue;
  NativeWorker.prototype[name] = function (...args) {
    calls[name] = (calls[name] || 0) + 1;
    return fn.apply(this, args);
  };
}

let gw;
let worker;
let done;
const params = [];
const TURN = 8;
const waiting = [];

test.before(async () => {
  gw = await startGateway();
  ({ worker, done } = await startWorker(gw, (w) => {
    w.get('/hello/{name}', (req) => {
      params.push(req.params);
      return { hello: req.params.name, lang: 'node' };
    });
    w.get('/own/{constructor}', (req) => ({ own: req.params.constructor, inherited: 'toString' in req.params }));
    // Holds its requests until TURN have come, then answers them all in one turn.
    w.get('/turn/{i}', (req) =>
      new Promise((resolve) => {
        waiting.push(() => resolve({ i: req.params.i }));
        if (waiting.length === TURN) for (const answer of waiting.splice(0)) answer();
      }),
    );
  }));
});

test.after(async () => {
  await worker.stop(1000);
  await done;
  await gw.stop();
});

test('a JSON answer is one call into the addon, its text handed over as it is', async () => {
  for (const k of Object.keys(calls)) delete calls[k];
  const n = 20;
  for (let i = 0; i < n; i++) {
    const res = await request(gw.addr, 'GET', `/hello/w${i}`);
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), { hello: `w${i}`, lang: 'node' });
    assert.equal(res.headers['content-type'], 'application/json');
  }
  // No Buffer is made for the body in JS: the binding encodes the string.
  assert.equal(calls.respondText, n);
  assert.equal(calls.respond, undefined);
  // An answer given while its batch is handed out is woken by the next pull, not by a
  // `wakeWriters` call of its own.
  const others = Object.entries(calls).filter(([k]) => !['respondText', 'pull'].includes(k));
  assert.deepEqual(others, []);
});

test('a pull makes no promise and no thread-safe function of its own', async () => {
  // napi-rs made both for every `async fn` call (`napi_resolve_deferred`, one per pull).
  const made = {};
  const hook = async_hooks.createHook({ init: (id, type) => (made[type] = (made[type] || 0) + 1) }).enable();
  for (const k of Object.keys(calls)) delete calls[k];
  try {
    for (let i = 0; i < 20; i++) assert.equal((await request(gw.addr, 'GET', `/hello/p${i}`)).status, 200);
  } finally {
    hook.disable();
  }
  assert.equal(made.napi_resolve_deferred, undefined);
  assert.ok(calls.pull >= 20, `one pull a request at least, here: ${calls.pull}`);
});

test("answers given in one turn wake the core's writer once, and all arrive", async () => {
  for (const k of Object.keys(calls)) delete calls[k];
  const answers = await Promise.all(Array.from({ length: TURN }, (_, i) => request(gw.addr, 'GET', `/turn/${i}`)));
  answers.forEach((res, i) => assert.deepEqual(JSON.parse(res.body), { i: String(i) }));
  assert.equal(calls.respondText, TURN);
  // One wake-up of the engine's writer thread for the turn, not one per answer.
  assert.equal(calls.wakeWriters, 1);
});

test('req.params is a fast object with no inherited names', async () => {
  await request(gw.addr, 'GET', '/hello/ada');
  const p = params.at(-1);
  assert.equal(p.name, 'ada');
  // Object.create(null) made a dictionary, filled through V8's slow path on every request.
  assert.equal(hasFastProperties(p), true);
  const res = await request(gw.addr, 'GET', '/own/x');
  assert.deepEqual(JSON.parse(res.body), { own: 'x', inherited: false });
});
