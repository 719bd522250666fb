'use strict';
// Counts the Node worker's crossings into the native addon: preloaded with `node -r`, it
// wraps every method of the binding's NativeWorker and, at exit, prints to stderr how many
// calls each had, per request served (a request is one `respond`/`sendHead` or a batch's
// request count, whichever the app used), and the requests per pull.
//   node -r ./bench/node/crossings.js examples/node/hello/index.mjs
const path = require('node:path');
const { decodeBatch } = require('../../sdk-node/lib/batch');

const { NativeWorker } = require(path.join(__dirname, '../../sdk-node/native.js'));
const calls = new Map();
let requests = 0;
for (const name of Object.getOwnPropertyNames(NativeWorker.prototype)) {
  const d = Object.getOwnPropertyDescriptor(NativeWorker.prototype, name);
  if (name === 'constructor' || typeof d.value !== 'function') continue;
  const fn = d.value;
  calls.set(name, 0);
  NativeWorker.prototype[name] = function (...args) {
    calls.set(name, calls.get(name) + 1);
    if (name === 'start') {
      // Counting the requests of each batch costs a second decoding: only here.
      const onBatch = args[0];
      args[0] = (buf) => {
        if (buf !== null) requests += decodeBatch(buf).requests.length;
        return onBatch(buf);
      };
    }
    return fn.apply(this, args);
  };
}
process.on('exit', () => {
  const per = (n) => (requests ? (n / requests).toFixed(3) : '-');
  const lines = [...calls].filter(([, n]) => n > 0).map(([k, n]) => `  ${k}: ${n} (${per(n)} per request)`);
  const pulls = calls.get('pull');
  process.stderr.write(`native calls for ${requests} requests, ${pulls ? (requests / pulls).toFixed(1) : '-'} requests per pull:\n${lines.join('\n')}\n`);
});
