'use strict';
// Interim (1xx) responses (PROTOCOL.md §3.11) through the real gateway: `res.sendInformational`
// on vyx-native routes, node:http's `writeEarlyHints` and `writeProcessing` in `worker.http`.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { startGateway, startWorker, splitAddr, within } = require('./helpers');

let gw;
let worker;
let done;
let late;

test.before(async () => {
  gw = await startGateway();
  ({ worker, done } = await startWorker(gw, (w) => {
    w.get('/native', (req, res) => {
      const sent = res.sendInformational(103, { link: ['</a.css>; rel=preload', '</b.js>; rel=preload'] });
      res.send(`sent ${sent}`);
    });
    w.get('/late', (req, res) => {
      res.send('done');
      try {
        res.sendInformational(103, { link: '</late.css>; rel=preload' });
      } catch (e) {
        late = e.code;
      }
    });
    w.http('/app', (req, res) => {
      res.writeEarlyHints({ link: ['</a.css>; rel=preload', '</b.js>; rel=preload'], 'x-hint': 'yes' }, () => {
        res.writeProcessing();
        res.end('app');
      });
    });
  }));
});

test.after(async () => {
  await worker.stop(1000);
  await done;
  await gw.stop();
});

/** One raw HTTP/1.1 GET (the gateway closes after it); resolves the answer's text. */
function get1(path) {
  const [host, port] = splitAddr(gw.addr);
  return within(
    new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, () => s.write(`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`));
      const chunks = [];
      s.on('data', (c) => chunks.push(c));
      s.on('end', () => resolve(Buffer.concat(chunks).toString()));
      s.on('error', reject);
    }),
    10_000,
    `the answer to ${path}`,
  );
}

test('res.sendInformational sends a 103 before the response, one link field per array element', async () => {
  const text = await get1('/native');
  const hint = 'HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\nlink: </b.js>; rel=preload\r\n\r\n';
  assert.ok(text.startsWith(hint), text);
  assert.ok(text.slice(hint.length).startsWith('HTTP/1.1 200 OK\r\n'), text);
  assert.ok(text.endsWith('\r\n\r\nsent true'), text);
});

test('after the head it throws ERR_VYX_INVALID_STATE and sends nothing', async () => {
  const text = await get1('/late');
  assert.ok(text.startsWith('HTTP/1.1 200 OK\r\n') && text.endsWith('done'), text);
  assert.equal(late, 'ERR_VYX_INVALID_STATE');
});

test('worker.http: writeEarlyHints joins an array of links into one field as node:http does, then its callback runs; writeProcessing sends a 102', async () => {
  const text = await get1('/app');
  const hints = 'HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload, </b.js>; rel=preload\r\nx-hint: yes\r\n\r\n';
  assert.ok(text.startsWith(hints), text);
  const rest = text.slice(hints.length);
  assert.ok(rest.startsWith('HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\n'), text);
  assert.ok(rest.endsWith('\r\n\r\napp'), text);
});
