'use strict';
// Measures the shapes a batch of request heads can cross into JS in: the packed buffer the
// binding uses (decoded by sdk-node/lib/batch.js), one #[napi(object)] per request, and one
// JSON string per batch, each including what a handler touches (method, target, a param,
// a header).
//   (cd sdk-node && npx napi build --release --features bench-shapes --output-dir /tmp/vyx-shapes --no-js)
//   node bench/node/batch-shape.js /tmp/vyx-shapes/vyx-node.linux-x64-gnu.node
const path = require('node:path');
const { decodeBatch } = require('../../sdk-node/lib/batch');

const addon = require(path.resolve(process.argv[2]));

function touchPacked(n) {
  const { requests } = decodeBatch(addon.benchPacked(n));
  let x = 0;
  for (const r of requests) x += r.method.length + r.target.length + r.params[1].length + r.headers[1].length;
  return x;
}

function touchObjects(n) {
  const requests = addon.benchObjects(n);
  let x = 0;
  for (const r of requests) x += r.method.length + r.target.length + r.params[1].length + r.headers[1].length;
  return x;
}

function touchJson(n) {
  const requests = JSON.parse(addon.benchJson(n));
  let x = 0;
  for (const r of requests) x += r[2].length + r[3].length + r[4][1].length + r[5][1].length;
  return x;
}

function measure(fn, n) {
  const total = 400_000;
  const rounds = Math.max(1, Math.floor(total / n));
  for (let i = 0; i < rounds / 4; i++) fn(n); // warm up
  const t0 = process.hrtime.bigint();
  let sink = 0;
  for (let i = 0; i < rounds; i++) sink += fn(n);
  const ns = Number(process.hrtime.bigint() - t0);
  if (sink === 0) throw new Error('nothing decoded');
  return ns / (rounds * n);
}

console.log('ns per request (median of 3) | packed | #[napi(object)] | JSON');
for (const n of [1, 16, 256]) {
  const samples = { packed: [], objects: [], json: [] };
  for (let k = 0; k < 3; k++) {
    samples.packed.push(measure(touchPacked, n));
    samples.objects.push(measure(touchObjects, n));
    samples.json.push(measure(touchJson, n));
  }
  const med = (a) => a.sort((x, y) => x - y)[1].toFixed(0);
  console.log(`batch of ${String(n).padStart(3)} | ${med(samples.packed)} | ${med(samples.objects)} | ${med(samples.json)}`);
}
