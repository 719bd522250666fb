'use strict';
// The bench baseline for the Node SDK row: a plain node:http server answering what the Node
// hello worker (examples/node/hello) answers, directly, on 127.0.0.1:$PORT.
const http = require('node:http');

const PREFIX = '/node/hello/';
const server = http.createServer((req, res) => {
  const path = req.url.split('?', 1)[0];
  if (req.method !== 'GET' || !path.startsWith(PREFIX) || path.length === PREFIX.length || path.indexOf('/', PREFIX.length) >= 0) {
    res.writeHead(404).end();
    return;
  }
  const body = JSON.stringify({ hello: decodeURIComponent(path.slice(PREFIX.length)), lang: 'node' });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
process.on('SIGTERM', () => server.close());
