'use strict';
// Express's own test suite (5.2.1: 1260 tests with supertest and mocha), run directly and through
// vyx with every `request(app)` pointed at the gateway (fixtures/supertest-through-vyx.js).
// Express does not publish its tests, so this needs a checkout with its dependencies:
//   git clone https://github.com/expressjs/express && git -C express checkout a3714473 &&
//   npm --prefix express install
//   VYX_EXPRESS_CHECKOUT=$PWD/express node --test sdk-node/acceptance/express-suite.test.js
// It is an acceptance run, not part of `npm test` (CI cannot fetch Express's repository), and it
// fails without VYX_EXPRESS_CHECKOUT. Through vyx, only the differences below may fail: each is
// right for a proxy or comes from serving one app at a time.
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { gatewayBinary } = require('../test/helpers');

const CHECKOUT = process.env.VYX_EXPRESS_CHECKOUT;
const HOOKS = path.join(__dirname, '..', 'test', 'fixtures', 'supertest-through-vyx.js');

/** Tests that fail through vyx, by full title, and why that is right. */
const DIFFERENCES = [
  // The gateway drops what the client claims in X-Forwarded-* and Forwarded (its peer is no
  // trusted proxy) and sets its own: Express's "trust proxy" sees the gateway's view.
  [/^req \.(host|hostname|subdomains|protocol|secure|ips?) .*(X-Forwarded|trust proxy|initial proxy)/, 'forwarding headers are the gateway\'s'],
  // It adds x-request-id, a new one per request.
  [/^HEAD should output the same headers as GET requests$/, 'x-request-id differs'],
  // A Host that is no host[:port] ('http://example.com') is 400 at the gateway (RFC 9112 §3.2).
  [/^res when accepting (html|text) should (escape|encode|not render evil)/, 'invalid Host refused'],
  // Statuses outside 200..=599 are not carried (101 is an upgrade).
  [/^res \.status\(code\) accept valid ranges should set the response status code to (101|700|800|900)$/, 'status not carried'],
  // An empty body the app frames as chunked: the gateway knows it is empty and sends
  // content-length: 0.
  [/^res when Transfer-Encoding header is present should not add Content-Length/, 'empty body framed by the gateway'],
  // The harness: one app at a time, and no test._server to read the client's address from.
  [/^app \.(request|response) should only extend for the referenced app$/, 'two apps at once'],
  [/^req \.ip when X-Forwarded-For is not present should return the remote address$/, 'test._server'],
];

function mocha(extra, out) {
  const bin = path.join(CHECKOUT, 'node_modules', 'mocha', 'bin', 'mocha.js');
  const args = [bin, '--exit', '--require', 'test/support/env', ...extra, '--reporter', 'json', '--reporter-option', `output=${out}`, '--check-leaks', 'test/', 'test/acceptance/'];
  try {
    execFileSync(process.execPath, args, { cwd: CHECKOUT, stdio: 'ignore', env: { ...process.env, VYX_GATEWAY: gatewayBinary() } });
  } catch {
    // Failures are in the report.
  }
  return JSON.parse(fs.readFileSync(out, 'utf8'));
}

test("Express's own tests pass through vyx as they pass directly, but for the differences written down", (t) => {
  assert.ok(CHECKOUT, 'set VYX_EXPRESS_CHECKOUT to an Express checkout (see the top of this file)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vyx-express-'));
  try {
    const direct = mocha([], path.join(dir, 'direct.json'));
    const vyx = mocha(['--require', HOOKS], path.join(dir, 'vyx.json'));
    assert.equal(direct.stats.failures, 0, 'directly, every test passes');
    assert.equal(vyx.stats.tests, direct.stats.tests);
    const unexplained = vyx.failures.map((f) => f.fullTitle).filter((t) => !DIFFERENCES.some(([re]) => re.test(t)));
    assert.deepEqual(unexplained, []);
    t.diagnostic(`direct: ${direct.stats.passes} passed, ${direct.stats.pending} pending; through vyx: ${vyx.stats.passes} passed, ${vyx.stats.failures} failed (all written down)`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
