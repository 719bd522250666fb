// The same small JSON answer from each kind of Node route, to compare what each costs per
// request (bench/NOTES.md, "The Node SDK's request path"): `worker.get` returning an object,
// `worker.fetch` returning `Response.json` (WHATWG Request/Response, as Hono), and
// `worker.http` with a node:http-style listener (IncomingMessage/ServerResponse, as Express).
//   VYX_CONNECT=ws://127.0.0.1:9000 node bench/node/kinds.mjs
//   wrk -c50 http://127.0.0.1:9000/node/{hello,fetch,http}/world
import { VyxWorker } from '../../sdk-node/lib/index.mjs';

const worker = new VyxWorker({ id: process.env.VYX_WORKER_ID || 'bench:node-kinds' });
worker.get('/node/hello/{name}', (req) => ({ hello: req.params.name, lang: 'node' }));
worker.fetch('/node/fetch/{name}', (request) => {
  const name = new URL(request.url).pathname.slice('/node/fetch/'.length);
  return Response.json({ hello: name, lang: 'node' });
});
worker.http('/node/http/{name}', (req, res) => {
  const body = JSON.stringify({ hello: req.url.slice('/node/http/'.length), lang: 'node' });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
await worker.start();
