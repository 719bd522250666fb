// A vyx worker in Node: `GET /node/hello/{name}` answers JSON, `POST /node/echo` streams the
// body back. The routes of the Rust example (examples/rust/hello), under the prefix `/node`
// so that both run behind one gateway (examples/vyx.yaml).
//
//   vyx &                                   # a gateway in dev mode on 127.0.0.1:9000
//   node examples/node/hello/index.mjs      # this worker
//   curl localhost:9000/node/hello/ada      # {"hello":"ada","lang":"node"}
//
// Settings come from VYX_CONNECT, VYX_WORKER_ID and VYX_TOKEN, so the same file runs
// anywhere without a code change. SIGTERM and Ctrl-C drain it.
import { VyxWorker } from '@vyx/worker';

const prefix = process.env.HELLO_PREFIX ?? '/node';
const worker = new VyxWorker({
  connect: process.env.VYX_CONNECT || 'ws://127.0.0.1:9000',
  id: process.env.VYX_WORKER_ID || 'node:hello',
});

worker.get(`${prefix}/hello/{name}`, (req) => ({ hello: req.params.name, lang: 'node' }));

// Streams the request body back as it arrives (nothing is buffered), same content-type.
worker.post(`${prefix}/echo`, async (req, res) => {
  const type = req.header('content-type');
  if (type !== undefined) res.header('content-type', type);
  res.flushHeaders();
  for await (const chunk of req) if (!res.write(chunk)) await res.drained();
  res.end();
});

worker.on('connected', ({ connectionId }) => console.log(`node:hello connected (${connectionId})`));
await worker.start();
