'use strict';
// `npm pack` gives a tarball that installs into an empty project and runs a worker there,
// loaded with `import` and with `require`, its types checking under TypeScript.
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startGateway, request, within, waitForLine } = require('./helpers');

const SDK = path.resolve(__dirname, '..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

let project;
let gw;

test.before(async () => {
  project = fs.mkdtempSync(path.join(os.tmpdir(), 'vyx-pack-'));
  const out = execFileSync(NPM, ['pack', '--pack-destination', project, '--json'], { cwd: SDK, encoding: 'utf8' });
  const [{ filename, files }] = JSON.parse(out);
  const names = files.map((f) => f.path);
  for (const f of ['lib/index.js', 'lib/index.mjs', 'lib/index.d.ts', 'native.js', 'package.json']) {
    assert.ok(names.includes(f), `${f} in the tarball (has ${names.join(', ')})`);
  }
  assert.ok(names.some((n) => n.endsWith('.node')), 'the addon in the tarball');
  assert.ok(!names.some((n) => n.startsWith('test/') || n.startsWith('src/')), 'no tests or sources');
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'vyx-pack-test', private: true }));
  execFileSync(NPM, ['install', '--no-audit', '--no-fund', '--offline', `./${path.basename(filename)}`], { cwd: project, stdio: 'pipe' });
  gw = await startGateway();
});

test.after(async () => {
  if (gw) await gw.stop();
  if (project) fs.rmSync(project, { recursive: true, force: true });
});

const WORKER = {
  'esm.mjs': `import { VyxWorker } from '@vyx/worker';
const w = new VyxWorker({ handleSignals: true });
w.get('/pack/esm', () => ({ loaded: 'import' }));
w.on('connected', () => console.log('connected'));
await w.start();
console.log('stopped');
`,
  'cjs.cjs': `const { VyxWorker } = require('@vyx/worker');
const w = new VyxWorker({ handleSignals: true });
w.get('/pack/cjs', () => ({ loaded: 'require' }));
w.on('connected', () => console.log('connected'));
w.start().then(() => console.log('stopped'));
`,
};

for (const [file, kind, route] of [
  ['esm.mjs', 'import', '/pack/esm'],
  ['cjs.cjs', 'require', '/pack/cjs'],
]) {
  test(`the installed tarball runs a worker loaded with ${kind}`, async (t) => {
    fs.writeFileSync(path.join(project, file), WORKER[file]);
    const child = spawn(process.execPath, [file], {
      cwd: project,
      env: { ...process.env, VYX_CONNECT: gw.url, VYX_WORKER_ID: `node:pack-${kind}`, VYX_LOG: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(() => child.kill('SIGKILL'));
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise((r) => child.once('exit', (code) => r(code)));
    await waitForLine(child.stdout, (l) => l === 'connected', 15_000, 'connected').catch((e) => {
      throw new Error(`${e.message}; stderr: ${stderr}`);
    });
    const r = await request(gw.addr, 'GET', route);
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { loaded: kind });
    child.kill('SIGTERM');
    assert.equal(await within(exited, 15_000, 'exit after SIGTERM'), 0, stderr);
  });
}

// `ws` is an optional peer dependency: the tarball installs without it, and a WebSocket
// route then says what to install instead of failing on a bare module lookup.
test('without the ws package, worker.ws is ERR_VYX_WS_MISSING naming what to install', () => {
  assert.ok(!fs.existsSync(path.join(project, 'node_modules', 'ws')), 'ws was not installed with the tarball');
  fs.writeFileSync(
    path.join(project, 'ws.cjs'),
    `const { VyxWorker } = require('@vyx/worker');
try {
  new VyxWorker({ connect: 'ws://127.0.0.1:1', id: 'node:ws' }).ws('/ws', () => {});
  console.log('no error');
} catch (e) {
  console.log(e.code + ' ' + e.message);
}
`,
  );
  const out = execFileSync(process.execPath, ['ws.cjs'], { cwd: project, encoding: 'utf8' }).trim();
  assert.equal(out, 'ERR_VYX_WS_MISSING worker.ws runs on the ws package, which is not installed: npm i ws');
});

test('the installed types check under TypeScript (nodenext, import and require)', () => {
  fs.writeFileSync(
    path.join(project, 'check.mts'),
    `import { VyxWorker, type VyxRequest, type VyxResponse, type StateEvent, type LogLevel, type Logger } from '@vyx/worker';
const w: VyxWorker = new VyxWorker({ connect: 'ws://127.0.0.1:1', id: 'a:b', maxConcurrency: 8 });
w.get('/x/{id}', async (req: VyxRequest, res: VyxResponse) => {
  const id: string = req.params.id;
  const q: string | null = req.query.get('q');
  if (!res.write('x')) await res.drained();
  const echo: string[] = req.rawTrailers;
  res.addTrailers({ 'x-n': 1 }).addTrailers([['x-echo', String(req.trailers['x-echo'] ?? echo.length)]]);
  res.end();
  return { id, q };
});
w.on('state', (s: StateEvent) => s.kind);
const logged: VyxWorker = new VyxWorker({ logger: console, logLevel: 'debug' }).setLogLevel('warn');
const level: LogLevel = 'off';
const own: Logger = { error() {}, info(fields: unknown, msg?: string) { void fields; void msg; } };
void [logged, level, own];
const done: Promise<void> = w.start();
void done;
`,
  );
  fs.writeFileSync(
    path.join(project, 'check.cts'),
    `import vyx = require('@vyx/worker');
const w = new vyx.VyxWorker();
w.fetch('/api/{*rest}', (r: Request) => new Response(r.url));
`,
  );
  const tsc = path.join(SDK, 'node_modules', 'typescript', 'bin', 'tsc');
  const args = [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(SDK, 'node_modules', '@types'), 'check.mts', 'check.cts'];
  try {
    execFileSync(process.execPath, args, { cwd: project, stdio: 'pipe', env: { ...process.env } });
  } catch (e) {
    assert.fail(`tsc: ${e.stdout}${e.stderr}`);
  }
  // And a type error is caught (the check above can fail).
  fs.writeFileSync(path.join(project, 'bad.mts'), `import { VyxWorker } from '@vyx/worker';\nnew VyxWorker({ maxConcurrency: 'many' });\n`);
  assert.throws(() => execFileSync(process.execPath, [...args.slice(0, -2), 'bad.mts'], { cwd: project, stdio: 'pipe' }));
});

test("the installed types check under TypeScript's strictest settings, with no ambient types listed", () => {
  // `types: []` is TypeScript 6's default: the app names no Node types, ours load their own.
  fs.writeFileSync(
    path.join(project, 'strictest.mts'),
    `import { createServer } from 'node:http';
import { VyxWorker, defaults, upgradeWebSocket, type VyxRequest, type VyxResponse } from '@vyx/worker';
const w = new VyxWorker({ maxConcurrency: defaults().maxConcurrency, handleSignals: true });
w.ws('/ws/{room}', (ws, req) => ws.on('message', (m, isBinary) => ws.send(m, { binary: isBinary && req.upgrade })), { maxPayload: 1 << 20 });
w.fetch('/echo', (r) => {
  const { socket, response } = upgradeWebSocket(r, { protocol: 'chat' });
  socket.onmessage = (e) => socket.send(typeof e.data === 'string' ? e.data : 'binary');
  return response;
});
w.http('/server/{*rest}', createServer((req, res) => res.end(req.url ?? '')));
w.get('/x/{id}', async (req: VyxRequest, res: VyxResponse) => {
  for await (const chunk of req) if (!res.write(chunk)) await res.drained();
  res.end(req.params['id'] ?? '');
});
w.http('/app/{*rest}', (req, res) => res.end(req.url ?? ''), { mount: '/app' });
w.fetch('/api/{*rest}', (r) => new Response(r.url));
await w.start();
`,
  );
  const compilerOptions = {
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    noImplicitOverride: true,
    noPropertyAccessFromIndexSignature: true,
    noImplicitReturns: true,
    noUnusedLocals: true,
    noUnusedParameters: true,
    isolatedModules: true,
    verbatimModuleSyntax: true,
    module: 'nodenext',
    moduleResolution: 'nodenext',
    target: 'es2022',
    lib: ['es2022', 'dom'],
    types: [],
    typeRoots: [path.join(SDK, 'node_modules', '@types')],
    noEmit: true,
  };
  fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['strictest.mts'] }));
  const tsc = path.join(SDK, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', '.'], { cwd: project, stdio: 'pipe' });
  } catch (e) {
    assert.fail(`tsc: ${e.stdout}${e.stderr}`);
  }
});
