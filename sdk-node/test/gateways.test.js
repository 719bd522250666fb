'use strict';
// A worker given several gateways holds a session to each (spec/PROTOCOL.md §9.1).
const test = require('node:test');
const assert = require('node:assert/strict');
const { startGateway, request, until, startWorker } = require('./helpers');

test('connect takes a list: a session on each gateway, each serving; gateways() lists them', async (t) => {
  const a = await startGateway();
  const b = await startGateway();
  t.after(() => Promise.all([a.stop(), b.stop()]));
  const { worker, done } = await startWorker(a, (w) => w.get('/where', () => 'here'), {
    connect: [a.url, b.url],
    id: 'node:two',
  });
  t.after(async () => {
    await worker.stop(1000);
    await done;
  });
  // A gateway may ask for a connection per shard: sessions with the same gateway and address.
  const distinct = (key, only = () => true) => [...new Set(worker.gateways().filter(only).map((g) => g[key]))].sort();
  await until(() => distinct('gateway', (g) => g.kind === 'connected').length === 2, 15_000, 'both gateways connected');
  assert.deepEqual(distinct('gateway'), [`${a.url}/_vyx/register`, `${b.url}/_vyx/register`].sort());
  assert.deepEqual(distinct('address'), [a.addr, b.addr].sort());
  for (const gw of [a, b]) {
    const r = await request(gw.addr, 'GET', '/where');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'here');
  }
  assert.equal(worker.state.kind, 'connected');
});

test('a bad entry in the list is ERR_VYX_CONFIG naming it', () => {
  const { VyxWorker } = require('..');
  assert.throws(
    () => new VyxWorker({ connect: ['ws://127.0.0.1:1', 'http://127.0.0.1:2'], id: 'node:two' }),
    (e) => e.code === 'ERR_VYX_CONFIG' && e.message.includes('gateway address 2 of 2 ("http://127.0.0.1:2")'),
  );
});
