'use strict';
// The `ws` package, which `worker.ws` and `upgradeWebSocket` run on. It is an optional peer
// dependency: workers without WebSockets install and load nothing more, and the package
// installs from its tarball alone (scripts/test-release installs it offline).

const { vyxError } = require('./errors');

/** `require('ws')`, or `ERR_VYX_WS_MISSING` saying how to install it. */
function wsPackage(what) {
  try {
    return require('ws');
  } catch (e) {
    if (e && e.code === 'MODULE_NOT_FOUND') {
      throw vyxError('ERR_VYX_WS_MISSING', `${what} runs on the ws package, which is not installed: npm i ws`);
    }
    throw e;
  }
}

module.exports = { wsPackage };
