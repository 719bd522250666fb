// The Node conformance worker: the routes of spec/conformance/README.md, written with
// @vyx/worker (sdk-node), so that the conformance runner drives it like every other
// language's. The Rust one (../rust/src/main.rs) is the reference.
//
//   VYX_CONNECT=ws://127.0.0.1:9000 VYX_WORKER_ID=conformance:node \
//       VYX_CONFORMANCE_MAX_CONCURRENCY=1024 node spec/conformance/workers/node/worker.mjs
//
// Connection-state changes go to stdout as `state ...` lines; logs go to stderr.
import { createHash } from 'node:crypto';
import { VyxWorker } from '../../../../sdk-node/lib/index.mjs';

const LANG = 'node';
const replica = process.env.VYX_CONFORMANCE_REPLICA ?? '';
let inFlight = 0;
let aborted = 0;

/** Counts one unit of in-flight work until `release()` (idempotent: a cancel and an end). */
function enter() {
  inFlight += 1;
  let held = true;
  return {
    now: inFlight,
    release() {
      if (held) {
        held = false;
        inFlight -= 1;
      }
    },
  };
}

/** Resolves after `ms`, or early when `signal` aborts. */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

function text(res, status, body) {
  res.status(status).header('content-type', 'text/plain; charset=utf-8').send(body);
}

/** Reads the body chunk by chunk through SHA-256; nothing is kept. */
async function hashBody(req) {
  const h = createHash('sha256');
  let length = 0;
  for await (const chunk of req) {
    length += chunk.length;
    h.update(chunk);
  }
  return { length, sha256: h.digest('hex') };
}

// `/barrier`: requests waiting in the current round, and how to release them.
let barrier = { waiting: 0, release: null, released: null };
function newRound() {
  let release;
  const released = new Promise((r) => (release = r));
  barrier = { waiting: 0, release, released };
}
newRound();

const options = {};
if (process.env.VYX_CONFORMANCE_MAX_CONCURRENCY !== undefined) {
  const n = Number(process.env.VYX_CONFORMANCE_MAX_CONCURRENCY);
  if (!Number.isInteger(n)) {
    process.stderr.write(`error: VYX_CONFORMANCE_MAX_CONCURRENCY=${process.env.VYX_CONFORMANCE_MAX_CONCURRENCY} is not a number\n`);
    process.exit(2);
  }
  options.maxConcurrency = n;
}

let worker;
try {
  // VYX_CONNECT, VYX_WORKER_ID and VYX_TOKEN come from the environment.
  worker = new VyxWorker(options);
} catch (e) {
  process.stderr.write(`error: ${e.message}\n`);
  process.exit(1);
}

worker.get('/greet/{name}', (req) => ({ hello: req.params.name, lang: LANG }));
worker.get('/files/{*rest}', (req) => ({ rest: req.params.rest }));

worker.any('/inspect/{*rest}', async (req) => {
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
  const { length, sha256 } = await hashBody(req);
  return {
    method: req.method,
    path: req.path,
    query: req.rawQuery,
    query_pairs: [...req.query],
    params: { ...req.params },
    headers,
    body_length: length,
    body_sha256: sha256,
    replica,
    lang: LANG,
  };
});

worker.post('/echo', async (req, res) => {
  const ct = req.header('content-type');
  if (ct !== undefined) res.header('content-type', ct);
  res.flushHeaders();
  for await (const chunk of req) if (!res.write(chunk)) await res.drained();
  res.end();
});

worker.post('/upload', (req) => hashBody(req));

// The client's x-echo trailer comes back in the response's trailers, with the body's length.
worker.post('/trailers', async (req, res) => {
  res.header('content-type', 'text/plain').header('trailer', 'x-echo, x-length');
  const body = await req.buffer();
  res.addTrailers({ 'x-echo': req.trailers['x-echo'] ?? 'none', 'x-length': body.length });
  res.send(body);
});

worker.get('/status/{code}', (req, res) => {
  const code = /^[0-9]{3}$/.test(req.params.code) ? Number(req.params.code) : 0;
  if (code < 200 || code > 599) return text(res, 400, 'status must be 200..=599');
  res
    .status(code)
    .header('content-type', 'text/plain')
    .header('x-conformance', 'status')
    .header('set-cookie', 'a=1')
    .header('set-cookie', 'b=2')
    .send(code === 204 || code === 304 ? null : `status ${code}`);
});

// Byte i of a /stream body is i mod 251: every chunk is a slice of this pattern.
const PATTERN_CHUNK = 1 << 20;
const PATTERN = Buffer.alloc(PATTERN_CHUNK + 251);
for (let i = 0; i < PATTERN.length; i++) PATTERN[i] = i % 251;

worker.get('/stream/{bytes}', async (req, res) => {
  if (!/^[0-9]+$/.test(req.params.bytes)) return text(res, 400, 'bytes must be a number');
  const total = Number(req.params.bytes);
  const q = (name, dflt) => {
    const v = req.query.get(name);
    return v !== null && /^[0-9]+$/.test(v) ? Number(v) : dflt;
  };
  const chunk = Math.min(Math.max(q('chunk', 65536), 1), PATTERN_CHUNK);
  const pause = q('pause_ms', 0);
  const work = enter();
  let sent = 0;
  try {
    res.header('content-type', 'application/octet-stream');
    res.flushHeaders();
    while (sent < total && !req.signal.aborted) {
      if (sent > 0 && pause > 0) await sleep(pause, req.signal);
      if (req.signal.aborted) break;
      const n = Math.min(chunk, total - sent);
      const start = sent % 251;
      const last = sent + n === total;
      const piece = PATTERN.subarray(start, start + n);
      sent += n;
      if (last) res.end(piece);
      else if (!res.write(piece)) await res.drained();
    }
    if (total === 0) res.end();
  } catch {
    // drained() rejects when the stream is reset: counted below.
  } finally {
    if (req.signal.aborted && sent < total) aborted += 1;
    work.release();
  }
});

worker.get('/slow/{ms}', async (req, res) => {
  if (!/^[0-9]+$/.test(req.params.ms)) return text(res, 400, 'ms must be a number');
  const ms = Number(req.params.ms);
  const work = enter();
  try {
    await sleep(ms, req.signal);
    return { slept_ms: ms, in_flight: work.now, replica };
  } finally {
    work.release();
  }
});

worker.get('/barrier/{n}', async (req, res) => {
  if (!/^[0-9]+$/.test(req.params.n)) return text(res, 400, 'n must be a number');
  const n = Number(req.params.n);
  const work = enter();
  try {
    const round = barrier;
    round.waiting += 1;
    if (round.waiting >= n) {
      // Everyone waiting in this round goes; the next request starts a new round.
      round.release(true);
      newRound();
      return { n };
    }
    let timer;
    const timedOut = new Promise((r) => (timer = setTimeout(() => r(false), 10_000)));
    const released = await Promise.race([round.released, timedOut]);
    clearTimeout(timer);
    if (released) return { n };
    const arrived = round.waiting;
    round.waiting -= 1;
    return text(res, 500, `barrier: ${arrived} of ${n} requests arrived within 10 s`);
  } finally {
    work.release();
  }
});

worker.get('/throw', () => {
  throw new Error('conformance: /throw fails on purpose');
});

worker.get('/empty', (req, res) => res.status(204).send());
worker.get('/hints', (req, res) => {
  res.sendInformational(103, { link: '</hinted.css>; rel=preload; as=style' });
  text(res, 200, 'hinted');
});
// Each message echoed with its type; `ws` answers a close itself.
worker.ws('/ws', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
worker.head('/head', (req, res) => res.header('x-conformance', 'head').send());
worker.get('/stats', () => ({ in_flight: inFlight, aborted, replica }));

worker.on('state', (s) => {
  switch (s.kind) {
    case 'connected':
      process.stdout.write(`state connected ${s.connectionId}\n`);
      break;
    case 'reconnecting':
      process.stdout.write(`state reconnecting ${s.attempt} ${s.cause}\n`);
      break;
    default:
      process.stdout.write(`state ${s.kind}\n`);
  }
});

try {
  await worker.start();
} catch (e) {
  process.stderr.write(`error: ${e.message}\n`);
  process.exitCode = 1;
}
