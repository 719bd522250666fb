'use strict';
// Every JavaScript example in the READMEs (the top one and sdk-node's) runs. A ```js block is
// either a fragment, marked ```js fragment, which must parse (`node --check`), or a whole
// program preceded by `<!-- test: GET PATH STATUS BODY -->`: it runs as an ES module against
// the real gateway (its ws://127.0.0.1:9000 replaced by the test gateway's address), registers,
// answers that request with that status and JSON body, and exits 0 on SIGTERM. A block that is
// neither fails, so a new example cannot go untested by accident.
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { REPO, startGateway, request, within, waitForLine } = require('./helpers');

const READMES = ['README.md', 'sdk-node/README.md'];
const BLOCK = /^(?:<!-- test: (?<check>.*?) -->\n)?```js(?<info>(?:[ \t][^\n]*)?)\n(?<code>.*?)^```$/gms;

const blocks = READMES.flatMap((readme) => {
  const text = fs.readFileSync(path.join(REPO, readme), 'utf8');
  return [...text.matchAll(BLOCK)].map((m) => ({
    where: `${readme}:${text.slice(0, m.index).split('\n').length + (m.groups.check ? 1 : 0)}`,
    info: m.groups.info.trim(),
    check: m.groups.check,
    code: m.groups.code,
  }));
});

let dir;
let gw;

test.before(async () => {
  // `import '@vyx/worker'` from the examples resolves to this checkout.
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vyx-readme-'));
  fs.mkdirSync(path.join(dir, 'node_modules', '@vyx'), { recursive: true });
  fs.symlinkSync(path.resolve(__dirname, '..'), path.join(dir, 'node_modules', '@vyx', 'worker'));
  gw = await startGateway();
});

test.after(async () => {
  if (gw) await gw.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('the READMEs have JavaScript examples', () => {
  assert.ok(blocks.length >= 4, `${blocks.length} blocks`);
});

for (const [i, { where, info, check, code }] of blocks.entries()) {
  test(`README example ${where}`, async (t) => {
    const file = path.join(dir, `example-${i}.mjs`);
    if (info === 'fragment') {
      fs.writeFileSync(file, code);
      execFileSync(process.execPath, ['--check', file], { stdio: 'pipe' });
      return;
    }
    assert.ok(info === '' && check, 'a whole example needs <!-- test: ... --> before it, or mark it ```js fragment');
    const [method, target, status, body] = splitCheck(check);
    fs.writeFileSync(file, code.replaceAll('ws://127.0.0.1:9000', gw.url));
    const child = spawn(process.execPath, [file], {
      cwd: dir,
      env: { ...process.env, VYX_LOG: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    t.after(() => child.kill('SIGKILL'));
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise((r) => child.once('exit', (code) => r(code)));
    await waitForLine(child.stderr, (l) => l.includes('registered'), 15_000, 'registered').catch((e) => {
      throw new Error(`${e.message}; stderr: ${stderr}`);
    });
    const r = await request(gw.addr, method, target);
    assert.equal(r.status, Number(status));
    assert.deepEqual(JSON.parse(r.body), JSON.parse(body));
    child.kill('SIGTERM');
    assert.equal(await within(exited, 15_000, 'exit after SIGTERM'), 0);
  });
}

/** `GET /path 200 {"json": 1}` -> ['GET', '/path', '200', '{"json": 1}']. */
function splitCheck(check) {
  const [method, target, status, ...body] = check.split(' ');
  return [method, target, status, body.join(' ')];
}
