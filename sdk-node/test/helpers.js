'use strict';
// Test helpers: the real gateway on an ephemeral loopback port, HTTP requests with raw
// targets, and bounded waits on conditions.
const { spawn } = require('node:child_process');
const { createInterface } = require('node:readline');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

// Engine logs at warn unless asked (each worker's constructor reads VYX_LOG).
process.env.VYX_LOG ??= 'warn';

const REPO = path.resolve(__dirname, '..', '..');

/** The gateway binary: `VYX_GATEWAY`, else the release build in the cargo target dir. */
function gatewayBinary() {
  if (process.env.VYX_GATEWAY) return process.env.VYX_GATEWAY;
  const target = process.env.CARGO_TARGET_DIR || path.join(REPO, 'target');
  for (const profile of ['release', 'debug']) {
    const bin = path.join(target, profile, 'vyx');
    if (fs.existsSync(bin)) return bin;
  }
  throw new Error(`no gateway binary under ${target}: cargo build --release -p vyx-gateway (or set VYX_GATEWAY)`);
}

/** Resolves with the first line of `stream` matching `pred`, rejects after `ms`. */
function waitForLine(stream, pred, ms, what) {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: stream });
    const timer = setTimeout(() => {
      rl.close();
      reject(new Error(`no ${what} within ${ms} ms`));
    }, ms);
    rl.on('line', (line) => {
      if (pred(line)) {
        clearTimeout(timer);
        resolve(line);
        rl.close();
      }
    });
    rl.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`stream ended before ${what}`));
    });
  });
}

/** Starts `vyx --listen 127.0.0.1:0`; resolves `{ addr, url, http, stop() }`. */
async function startGateway(args = []) {
  // Two shards whatever the machine: a worker holds two connections (WELCOME's `connections`).
  const child = spawn(gatewayBinary(), ['--listen', '127.0.0.1:0', '--threads', '2', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  child.stderr.resume();
  const line = await waitForLine(child.stdout, (l) => l.startsWith('listening http://'), 15_000, "gateway 'listening' line");
  child.stdout.resume();
  const addr = line.slice('listening http://'.length).trim();
  return {
    addr,
    url: `ws://${addr}`,
    http: `http://${addr}`,
    child,
    stop() {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      return exited;
    },
  };
}

/**
 * One HTTP request with a raw target: resolves `{ status, headers, rawHeaders, body }`.
 * `body` may be a Buffer or an async iterable of Buffers.
 */
function request(addr, method, target, { headers = {}, body } = {}) {
  const [host, port] = splitAddr(addr);
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path: target, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    (async () => {
      if (body === undefined) return req.end();
      if (Buffer.isBuffer(body) || typeof body === 'string') return req.end(body);
      for await (const c of body) if (!req.write(c)) await new Promise((r) => req.once('drain', r));
      req.end();
    })().catch(reject);
  });
}

function splitAddr(addr) {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i), Number(addr.slice(i + 1))];
}

/** Resolves once `pred()` is true (checked every 10 ms), rejects after `ms`. */
async function until(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Rejects after `ms` unless `promise` settles first. */
function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A worker on `gw` with `setup(worker)` run, started and connected. */
async function startWorker(gw, setup, options = {}) {
  const { VyxWorker } = require('..');
  const worker = new VyxWorker({ connect: gw.url, id: options.id || 'node:test', handleSignals: false, ...options });
  setup(worker);
  const connected = new Promise((r) => worker.once('connected', r));
  const done = worker.start();
  done.catch(() => {});
  await within(connected, 15_000, 'worker connected');
  return { worker, done };
}

module.exports = { REPO, gatewayBinary, startGateway, request, until, within, waitForLine, startWorker, splitAddr };
